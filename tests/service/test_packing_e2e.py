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
