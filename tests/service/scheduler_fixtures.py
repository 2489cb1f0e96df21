"""The scheduler tests' fixtures: a SQLite store of the test's own, settings whose roots hold the tiny model and
its data, a scheduler on the FakeCluster, and `queue` to submit a job. Test modules import them by name."""

from __future__ import annotations

import pytest

from service.db import make_engine
from service.migrate import upgrade
from service.scheduler import Scheduler
from service.store import JobStore
from tests.service.conftest import job_spec


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'effft.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield JobStore(engine)
    engine.dispose()


@pytest.fixture
def scheduler(store, settings, cluster) -> Scheduler:
    return Scheduler(store, settings, cluster, "http://testserver")


@pytest.fixture
def queue(store, tiny_model, chat_data):
    def submit(name: str = "test", dataset=chat_data, **fields) -> str:
        return store.submit("alice", job_spec(tiny_model, dataset, name, **fields))[0].id

    return submit


@pytest.fixture
def settings(tmp_path, tiny_model, chat_data):  # SQLite only: the scheduler's own store above
    from service.settings import Settings

    return Settings(data_dir=tmp_path / "data", dataset_roots=[tiny_model, chat_data.parent, tmp_path])


def ray_id(job_id: str) -> str:
    return f"ray-{job_id}"
