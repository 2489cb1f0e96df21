"""Packing on the embedded default (a real server, its own local Ray): the CPU is one device of
EFFFT_CPU_DEVICE_MEMORY_BYTES; four tiny jobs submitted together, room for three."""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest

from planner.catalog import CPU
from tests.conftest import free_port
from tests.service.test_e2e import get, lora_job, run_cli

pytestmark = pytest.mark.slow  # four Ray jobs on two cores: minutes; `make test-all`
HELD_PER_JOB = CPU.context_bytes + 40 * 2**20  # the worker process's footprint + a tiny LoRA plan's, generously


@pytest.fixture(scope="module")
def packed_server(tmp_path_factory, effft_bin):
    data = tmp_path_factory.mktemp("effft-packing")
    capacity = int(3.5 * HELD_PER_JOB)
    env = {**os.environ, "EFFFT_DATA_DIR": str(data), "EFFFT_CPU_DEVICE_MEMORY_BYTES": str(capacity)}
    env.pop("EFFFT_URL", None)
    env.pop("EFFFT_TOKEN", None)
    port = free_port()
    started = run_cli(effft_bin, env, "server", "--background", "--port", str(port), timeout=240)
    assert started.returncode == 0, started.stderr + (data / "server.log").read_text(errors="replace")[-3000:]
    assert run_cli(effft_bin, env, "init-example", str(data / "example")).returncode == 0
    yield {"data": data, "env": env, "url": f"http://127.0.0.1:{port}", "capacity": capacity,
           "token": (data / "admin-token").read_text().strip()}
    run_cli(effft_bin, env, "stop")


def wait_all(server, job_ids: list[str], timeout: float = 1500) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {job_id: get(server["url"], server["token"], f"/v1/jobs/{job_id}") for job_id in job_ids}
        if all(job["state"] in ("succeeded", "failed", "cancelled") for job in jobs.values()):
            return jobs
        time.sleep(2)
    raise AssertionError(f"jobs still running after {timeout} s: {[j['state'] for j in jobs.values()]}")


def interval(server, job_id: str) -> tuple[datetime, datetime, list[dict]]:
    events = get(server["url"], server["token"], f"/v1/jobs/{job_id}/events")["items"]
    start = next(e["at"] for e in events if e["to"] == "running" and e["from"] != "running")
    end = next(e["at"] for e in events if e["to"] in ("succeeded", "failed", "cancelled"))
    return datetime.fromisoformat(start), datetime.fromisoformat(end), events


def test_three_jobs_run_packed_together_and_a_fourth_waits_for_room(packed_server, effft_bin):
    job_ids = []
    for number in range(4):
        submitted = run_cli(effft_bin, packed_server["env"], "submit", str(lora_job(packed_server, f"p{number}", 8)))
        assert submitted.returncode == 0, submitted.stderr
        job_ids.append(submitted.stdout.split("submitted ")[1].split()[0])
    jobs = wait_all(packed_server, job_ids)
    assert [jobs[j]["state"] for j in job_ids] == ["succeeded"] * 4, [jobs[j]["message"] for j in job_ids]
    spans = {job_id: interval(packed_server, job_id) for job_id in job_ids}
    order = sorted(job_ids, key=lambda j: spans[j][0])
    first_three, last = order[:3], order[3]
    # the first three ran at the same time: their running intervals overlap
    assert max(spans[j][0] for j in first_three) < min(spans[j][1] for j in first_three)
    # the fourth waited for room, and started only after one of them ended
    assert any(e["to"] == "waiting" and "on one cpu" in e["reason"] for e in spans[last][2])
    assert spans[last][0] >= min(spans[j][1] for j in first_three)
    for job_id in job_ids:  # each held to its own budget, within the device
        placement = jobs[job_id]["placement"]
        assert placement["held_bytes"] * 3 <= packed_server["capacity"] and not placement["exclusive"]
        steps = get(packed_server["url"], packed_server["token"], f"/v1/jobs/{job_id}/metrics")["items"]
        assert steps and all(s["memory_step_peak_bytes"] <= placement["cap_bytes"] for s in steps)


def under_estimating_history(server, job_yaml) -> None:
    """A finished run in the server's store that measured 60 % of the raw estimate: calibration will shrink the
    next full fine-tune's estimate, so its packed share (its cap) is too small by design."""
    from planner import Inventory, cpu_with_memory, load_job, plan_job
    from service.db import make_engine
    from service.store import JobStore

    spec = load_job(job_yaml)
    plan = plan_job(spec, Inventory.single(cpu_with_memory(server["capacity"]), 1), seq_len=64)
    store = JobStore(make_engine(f"sqlite:///{server['data'] / 'effft.db'}"))
    job, _ = store.submit("admin", {"name": "history", "model": "m", "dataset": {"path": "d"}})
    store.set_plan(job.id, plan.to_dict())
    store.save_records(job.id, [], {"memory_peak_bytes": int(plan.memory.total * 0.6),
                                    "tokens_per_second": plan.throughput.tokens_per_second}, None)
    store.engine.dispose()


def test_a_job_over_its_cap_is_replanned_while_its_neighbours_run_on_untouched(packed_server, effft_bin):
    import yaml

    wrong = lora_job(packed_server, "wrong", 8)
    job = yaml.safe_load(wrong.read_text())
    job.update({"method": "full", "seq_len": 64})
    wrong.write_text(yaml.safe_dump(job))
    under_estimating_history(packed_server, wrong)
    paths = [lora_job(packed_server, "left", 12), wrong, lora_job(packed_server, "right", 12)]
    job_ids = [run_cli(effft_bin, packed_server["env"], "submit", str(path)).stdout.split("submitted ")[1].split()[0]
               for path in paths]
    jobs = wait_all(packed_server, job_ids)
    assert [jobs[j]["state"] for j in job_ids] == ["succeeded"] * 3, [jobs[j]["message"] for j in job_ids]
    notes = [e["reason"] for e in get(packed_server["url"], packed_server["token"], f"/v1/jobs/{job_ids[1]}/events")
             ["items"] if e["from"] == e["to"]]
    assert any("out of memory at step" in note and "effective batch 16 unchanged" in note for note in notes), notes
    spans = {job_id: interval(packed_server, job_id)[:2] for job_id in job_ids}
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())  # they ran side by side
    for neighbour in (job_ids[0], job_ids[2]):  # every step once, from the first attempt: nothing restarted
        steps = get(packed_server["url"], packed_server["token"], f"/v1/jobs/{neighbour}/metrics")["items"]
        assert [s["step"] for s in steps] == list(range(1, 13))
        assert {s["plan_attempt"] for s in steps} == {0} and {s["attempt"] for s in steps} == {0}
