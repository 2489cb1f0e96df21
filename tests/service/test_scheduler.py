# ruff: noqa: F811  (the fixtures imported from scheduler_fixtures are named by the tests' parameters)
"""The scheduler against a fake cluster: planning with a real tiny model, waiting for GPUs, following Ray to the end."""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planner import Inventory, cpu_with_memory
from planner.calibration import CalibrationTable
from planner.plan import load_plan
from service.planning import PlanningRequest
from service.scheduler import Scheduler
from service.states import State
from tests.service.conftest import CPU_INVENTORY, FakeCluster, job_spec, write_jsonl
from tests.service.scheduler_fixtures import queue, ray_id, scheduler, settings, store  # noqa: F401
from worker.job_file import JobFile


def test_a_queued_job_is_planned_and_submitted(scheduler, store, cluster, queue, settings):
    job_id = queue()
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert job.state == State.RUNNING, job.message
    assert job.plan is not None and job.plan["gpus"] == 1
    assert (job.ray_job_id, job.gpus, job.gpu_type) == (ray_id(job_id), 1, job.plan["gpu"])
    assert job.started_at is not None
    assert [s[0] for s in cluster.submitted] == [job_id]
    job_file = settings.data_dir.resolve() / "runs" / job_id / "job.json"
    assert f"-m worker.job_main {job_file}" in cluster.submitted[0][1]
    config = JobFile.read(job_file)  # what the driver reads, typed and validated
    assert config.job_id == job_id and config.api_url == "http://testserver"
    assert config.worker_token and config.worker_token == job.worker_token
    assert config.plan == load_plan(job.plan) and config.confinement.owner == "alice"
    assert config.output_dir == str(settings.data_dir.resolve() / "outputs" / "alice" / job_id)  # own area
    assert stat.S_IMODE(job_file.stat().st_mode) == 0o600
    assert [e.to_state for e in store.events(job_id)] == ["queued", "planning", "running"]
    scheduler.tick(wait=60)  # still running on Ray: nothing more happens
    assert len(cluster.submitted) == 1 and store.get(job_id).state == State.RUNNING


def test_a_second_exclusive_job_waits_for_the_only_gpu_and_starts_when_it_is_free(scheduler, store, cluster,
                                                                                   queue):
    whole = {"exclusive": True}
    first, second = queue("first", resources=whole), queue("second", resources=whole)
    scheduler.tick(wait=60)
    assert store.get(first).state == State.RUNNING
    assert store.get(first).placement["exclusive"] and "resources.exclusive" in store.events(first)[-1].reason
    waiting = store.get(second)
    assert waiting.state == State.WAITING and waiting.plan is not None
    assert "needs 1 whole cpu, 0 free" in store.events(second)[-1].reason
    scheduler.tick(wait=60)
    assert store.get(second).state == State.WAITING
    cluster.statuses[ray_id(first)] = "SUCCEEDED"
    scheduler.tick(wait=60)
    assert store.get(first).state == State.SUCCEEDED
    assert store.get(second).state == State.RUNNING
    assert [s[0] for s in cluster.submitted] == [first, second]


def run_one(scheduler, store, queue) -> str:
    job_id = queue()
    scheduler.tick(wait=60)
    assert store.get(job_id).state == State.RUNNING
    return job_id


def test_ray_success_ends_the_job_succeeded(scheduler, store, cluster, queue):
    job_id = run_one(scheduler, store, queue)
    cluster.statuses[ray_id(job_id)] = "SUCCEEDED"
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert (job.state, job.cause) == (State.SUCCEEDED, None)
    assert job.finished_at is not None


def test_ray_failure_with_an_out_of_memory_error_is_cause_oom(scheduler, store, cluster, queue):
    job_id = run_one(scheduler, store, queue)
    cluster.statuses[ray_id(job_id)] = "FAILED"
    cluster.log_text[ray_id(job_id)] = "step 3\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\n"
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert (job.state, job.cause) == (State.FAILED, "oom")
    assert job.message.startswith("torch.OutOfMemoryError")


