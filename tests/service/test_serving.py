"""The API's worker processes (service/serving.py): several serve one port, and none outlives the process that
started them (`kill -9` of `effft server` must not leave workers holding the port)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def served():
    """`run_http` of tests.service.serving_app with 2 workers; yields (supervisor, url, worker pids)."""
    port = free_port()
    code = f"from service.serving import run_http; run_http('tests.service.serving_app:app', '127.0.0.1', {port}, 2)"
    supervisor = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url, workers, deadline = f"http://127.0.0.1:{port}", set(), time.monotonic() + 60
    try:
        while len(workers) < 2:  # new connections land on either worker; both answer within a few tries
            assert time.monotonic() < deadline and supervisor.poll() is None, f"workers seen: {workers}"
            try:
                answer = httpx.get(f"{url}/pid", timeout=2).json()
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            assert answer["parent"] == supervisor.pid
            workers.add(answer["pid"])
        yield supervisor, url, workers
    finally:
        supervisor.kill()
        supervisor.wait()


def test_two_worker_processes_serve_one_port(served):
    supervisor, _, workers = served
    assert len(workers) == 2 and supervisor.pid not in workers


def test_the_workers_die_with_the_process_that_started_them(served):
    supervisor, url, workers = served
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, [pid for pid in workers if alive(pid)]
        time.sleep(0.1)
    with pytest.raises(httpx.TransportError):  # nothing holds the port: a restarted server can bind it
        httpx.get(f"{url}/pid", timeout=2)
