"""The service's settings, from EFFFT_* environment variables (pydantic-settings)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".effft"
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a user's name is also its output folder's name
ADMIN_USER = "admin"


class LocalSettings(BaseSettings):
    """What the CLI on the server's machine reads too: where the server keeps its files."""

    model_config = SettingsConfigDict(env_prefix="EFFFT_", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR  # the SQLite file, job files, run folders, the local admin token

    @field_validator("data_dir")
    @classmethod
    def _home(cls, data_dir: Path) -> Path:
        return data_dir.expanduser()  # `~/x` in a compose file or a quoted variable, which no shell expanded


class Settings(LocalSettings):
    model_config = SettingsConfigDict(env_prefix="EFFFT_", extra="ignore", populate_by_name=True)  # aliased fields
    database_url: str | None = None  # default: SQLite in data_dir; e.g. postgresql+psycopg://user@host/db
    tokens: dict[str, str] = Field(default_factory=dict)  # bearer token -> user name (JSON in EFFFT_TOKENS)
    admin_tokens: list[str] = Field(default_factory=list)  # these see every job
    dataset_roots: list[Path] = Field(default_factory=list)  # where datasets may be read; default: data_dir
    output_roots: list[Path] = Field(default_factory=list)  # each user writes to ROOT/<user>; default: data_dir/outputs
    dataset_builders: list[str] = Field(default_factory=list)  # `datasets` names without an org/ that jobs may load
    metrics_tokens: list[str] = Field(default_factory=list)  # read every job's series on /metrics (Prometheus)
    allow_trust_remote_code: bool = False
    public_url: str | None = None  # how Ray workers reach this API (e.g. http://api:8321); default: the listen URL
    worker_python: str | None = None  # the Python a Ray Job's driver runs (on the head); default: the API's own
    ray_address: str | None = Field(default=None, validation_alias="RAY_ADDRESS")
    ray_dashboard_url: str = "http://127.0.0.1:8265"  # Ray's job submission API
    scheduler_interval_seconds: float = 1.0
    # processes serving the API (the scheduler runs in the one that starts them); one per core is where Python's
    # API latency under load stops improving
    api_workers: int = Field(default=2, ge=1)
    # jobs profiled and planned at once, each in a process of its own (EFFFT_PLANNING_THREADS: its former name)
    planning_processes: int = Field(default=2, ge=1, validation_alias=AliasChoices("EFFFT_PLANNING_PROCESSES",
                                                                                  "EFFFT_PLANNING_THREADS"))
    planning_timeout_seconds: float = Field(default=600, gt=0)  # a job still planning then is killed and fails
    planning_max_dataset_bytes: int = Field(default=2_000_000_000, ge=1)  # a bigger dataset fails planning, unread
    planning_max_rows: int = Field(default=1_000_000, ge=1)  # rows profiled at most (after dataset.max_samples)
    checkpoints_to_keep: int = Field(default=2, ge=1)  # per run, beside the one it resumed from
    # the CPU as one device: the memory jobs are packed into (default: the host's); set it to share less
    cpu_device_memory_bytes: int | None = Field(default=None, gt=0)
    max_replans: int = Field(default=3, ge=0)  # re-plans after running out of memory before a job fails (oom)
    # a job's driver killed from outside (SIGKILL, the OOM killer) is started again, resuming, this many times
    max_driver_restarts: int = Field(default=3, ge=0)
    # a steady step above this share of the job's budget is re-planned before the allocator fails; 1: never
    memory_safety_line: float = Field(default=0.95, gt=0, le=1)
    metrics_job_retention_hours: float = 24.0  # finished jobs keep their /metrics series this long
    # objective auto plans for throughput (smaller memory shares, more jobs per GPU) while more jobs wait than
    # GPUs are free; false: auto is always fastest
    throughput_when_queued: bool = True

    @field_validator("tokens")
    @classmethod
    def _user_names(cls, tokens: dict[str, str]) -> dict[str, str]:
        bad = sorted({user for user in tokens.values() if not USER_NAME.match(user) or user.lower() == ADMIN_USER})
        if bad:
            raise ValueError(f"user names {bad} cannot be used: a name is 1-64 letters, digits, '.', '_' or '-', "
                             f"starting with a letter or digit, and not '{ADMIN_USER}' (admin tokens' own name)")
        users = set(tokens.values())
        if len({user.lower() for user in users}) != len(users):  # one folder on a case-insensitive file system
            raise ValueError(f"user names {sorted(users)} differ only in case; their output folders would be one")
        return tokens

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'effft.db'}"

    @property
    def allowed_dataset_roots(self) -> list[Path]:
        return [p.resolve() for p in (self.dataset_roots or [self.data_dir])]

    @property
    def allowed_output_roots(self) -> list[Path]:
        return [p.resolve() for p in (self.output_roots or [self.data_dir / "outputs"])]
