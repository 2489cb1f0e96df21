"""The embedded default's local Ray head: started detached, found again after a restart, stopped by `effft stop`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from worker.ray_env import PRIVATE_CLUSTER_ENV

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


# Ray rewrites --node-ip-address=127.0.0.1 to the host's outward address, and every server binds all
# interfaces unless the node IP is exactly 127.0.0.1; turning off "cluster mode" keeps 127.0.0.1 (Ray's
# services.get_node_ip_address). Drivers that connect by 127.0.0.1 need the same setting.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **PRIVATE_CLUSTER_ENV}


def ray_temp_dir(data_dir: Path) -> Path:
    """A Ray temp dir of this data dir's own: `auto` (ray_current_cluster) never finds another server's head.
    Short, under /tmp: Ray's unix sockets live inside it and their paths must stay under 107 bytes."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"effft-ray-{os.getuid()}-{digest}"
    folder.mkdir(mode=0o700, exist_ok=True)
    found = os.lstat(folder)  # the name is predictable: another local user may have made it first
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        raise RuntimeError(f"{folder} (Ray's temp dir for this data dir) is not a folder of this user; "
                           "remove it and start again")
    folder.chmod(0o700)  # Ray opens its temp dir to all (0777) each time it starts; close it between runs
    return folder


def ray_head_command(data_dir: Path, num_cpus: int | None) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """`ray start` for a private single-machine head: every listening socket on loopback, every port its own."""
    gcs, dashboard, agent, client, metrics, runtime_env = (free_port() for _ in range(6))
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={gcs}",
               "--node-ip-address=127.0.0.1", f"--temp-dir={ray_temp_dir(data_dir)}",
               f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
               f"--dashboard-agent-listen-port={agent}", f"--ray-client-server-port={client}",
               f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
               "--disable-usage-stats"]
    if num_cpus:
        command.append(f"--num-cpus={num_cpus}")
    # the dashboard's and autoscaler's own metrics ports are fixed by default: a second head could not bind them
    env = {**os.environ, **LOOPBACK_ENV, "DASHBOARD_METRIC_PORT": str(free_port()),
           "AUTOSCALER_METRIC_PORT": str(free_port())}
    return command, env, {"address": f"127.0.0.1:{gcs}", "dashboard_url": f"http://127.0.0.1:{dashboard}"}


def start_ray_head(data_dir: Path, num_cpus: int | None = None, timeout: float = 120) -> dict:
    """A Ray head in its own session (training outlives the API); reused if one from earlier still runs."""
    head = running_head(data_dir)
    if head is not None:
        return head
    command, env, where = ray_head_command(data_dir, num_cpus)
    process = start_detached(command, data_dir / "ray-head.log", f"{where['dashboard_url']}/api/version", timeout,
                             "the local Ray head", env)
    head = {"pid": process.pid, **where}
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


def driver_pids(data_dir: Path) -> list[int]:
    """The job drivers (`python -m worker.job_main DATA_DIR/runs/JOB/job.json`) of this data dir's jobs still
    running: each is a Ray job's entrypoint in a session of its own, so stopping the head leaves it behind, still
    draining its records to a server that is gone (for up to an hour). Linux only (reads /proc)."""
    runs, found = str(data_dir.resolve() / "runs") + os.sep, []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = entry.joinpath("cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "worker.job_main" in argv and any(arg.startswith(runs) for arg in argv):
            found.append(int(entry.name))
    return found


def stop_drivers(data_dir: Path, timeout: float = 10) -> int:
    """Stop this data dir's leftover job drivers; returns how many there were."""
    pids = driver_pids(data_dir)
    for pid in pids:
        stop_pid(pid, timeout=timeout, expect="worker.job_main")
    return len(pids)


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
