"""The driver's job file (`job.json`): what the scheduler hands one Ray job, typed and validated.

The scheduler writes it (service/scheduler.py) and `python -m worker.job_main` reads it; both go
through this model, so a field renamed on one side fails on read with its name, not on a worker.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from planner.plan import Plan, load_plan
from worker.confine import Confinement
from worker.retention import DEFAULT_CHECKPOINTS_TO_KEEP


class ConfinementFile(BaseModel):
    """`worker.confine.Confinement` as JSON: the paths this job's owner may read and write."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    owner: str
    read_roots: list[str]
    output_roots: list[str]
    private: list[str]
    private_files_in: list[str]

    @classmethod
    def of(cls, rules: Confinement) -> ConfinementFile:
        return cls.model_validate(rules.to_dict())

    def rules(self) -> Confinement:
        return Confinement.from_dict(self.model_dump())


class JobFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    job_id: str
    plan: Plan
    run_dir: str  # the run's folder: spool, Ray storage, the Trainer's checkpoints
    output_dir: str  # the final adapter or model
    api_url: str  # where the shipper posts the step records
    worker_token: str  # the job's own token for that
    accelerator_type: str | None = None  # Ray's accelerator_type for the plan's GPU, if the cluster names it
    ray_address: str | None = None  # the cluster the service named: never `auto` (another server's head)
    confinement: ConfinementFile | None = None
    spec: dict | None = None  # the job as submitted: what a re-plan after running out of memory starts from
    max_replans: int = 3  # re-plans after running out of memory before the job fails with cause oom
    memory_safety_line: float = 0.95  # a steady step above this share of the budget is re-planned first
    device_share: float | None = None  # the share of each device the job was packed into; None: whole devices
    memory_cap_bytes: int | None = None  # what the worker holds itself to there; None: the plan's budget
    checkpoints_to_keep: int = Field(default=DEFAULT_CHECKPOINTS_TO_KEEP, ge=1)  # beside the one resumed from

    @classmethod
    def read(cls, path: Path) -> JobFile:
        import json

        data = json.loads(path.read_text())
        return cls.model_validate({**data, "plan": load_plan(data.get("plan"))})

    def to_json(self) -> str:
        return self.model_dump_json()
