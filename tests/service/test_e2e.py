"""The embedded default end to end: `effft server` in a subprocess with its own local Ray, the CLI, a restart.

One server (and Ray head) serves every test here; `effft stop` ends both at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.deploy.test_dashboards import dashboard_metrics, exposed_names


def run_cli(bin_path: str, env: dict, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([bin_path, *args], env=env, capture_output=True, text=True, timeout=timeout)


def get(url: str, token: str, path: str):
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode()
        return json.loads(body) if response.headers.get_content_type() == "application/json" else body


@pytest.fixture(scope="module")
def server(tmp_path_factory, effft_bin):
    data = tmp_path_factory.mktemp("effft-data")
    env = {**os.environ, "EFFFT_DATA_DIR": str(data)}
    env.pop("EFFFT_URL", None)
    env.pop("EFFFT_TOKEN", None)
    port = free_port()
    started = run_cli(effft_bin, env, "server", "--background", "--port", str(port), timeout=240)
    assert started.returncode == 0, started.stderr + (data / "server.log").read_text(errors="replace")[-3000:]
    made = run_cli(effft_bin, env, "init-example", str(data / "example"))
    assert made.returncode == 0, made.stderr
    info = {"data": data, "env": env, "port": port, "url": f"http://127.0.0.1:{port}",
            "token": (data / "admin-token").read_text().strip()}
    yield info
    stopped = run_cli(effft_bin, env, "stop")
    assert "Ray head" in stopped.stdout


def lora_job(server, name: str, steps: int) -> Path:
    job = yaml.safe_load((server["data"] / "example" / "job.yaml").read_text())
    job.update({"name": name, "method": "lora"})
    job["training"].update({"max_steps": steps, "learning_rate": 1e-2})
    job["output"] = {"dir": str(server["data"] / "outputs" / "admin" / name)}  # the admin token's own area
    path = server["data"] / "example" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_submit_follow_reaches_succeeded_with_every_step_stored_and_exported(server, effft_bin):
    done = run_cli(effft_bin, server["env"], "submit", str(lora_job(server, "e2e", 6)), "--follow",
                   "--progress-every", "1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout and "Run summary" in done.stdout
    # stdout is a pipe, as under `| cat`: plain progress lines, the first step's and the last's at least
    progress = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert progress[0].startswith("step 1/6 | loss ") and progress[-1].startswith("step 6/6 | loss "), progress
    assert all(" tok/s | mem peak " in line and " | ETA " in line for line in progress)
    job_id = done.stdout.split("submitted ")[1].split()[0]
    assert (server["data"] / "outputs" / "admin" / "e2e" / "adapter_model.safetensors").exists()
    steps = [m["step"] for m in get(server["url"], server["token"], f"/v1/jobs/{job_id}/metrics")["items"]]
    assert steps == [1, 2, 3, 4, 5, 6]
    exposition = get(server["url"], server["token"], "/metrics")
    for name in ("effft_job_tokens_per_second", "effft_job_mfu", "effft_job_memory_peak_bytes",
                 "effft_job_memory_predicted_bytes"):
        assert f'{name}{{job_id="{job_id}"' in exposition, name
    listed = run_cli(effft_bin, server["env"], "list")
    assert job_id in listed.stdout
    # every metric any Grafana dashboard queries is there after this real tiny job
    missing = set(dashboard_metrics()) - exposed_names(exposition)
    assert not missing, missing
    assert_the_next_plan_learned_from(server, effft_bin, job_id)


def assert_the_next_plan_learned_from(server, effft_bin, job_id: str) -> None:
    """The same job again: its plan is calibrated by the run just measured, to within 10 % of it."""
    measured = get(server["url"], server["token"], f"/v1/jobs/{job_id}")["summary"]
    submitted = run_cli(effft_bin, server["env"], "submit", str(lora_job(server, "e2e-again", 6)))
    again = submitted.stdout.split("submitted ")[1].split()[0]
    deadline = time.monotonic() + 240
    while not (job := get(server["url"], server["token"], f"/v1/jobs/{again}"))["planned"]:
        assert time.monotonic() < deadline and job["state"] not in ("failed", "cancelled"), job
        time.sleep(0.5)
    plan = get(server["url"], server["token"], f"/v1/jobs/{again}/plan")
    deadline = time.monotonic() + 300  # runs to its end, so the next test's job finds the CPU free
    while (job := get(server["url"], server["token"], f"/v1/jobs/{again}"))["state"] not in ("cancelled", "failed",
                                                                                              "succeeded"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["state"] == "succeeded", job
    assert any(d["setting"] == "calibration" and "from 1 run" in d["reason"] for d in plan["decisions"])
    assert abs(plan["memory"]["total"] / measured["memory_peak_bytes"] - 1) <= 0.10, (plan["memory"], measured)
    speed = plan["throughput"]["tokens_per_second"] / measured["tokens_per_second"]
    assert abs(speed - 1) <= 0.10, (plan["throughput"], measured["tokens_per_second"])


@pytest.mark.slow  # a minute or more of Ray training: `make test-all`
def test_a_killed_api_restarts_and_the_job_ends_with_each_step_stored_once(server, effft_bin):
    submitted = run_cli(effft_bin, server["env"], "submit", str(lora_job(server, "restart", 30)))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split("submitted ")[1].split()[0]
    deadline = time.monotonic() + 240
    while not get(server["url"], server["token"], f"/v1/jobs/{job_id}/metrics")["items"]:
        assert time.monotonic() < deadline, "no step was stored"
        time.sleep(0.5)
    pid = json.loads((server["data"] / "server.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)  # the API and its scheduler die; the Ray job (its own session) goes on
    time.sleep(3)
    again = run_cli(effft_bin, server["env"], "server", "--background", "--port", str(server["port"]), timeout=240)
    assert again.returncode == 0, again.stderr
    # the CLI reaches the restarted API (through the server.json it rewrote), which still has the job alive
    status = run_cli(effft_bin, server["env"], "status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["id"] == job_id
    assert json.loads(status.stdout)["state"] in ("running", "succeeded")
    deadline = time.monotonic() + 300
    while (job := get(server["url"], server["token"], f"/v1/jobs/{job_id}"))["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(1)
    assert job["state"] == "succeeded", job
    steps = [m["step"] for m in get(server["url"], server["token"], f"/v1/jobs/{job_id}/metrics")["items"]]
    assert steps == list(range(1, 31))


def test_cancel_stops_the_ray_job_and_the_cli_reports_it(server, effft_bin):
    submitted = run_cli(effft_bin, server["env"], "submit", str(lora_job(server, "cancel", 500)))
    job_id = submitted.stdout.split("submitted ")[1].split()[0]
    deadline = time.monotonic() + 240
    while not get(server["url"], server["token"], f"/v1/jobs/{job_id}/metrics")["items"]:
        if time.monotonic() > deadline:
            events = get(server["url"], server["token"], f"/v1/jobs/{job_id}/events")
            logs = run_cli(effft_bin, server["env"], "logs", job_id).stdout[-3000:]
            pytest.fail(f"no step was stored: {events}\n{logs}")
        time.sleep(0.5)
    cancelled = run_cli(effft_bin, server["env"], "cancel", job_id)
    assert cancelled.returncode == 0 and "cancelling" in cancelled.stdout
    deadline = time.monotonic() + 120
    while (job := get(server["url"], server["token"], f"/v1/jobs/{job_id}"))["state"] != "cancelled":
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["progress"]["step"] < 500
    status = run_cli(effft_bin, server["env"], "status", job_id)
    assert "cancelled" in status.stdout
    logs = run_cli(effft_bin, server["env"], "logs", job_id)
    assert "running -> cancelling" in logs.stdout and "cancelling -> cancelled" in logs.stdout
    inventory = run_cli(effft_bin, server["env"], "inventory")
    assert "cpu" in inventory.stdout
    again = run_cli(effft_bin, server["env"], "cancel", job_id)
    assert again.returncode == 2 and "already ended" in again.stderr
