"""Service fixtures: a migrated database (SQLite file, and Postgres when marked), settings with three tokens,
a fake cluster, an API client, and a tiny real model with a dataset for planning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from planner import Inventory, cpu_with_memory
from service.db import make_engine
from service.migrate import upgrade
from service.settings import Settings
from service.store import JobStore

POSTGRES_URL = os.environ.get("EFFFT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
EFFFT_TABLES = "step_metrics, memory_checks, job_attempts, job_events, jobs, alembic_version"
TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
ADMIN_TOKEN = "tok-admin"
TINY_SHAPE = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2}
CPU_INVENTORY = Inventory.single(cpu_with_memory(16 * 2**30), 1)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ALICE, BOB, ADMIN = auth("tok-alice"), auth("tok-bob"), auth(ADMIN_TOKEN)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """A migrated, empty database: a fresh SQLite file, or the test Postgres with effft's tables dropped first."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'effft.db'}"
    else:
        url = POSTGRES_URL
        engine = make_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text(f"DROP TABLE IF EXISTS {EFFFT_TABLES} CASCADE"))
        finally:
            engine.dispose()
    upgrade(url)
    return url


@pytest.fixture
def store(database_url):
    engine = make_engine(database_url)
    yield JobStore(engine)
    engine.dispose()


@pytest.fixture
def roots(tmp_path) -> dict[str, Path]:
    folders = {"datasets": tmp_path / "datasets", "outputs": tmp_path / "outputs"}
    for folder in folders.values():
        folder.mkdir()
    return folders


@pytest.fixture
def settings(tmp_path, database_url, roots) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return Settings(data_dir=data_dir, database_url=database_url, tokens=dict(TOKENS), admin_tokens=[ADMIN_TOKEN],
                    dataset_roots=[roots["datasets"]], output_roots=[roots["outputs"]],
                    allow_trust_remote_code=False)


class FakeCluster:
    """The scheduler's and the API's view of Ray, in memory: submits, stops, statuses and logs set by the test."""

    def __init__(self, inventory: Inventory = CPU_INVENTORY):
        self._inventory = inventory
        self.submitted: list[tuple[str, str, dict]] = []  # (job_id, entrypoint, env)
        self.stopped: list[str] = []
        self.statuses: dict[str, str] = {}  # ray job id -> status; RUNNING when not set
        self.log_text: dict[str, str] = {}
        self.exit_codes: dict[str, int | None] = {}  # ray job id -> its driver's exit code; 1 when not set

    def inventory(self) -> Inventory:
        return self._inventory

    def submit(self, job_id: str, entrypoint: str, env: dict) -> str:
        self.submitted.append((job_id, entrypoint, env))
        return f"ray-{job_id}"

    def status(self, ray_job_id: str) -> str:
        return self.statuses.get(ray_job_id, "RUNNING")

    def exit_code(self, ray_job_id: str) -> int | None:
        return self.exit_codes.get(ray_job_id, 1)

    def stop(self, ray_job_id: str) -> None:
        self.stopped.append(ray_job_id)

    def logs(self, ray_job_id: str) -> str:
        return self.log_text.get(ray_job_id, "")


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def app(settings, store, cluster):
    """The API as `effft server` builds it (migrations, file modes), no scheduler, serving the test's own store:
    what the test writes, the API reads. The app's own engine then stays unused; it is closed afterwards."""
    from service.api.deps import get_store
    from service.server import build_app

    app = build_app(settings, cluster=cluster)
    app.dependency_overrides[get_store] = lambda: store
    yield app
    app.state.store.engine.dispose()


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


# -- a real tiny model and data, for planning -------------------------------------------------------------


@pytest.fixture(scope="session")
def pairs():
    from worker.synthetic import make_pairs

    return make_pairs(200, seed=1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, pairs) -> Path:
    from worker.tiny import build_tiny_model, train_tokenizer

    tokenizer = train_tokenizer([f"{q} {a}" for q, a in pairs], vocab_size=512)
    return build_tiny_model(tmp_path_factory.mktemp("model"), tokenizer, TINY_SHAPE)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def chat_data(tmp_path_factory, pairs) -> Path:
    from worker.synthetic import as_chat

    return write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", [as_chat(q, a) for q, a in pairs])


def job_spec(model: str | Path, dataset: str | Path, name: str = "test", **fields) -> dict:
    """A small valid job spec; `fields` replace top-level keys."""
    return {"name": name, "model": str(model), "dataset": {"path": str(dataset)}, "seq_len": 64,
            "resources": {"gpus": 1}, "training": {"max_steps": 4, "effective_batch_size": 4}, **fields}


@pytest.fixture
def spec(roots) -> dict:
    """A valid job body whose dataset lies inside the dataset root."""
    return job_spec("org/model", roots["datasets"] / "train.jsonl")
