"""The embedded default's local Ray head: started detached, found again after a restart, stopped by `effft stop`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HEAD_FILE = "ray-head.json"


def write_secret(path: Path, text: str) -> None:
    """Create the file readable by this user only from the first byte (no window at the umask's mode)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)  # O_CREAT's mode applies only to a new file


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int, expect: str | None = None) -> bool:
    """The process runs (and, with `expect`, its command line holds that word: a recycled pid does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    if expect is None:
        return True
    try:
        return expect in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True  # no /proc (not Linux): trust the pid file


def answers(url: str) -> bool:
    """The URL answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_detached(command: list[str], log_path: Path, ready_url: str, timeout: float, what: str,
                   env: dict | None = None) -> subprocess.Popen:
    """Start `command` in its own session (it outlives us), logging to `log_path`; wait until `ready_url` answers."""
    log = log_path.open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not answers(ready_url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start; see {log_path}")
        time.sleep(0.5)
    return process


def running_head(data_dir: Path) -> dict | None:
    path = data_dir / HEAD_FILE
    if not path.exists():
        return None
    head = json.loads(path.read_text())
    return head if alive(head["pid"], expect="ray") and answers(f"{head['dashboard_url']}/api/version") else None


def start_ray_head(data_dir: Path, num_cpus: int | None = None, timeout: float = 120) -> dict:
    """A Ray head in its own session (training outlives the API); reused if one from earlier still runs."""
    head = running_head(data_dir)
    if head is not None:
        return head
    gcs, dashboard, agent = free_port(), free_port(), free_port()
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={gcs}",
               "--node-ip-address=127.0.0.1", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
               "--include-dashboard=true", f"--dashboard-agent-listen-port={agent}", "--disable-usage-stats"]
    if num_cpus:
        command.append(f"--num-cpus={num_cpus}")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a private single-machine cluster on loopback
    dashboard_url = f"http://127.0.0.1:{dashboard}"
    process = start_detached(command, data_dir / "ray-head.log", f"{dashboard_url}/api/version", timeout,
                             "the local Ray head", env)
    head = {"pid": process.pid, "address": f"127.0.0.1:{gcs}", "dashboard_url": dashboard_url}
    (data_dir / HEAD_FILE).write_text(json.dumps(head))
    return head


def stop_pid(pid: int, timeout: float = 30, expect: str | None = None) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds; never a process that is not ours."""
    if not alive(pid, expect):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def stop_ray_head(data_dir: Path, grace_seconds: float = 10) -> bool:
    """SIGTERM to `ray start --block` stops its cluster cleanly, but lingers ~30 s after a job ran:
    after a grace period, the head's whole session (it was started as its leader) is killed."""
    path = data_dir / HEAD_FILE
    if not path.exists():
        return False
    pid = json.loads(path.read_text())["pid"]
    if alive(pid, expect="ray"):
        stop_pid(pid, timeout=grace_seconds)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # whatever of the session is left: raylet, GCS, dashboard, workers
    path.unlink()
    return True