def test_ray_failure_otherwise_is_cause_worker(scheduler, store, cluster, queue):
    job_id = run_one(scheduler, store, queue)
    cluster.statuses[ray_id(job_id)] = "FAILED"
    cluster.log_text[ray_id(job_id)] = "Traceback\nKeyError: 'labels'\n"
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert (job.state, job.cause, job.message) == (State.FAILED, "worker", "KeyError: 'labels'")


def test_ray_failure_without_logs_says_so(scheduler, store, cluster, queue):
    job_id = run_one(scheduler, store, queue)
    cluster.statuses[ray_id(job_id)] = "FAILED"
    scheduler.tick(wait=60)
    assert (store.get(job_id).cause, store.get(job_id).message) == ("worker", "Ray job failed")


@pytest.mark.parametrize("status", ["STOPPED", "MISSING"])
def test_a_running_job_that_ray_lost_or_stopped_is_cause_system(scheduler, store, cluster, queue, status):
    job_id = run_one(scheduler, store, queue)
    cluster.statuses[ray_id(job_id)] = status
    scheduler.tick(wait=60)
    assert (store.get(job_id).state, store.get(job_id).cause) == (State.FAILED, "system")


def test_a_dataset_with_bad_rows_fails_as_bad_input(scheduler, store, cluster, queue, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "hi"}]},
                                               {"messages": "not a list"}])
    job_id = queue(dataset=bad)
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert (job.state, job.cause) == (State.FAILED, "bad_input"), job.message
    assert job.message and job.finished_at is not None
    assert cluster.submitted == []


def test_a_missing_dataset_fails_as_bad_input(scheduler, store, cluster, queue, tmp_path):
    job_id = queue(dataset=tmp_path / "nothing.jsonl")
    scheduler.tick(wait=60)
    assert (store.get(job_id).state, store.get(job_id).cause) == (State.FAILED, "bad_input")


def test_a_job_too_big_for_the_cluster_fails_as_infeasible(scheduler, store, cluster, queue):
    job_id = queue(resources={"gpus": 1, "max_memory_fraction": 0.0001})
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert (job.state, job.cause) == (State.FAILED, "infeasible"), job.message
    assert cluster.submitted == []


def test_cancelling_a_running_job_stops_it_on_ray_then_ends_cancelled(scheduler, store, cluster, queue):
    job_id = run_one(scheduler, store, queue)
    assert store.transition(job_id, State.RUNNING, State.CANCELLING, "cancelled by alice")
    scheduler.tick(wait=60)
    assert cluster.stopped == [ray_id(job_id)]
    assert store.get(job_id).state == State.CANCELLING
    cluster.statuses[ray_id(job_id)] = "STOPPED"
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert (job.state, job.cause) == (State.CANCELLED, None)
    assert [e.to_state for e in store.events(job_id)][-2:] == ["cancelling", "cancelled"]


def test_a_cancelled_job_that_finished_first_ends_succeeded(scheduler, store, cluster, queue):
    job_id = run_one(scheduler, store, queue)
    store.transition(job_id, State.RUNNING, State.CANCELLING)
    cluster.statuses[ray_id(job_id)] = "SUCCEEDED"
    scheduler.tick(wait=60)
    assert store.get(job_id).state == State.SUCCEEDED
    assert cluster.stopped == []


def test_a_cancelled_waiting_job_is_never_submitted(scheduler, store, cluster, queue):
    first, second = queue("first", resources={"exclusive": True}), queue("second", resources={"exclusive": True})
    scheduler.tick(wait=60)
    assert store.transition(second, State.WAITING, State.CANCELLED)
    cluster.statuses[ray_id(first)] = "SUCCEEDED"
    scheduler.tick(wait=60)
    assert [s[0] for s in cluster.submitted] == [first]
    assert store.get(second).state == State.CANCELLED


def test_reconcile_puts_a_job_caught_mid_planning_back_in_the_queue(scheduler, store, cluster, queue):
    job_id = queue()
    assert store.claim_next_queued().id == job_id  # a scheduler that died here
    scheduler.reconcile()
    assert store.get(job_id).state == State.QUEUED
    assert [e.to_state for e in store.events(job_id)] == ["queued", "planning", "queued"]
    scheduler.tick(wait=60)
    assert store.get(job_id).state == State.RUNNING


