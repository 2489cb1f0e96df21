# ruff: noqa: F811  (the fixtures imported from scheduler_fixtures are named by the tests' parameters)
"""Faults the chaos drill (bench/chaos) found. A job's driver killed from outside is started again (resuming from its
checkpoint); a driver that failed by itself is not; a job failed on a full disk says so, cause `system`.

Before, a SIGKILLed driver failed its job as cause `worker`, with the last line of Ray's log ("Job entrypoint
command failed with exit code 137") as the message; a full disk failed every job on it as cause `worker`.
"""

from __future__ import annotations

import pytest

from service.restarts import how_it_died, restarts_of
from service.states import State
from tests.service.conftest import FakeCluster
from tests.service.scheduler_fixtures import scheduler, settings, store  # noqa: F401  (fixtures)


@pytest.fixture
def running(scheduler, store, tiny_model, chat_data):
    from tests.service.conftest import job_spec

    job_id = store.submit("alice", job_spec(tiny_model, chat_data, "driven"))[0].id
    scheduler.tick(wait=60)
    assert store.get(job_id).state == State.RUNNING
    return job_id


def kill_driver(cluster: FakeCluster, ray_job_id: str, exit_code: int | None) -> None:
    cluster.statuses[ray_job_id] = "FAILED"
    cluster.exit_codes[ray_job_id] = exit_code
    cluster.log_text[ray_job_id] = "Job entrypoint command failed with exit code 137"


@pytest.mark.parametrize("exit_code", [137, -9, None])
def test_a_killed_driver_is_submitted_again_and_the_job_keeps_running(scheduler, store, cluster, running, exit_code):
    kill_driver(cluster, f"ray-{running}", exit_code)
    scheduler.tick(wait=60)
    job = store.get(running)
    assert job.state == State.RUNNING and job.ray_job_id == f"ray-{running}-r1"
    # the same job file again (same run folder: Ray resumes the run from its last checkpoint), as a new Ray job
    assert [(sub[0], sub[1]) for sub in cluster.submitted] == [(running, cluster.submitted[0][1]),
                                                                (f"{running}-r1", cluster.submitted[0][1])]
    note = store.events(running)[-1]
    assert (note.from_state, note.to_state) == ("running", "running")
    assert "driver died" in note.reason and "restart 1 of at most 3" in note.reason
    cluster.statuses[job.ray_job_id] = "SUCCEEDED"
    scheduler.tick(wait=60)
    assert store.get(running).state == State.SUCCEEDED


def test_a_driver_that_failed_by_itself_fails_the_job(scheduler, store, cluster, running):
    kill_driver(cluster, f"ray-{running}", 1)  # a Python error: the training's own failure
    scheduler.tick(wait=60)
    job = store.get(running)
    assert (job.state, job.cause) == (State.FAILED, "worker") and len(cluster.submitted) == 1


def test_restarts_stop_at_the_limit_and_the_job_fails_saying_why(scheduler, store, cluster, running, settings):
    for restart in range(settings.max_driver_restarts + 1):
        ray_job_id = store.get(running).ray_job_id
        assert restarts_of(ray_job_id) == restart
        kill_driver(cluster, ray_job_id, 137)
        scheduler.tick(wait=60)
    job = store.get(running)
    assert (job.state, job.cause) == (State.FAILED, "worker")
    assert len(cluster.submitted) == 1 + settings.max_driver_restarts
    assert any("no restart left (at most 3)" in event.reason for event in store.events(running))


def test_a_job_cancelled_while_its_driver_restarts_stops_the_new_driver(scheduler, store, cluster, running):
    kill_driver(cluster, f"ray-{running}", 137)
    job = store.get(running)
    store.transition(running, State.RUNNING, State.CANCELLING)  # between the pass's read and its restart
    from service.restarts import restart_driver

    assert not restart_driver(scheduler, job)
    assert cluster.stopped == [f"ray-{running}-r1"]


def test_how_a_driver_died():
    assert how_it_died(1) is None and how_it_died(0) is None and how_it_died(2) is None
    assert how_it_died(137) == "it was killed by signal 9" and how_it_died(-9) == "it was killed by signal 9"
    assert "without an exit code" in how_it_died(None)


def test_a_job_failed_on_a_full_disk_is_cause_system_and_says_the_disk_is_full(scheduler, store, cluster, running):
    kill_driver(cluster, f"ray-{running}", 1)
    cluster.log_text[f"ray-{running}"] = "Traceback\nOSError: [Errno 28] No space left on device\n"
    scheduler.tick(wait=60)
    job = store.get(running)
    assert (job.state, job.cause) == (State.FAILED, "system")
    assert job.message.startswith("the disk of the job's run folder (or output) is full; free space, submit again: "
                                  "OSError: [Errno 28]")
