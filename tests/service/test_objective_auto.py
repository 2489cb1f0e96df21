# ruff: noqa: F811  (the scheduler tests' fixtures, imported below, are named by the tests' parameters)
"""objective auto in the service: a job planned while more jobs wait than GPUs are free is planned for
throughput (a smaller memory share, more jobs packed), and its plan says so with the queue's numbers."""

from __future__ import annotations

import pytest

from service.scheduler import Scheduler
from service.states import State
from tests.service.scheduler_fixtures import queue, ray_id, settings, store  # noqa: F401  (fixtures)


def planned(store, scheduler, job_ids):
    for _ in range(60):
        scheduler.tick(wait=1)
        if all(store.get(job_id).plan is not None for job_id in job_ids):
            break
    return [store.get(job_id) for job_id in job_ids]


def objective_of(job) -> tuple[str, dict]:
    decision = next(d for d in job.plan["decisions"] if d["setting"] == "objective")
    assert decision["choice"] == job.plan["settings"]["objective"]
    return decision["choice"], decision["numbers"]


@pytest.mark.parametrize("setting_on", [True, False])
def test_jobs_queued_beyond_the_free_gpus_are_planned_for_throughput(store, settings, cluster, queue, setting_on):
    settings.throughput_when_queued = setting_on
    scheduler = Scheduler(store, settings, cluster, "http://testserver")
    job_ids = [queue(f"job-{index}") for index in range(3)]  # one CPU device, nothing running yet
    first = planned(store, scheduler, job_ids[:1])[0]
    assert first.state in (State.RUNNING, State.WAITING), first.message
    if setting_on:
        assert objective_of(first) == ("throughput", {"jobs_waiting": 3, "free_gpus": 1})
    else:
        assert objective_of(first)[0] == "fastest"


def test_a_job_alone_is_planned_fastest_and_a_pinned_objective_is_kept(store, settings, cluster, queue):
    scheduler = Scheduler(store, settings, cluster, "http://testserver")
    alone = planned(store, scheduler, [queue("alone")])[0]
    assert objective_of(alone) == ("fastest", {})
    cluster.statuses[ray_id(alone.id)] = "RUNNING"  # it holds the only device now: the next ones queue
    pinned = [queue(f"pinned-{index}", objective="fastest") for index in range(3)]
    for job in planned(store, scheduler, pinned):
        choice = next(d for d in job.plan["decisions"] if d["setting"] == "objective")
        assert (choice["choice"], choice["pinned"]) == ("fastest", True)