class RefusingCluster:
    """Submits fail (Ray away), and Ray may already know the job (a submit that a dead scheduler made)."""

    def __init__(self, cluster, known: set[str]):
        self.cluster, self.known = cluster, known

    def __getattr__(self, name):
        return getattr(self.cluster, name)

    def submit(self, job_id, entrypoint, env):
        raise RuntimeError(f"Job with submission_id {job_id} already exists" if job_id in self.known else "refused")

    def status(self, ray_job_id):
        return "RUNNING" if ray_job_id in self.known else "MISSING"


def test_a_failing_submit_waits_and_retries_without_blocking_the_pass(store, settings, cluster, queue):
    refusing = RefusingCluster(cluster, known=set())
    scheduler = Scheduler(store, settings, refusing, "http://testserver")
    first = queue("first")
    scheduler.tick(wait=60)
    assert store.get(first).state == State.WAITING  # planned, submit failed: retried by the waiting pass
    scheduler.tick(wait=60)  # the retry fails again; the pass goes on
    scheduler.cluster = cluster
    scheduler.tick(wait=60)
    assert store.get(first).state == State.RUNNING


def test_a_job_ray_already_runs_is_adopted_and_keeps_its_worker_token(store, settings, cluster, queue):
    job_id = queue("adopted")
    token = store.issue_worker_token(job_id)
    scheduler = Scheduler(store, settings, RefusingCluster(cluster, known={job_id}), "http://testserver")
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert job.state == State.RUNNING and job.ray_job_id == job_id and job.worker_token == token


# -- planning off the loop, within a time limit, against the files as they are then (issue 9) --------------------


def long_conversations(path, rows: int = 1000, exchanges: int = 200):
    """A dataset that takes minutes to profile, though it is only 27 MB: each conversation of `exchanges`
    question-answer pairs is rendered by the chat template once per assistant turn, prefix by prefix (0.39 s a
    conversation on this machine's idle core: about 6.5 minutes for 1,000)."""
    from worker.synthetic import make_pairs

    messages = [message for question, answer in make_pairs(exchanges, seed=2)
                for message in ({"role": "user", "content": question}, {"role": "assistant", "content": answer})]
    path.write_text((json.dumps({"messages": messages}) + "\n") * rows, encoding="utf-8")
    return path


def tick_until(scheduler, done, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        scheduler.tick(wait=1)


def process_gone(pid: int) -> bool:
    """Ended: no such process, or a zombie (an orphan's new parent may be slow to reap it, or never do)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_a_dataset_that_takes_minutes_to_profile_delays_only_its_own_job(store, settings, queue, tmp_path):
    cluster = FakeCluster(Inventory.single(cpu_with_memory(16 * 2**30), 2))  # room for both small jobs
    scheduler = Scheduler(store, settings, cluster, "http://testserver")
    slow = queue("slow", dataset=long_conversations(tmp_path / "long.jsonl"))
    small = [queue("small-1"), queue("small-2")]
    assert settings.planning_processes == 2  # the default: the slow job holds one slot throughout
    tick_until(scheduler, lambda: all(store.get(job_id).state == State.RUNNING for job_id in small))
    assert [store.get(job_id).state for job_id in small] == [State.RUNNING, State.RUNNING]
    assert store.get(slow).state == State.PLANNING and [s[0] for s in cluster.submitted] == small
    pid = scheduler.planning_pids()[slow]
    assert not process_gone(pid)  # still profiling, in a process of its own
    assert store.transition(slow, State.PLANNING, State.CANCELLED, "cancelled by alice")
    scheduler.tick()
    assert scheduler.planning_pids() == {} and process_gone(pid)  # killed at once: its slot is free


def test_a_job_planning_past_its_time_limit_is_killed_and_fails(store, settings, cluster, queue, tmp_path):
    now = [0.0]
    settings.planning_timeout_seconds = 100
    scheduler = Scheduler(store, settings, cluster, "http://testserver", clock=lambda: now[0])
    slow, fast = queue("slow", dataset=long_conversations(tmp_path / "long.jsonl")), queue("fast")
    tick_until(scheduler, lambda: store.get(fast).state == State.RUNNING)
    assert store.get(fast).state == State.RUNNING  # planned and started while "slow" still profiles
    assert store.get(slow).state == State.PLANNING
    cluster.statuses[ray_id(fast)] = "SUCCEEDED"
    scheduler.tick()
    assert store.get(fast).state == State.SUCCEEDED  # followed meanwhile
    pid = scheduler.planning_pids()[slow]
    now[0] = 101
    scheduler.tick()
    job = store.get(slow)
    assert (job.state, job.cause) == (State.FAILED, "bad_input") and "longer than 100 s" in job.message
    assert "EFFFT_PLANNING_TIMEOUT_SECONDS" in job.message
    assert scheduler.planning_pids() == {} and process_gone(pid)
    scheduler.tick(wait=1)
    assert store.get(slow).state == State.FAILED and [s[0] for s in cluster.submitted] == [fast]


def test_a_planning_process_killed_fails_its_job_as_efffts_own_failure(store, settings, cluster, queue, tmp_path):
    scheduler = Scheduler(store, settings, cluster, "http://testserver")
    job_id = queue(dataset=long_conversations(tmp_path / "long.jsonl"))
    scheduler.tick()
    os.kill(scheduler.planning_pids()[job_id], signal.SIGKILL)  # as the kernel's OOM killer would
    tick_until(scheduler, lambda: store.get(job_id).state == State.FAILED, seconds=30)
    job = store.get(job_id)
    assert job.cause == "system" and "without an answer (exit code -9, killed: out of memory?)" in job.message
    assert "EFFFT_PLANNING_MAX_DATASET_BYTES" in job.message and scheduler.planning_pids() == {}


SERVER = """
import pickle, sys, time
from service.planning import PlanningProcess
process = PlanningProcess(pickle.loads(sys.stdin.buffer.read()), "effft-plan-orphan")
print(process.pid, flush=True)
time.sleep(600)
"""


def test_a_planning_process_ends_itself_when_the_server_is_gone(store, settings, queue, tmp_path):
    job = store.get(queue(dataset=long_conversations(tmp_path / "long.jsonl")))
    request = PlanningRequest(job.owner, job.spec, settings, CPU_INVENTORY, CalibrationTable({}), timeout_seconds=600)
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              cwd=Path(__file__).parents[2])
    server.stdin.write(pickle.dumps(request))
    server.stdin.close()
    pid = int(server.stdout.readline())  # planning now, for minutes
    assert not process_gone(pid)
    server.kill()  # as the OOM killer or a kill -9 would end it: nothing of the server runs after this
    server.wait()
    deadline = time.monotonic() + 20
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process_gone(pid)  # nothing else would have stopped it for the whole planning time limit


@pytest.mark.parametrize(("setting", "field", "named"), [
    ("planning_max_dataset_bytes", "dataset.path", "EFFFT_PLANNING_MAX_DATASET_BYTES"),
    ("planning_max_rows", "dataset.max_samples", "EFFFT_PLANNING_MAX_ROWS")])
def test_a_dataset_past_the_size_limits_fails_as_bad_input_naming_the_fix(scheduler, store, cluster, queue,
                                                                         settings, setting, field, named):
    setattr(settings, setting, 100)  # the chat data: 200 rows, 20 KB
    job_id = queue()
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert (job.state, job.cause) == (State.FAILED, "bad_input"), job.message
    assert job.message.startswith(f"{field} = ") and named in job.message
    assert cluster.submitted == []


def test_dataset_max_samples_brings_a_dataset_within_the_row_limit(scheduler, store, settings, tiny_model,
                                                                    chat_data):
    settings.planning_max_rows = 100
    spec = job_spec(tiny_model, chat_data)
    spec["dataset"]["max_samples"] = 100
    job_id = store.submit("alice", spec)[0].id
    scheduler.tick(wait=60)
    assert store.get(job_id).state == State.RUNNING, store.get(job_id).message


def test_a_dataset_swapped_for_a_link_outside_after_submit_fails_at_planning(scheduler, store, cluster, queue,
                                                                            tmp_path):
    data = write_jsonl(tmp_path / "swap.jsonl", [{"text": "hello"}])
    job_id = queue(dataset=data)
    data.unlink()
    data.symlink_to("/etc/passwd")
    scheduler.tick(wait=60)
    job = store.get(job_id)
    assert (job.state, job.cause) == (State.FAILED, "bad_input") and "root:" not in job.message
    assert cluster.submitted == []


def test_the_job_file_names_its_ray_cluster_and_confinement(store, settings, cluster, queue):
    cluster.address = "127.0.0.1:6390"
    scheduler = Scheduler(store, settings, cluster, "http://testserver")
    job_id = queue()
    scheduler.tick(wait=60)
    config = json.loads((settings.data_dir.resolve() / "runs" / job_id / "job.json").read_text())
    assert config["ray_address"] == "127.0.0.1:6390"  # never `auto`: another server's head may be on this host
    assert config["confinement"]["owner"] == "alice"
    assert stat.S_IMODE((settings.data_dir.resolve() / "runs").stat().st_mode) == 0o700


def test_the_driver_checks_the_confinement_again_and_connects_by_address(store, settings, cluster, queue, tmp_path,
                                                                         monkeypatch):
    import worker.job_main as job_main
    from worker.errors import DataError

    cluster.address = "127.0.0.1:6390"
    settings.checkpoints_to_keep = 3
    data = write_jsonl(tmp_path / "late.jsonl", [{"text": "hello"}])
    job_id = queue(dataset=data)
    Scheduler(store, settings, cluster, "http://testserver").tick(wait=60)
    job_file = settings.data_dir.resolve() / "runs" / job_id / "job.json"
    connected = []
    monkeypatch.setattr(job_main, "ensure_ray", lambda address=None: connected.append(address))
    driven = []
    monkeypatch.setattr(job_main, "inventory", lambda: (cluster.inventory(), {}))
    monkeypatch.setattr(job_main, "run_with_recovery", lambda run, sink, replanner, max_replans: driven.append(
        (replanner is not None, max_replans, run.job.checkpoints_to_keep)))
    monkeypatch.setattr(job_main.Shipper, "start", lambda self: self)
    monkeypatch.setattr(job_main.Shipper, "drain", lambda self, seconds: True)
    assert job_main.main(str(job_file)) == 0
    assert connected == ["127.0.0.1:6390"]
    # the job file carries the spec, so the driver can re-plan after an out-of-memory, at most this often
    assert driven == [(True, settings.max_replans, 3)]  # EFFFT_CHECKPOINTS_TO_KEEP, through the job file
    data.unlink()
    data.symlink_to("/etc/passwd")  # swapped after planning
    with pytest.raises(DataError, match="outside the roots"):
        job_main.main(str(job_file))


def test_a_job_cancelled_while_it_is_planned_is_never_submitted(store, settings, cluster, queue, tmp_path):
    scheduler = Scheduler(store, settings, cluster, "http://testserver")
    job_id = queue(dataset=long_conversations(tmp_path / "long.jsonl"))
    scheduler.tick()
    assert store.get(job_id).state == State.PLANNING
    pid = scheduler.planning_pids()[job_id]
    assert store.transition(job_id, State.PLANNING, State.CANCELLED, "cancelled by alice")
    scheduler.tick(wait=60)
    assert store.get(job_id).state == State.CANCELLED
    assert scheduler.planning_pids() == {} and process_gone(pid)
    assert cluster.submitted == [] and not (settings.data_dir / "runs" / job_id).exists()


def test_a_job_cancelled_just_after_its_planning_ended_is_never_submitted(store, settings, cluster, queue):
    scheduler = Scheduler(store, settings, cluster, "http://testserver")
    job_id = queue()
    scheduler.tick()
    scheduler._wait_for_planning(time.monotonic() + 60)  # the plan is in, not yet reaped
    assert store.transition(job_id, State.PLANNING, State.CANCELLED, "cancelled by alice")
    scheduler.tick()
    assert store.get(job_id).state == State.CANCELLED and store.get(job_id).plan is None
    assert cluster.submitted == [] and not (settings.data_dir / "runs" / job_id).exists()


def test_a_new_plan_is_calibrated_by_the_runs_the_store_measured(scheduler, store, queue):
    from service.records import store_records

    first_id = queue("first", objective="fastest")  # the second plans beside a running job: keep its shape
    scheduler.tick(wait=60)
    first = load_plan(store.get(first_id).plan)
    assert first.memory.calibration == 1.0  # nothing measured yet: the raw model
    # the worker's summary: 20 % more memory than predicted, half the predicted tokens/s
    summary = {"kind": "summary", "memory_peak_bytes": int(first.memory.total * 1.2),
               "memory_predicted_bytes": first.memory.total,
               "tokens_per_second": first.throughput.tokens_per_second / 2}
    store_records(store, store.get(first_id), [summary])
    second_id = queue("second", objective="fastest")
    scheduler.tick(wait=60)
    second = load_plan(store.get(second_id).plan)
    [said] = [d for d in second.decisions if d.setting == "calibration"]
    assert "from 1 run of" in said.reason
    assert second.memory.total == pytest.approx(first.memory.total * 1.2 ** (1 / 1.02), rel=0.01)
    assert second.throughput.tokens_per_second == pytest.approx(first.throughput.tokens_per_second * 0.5 ** (1 / 1.02))


# -- packing by predicted memory (service/packing.py) ---------------------------------------------------

GB = 10**9


def packing_scheduler(store, settings, capacity: int) -> tuple[Scheduler, FakeCluster]:
    cluster = FakeCluster(Inventory.single(cpu_with_memory(capacity), 1))
    return Scheduler(store, settings, cluster, "http://testserver"), cluster


def test_three_small_jobs_share_the_cpu_and_a_fourth_waits_for_room(store, settings, queue):
    probe, _ = packing_scheduler(store, settings, 3 * GB)
    first = queue("first", objective="fastest")  # one shape for all four, queued or not
    probe.tick(wait=60)
    held = store.get(first).placement["held_bytes"]
    # room for exactly three of these: the fourth waits
    scheduler, cluster = packing_scheduler(store, settings, 3 * held + held // 2)
    others = [queue(name, objective="fastest") for name in ("second", "third", "fourth")]
    scheduler.tick(wait=60)
    scheduler.tick(wait=60)
    states = {job_id: store.get(job_id).state for job_id in (first, *others)}
    assert [states[j] for j in (first, *others[:2])] == [State.RUNNING] * 3
    assert states[others[2]] == State.WAITING
    assert "on one cpu; the most any has free is" in store.events(others[2])[-1].reason
    placement = store.get(others[1]).placement
    assert placement["held_bytes"] == held and not placement["exclusive"] and len(placement["neighbours"]) == 2
    assert "packed onto local/cpu/0" in [e.reason for e in store.events(others[1]) if e.to_state == "running"][0]
    # the driver is told its share and its cap (the plan's estimate + margin)
    config = json.loads((settings.data_dir.resolve() / "runs" / others[1] / "job.json").read_text())
    plan = store.get(others[1]).plan
    assert config["memory_cap_bytes"] == plan["memory"]["budgeted"] and 0 < config["device_share"] < 0.34
    cluster.statuses[ray_id(first)] = "SUCCEEDED"
    scheduler.tick(wait=60)
    assert store.get(others[2]).state == State.RUNNING


def test_an_exclusive_job_waits_for_an_empty_device_even_with_room_on_it(store, settings, queue):
    scheduler, cluster = packing_scheduler(store, settings, 8 * GB)
    small, whole = queue("small"), queue("whole", resources={"exclusive": True})
    scheduler.tick(wait=60)
    scheduler.tick(wait=60)
    assert store.get(small).state == State.RUNNING and store.get(whole).state == State.WAITING
    assert "needs 1 whole cpu, 0 free" in store.events(whole)[-1].reason
