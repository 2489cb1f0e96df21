"""What the drill runs against: `effft server` in a subprocess, a Postgres instance of its own, a small tmpfs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

EFFFT = str(Path(sys.executable).with_name("effft"))
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def wait_until(check, timeout: float, step: float = 0.2, what: str = "a condition"):
    """Poll `check()` until it returns something true; that value, or TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class Server:
    """`effft server --background` with its data dir and database; SIGKILLed and started again by the drill."""

    def __init__(self, data_dir: Path, database_url: str, port: int):
        self.data_dir, self.port = data_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "EFFFT_DATA_DIR": str(data_dir), "EFFFT_DATABASE_URL": database_url}
        for name in ("EFFFT_URL", "EFFFT_TOKEN", "RAY_ADDRESS"):
            self.env.pop(name, None)

    def cli(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(["nice", "-n", "10", EFFFT, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"effft {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    def start(self) -> None:
        self.cli("server", "--background", "--port", str(self.port), timeout=300)

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def pid(self) -> int:
        return json.loads((self.data_dir / "server.json").read_text())["pid"]

    def kill(self) -> int:
        """SIGKILL the API process (its scheduler dies with it; the Ray head and jobs run on)."""
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # not our child (it was started detached): nothing to reap
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 30, what=f"pid {pid} to die")
        return pid

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.cli("stop", timeout=120)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


class OwnPostgres:
    """A throwaway PostgreSQL (initdb into a temp dir, trust auth, a free port) that the drill may stop and
    start: never the machine's shared server."""

    def __init__(self, port: int):
        if not PG_BIN:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        self.bin, self.port = PG_BIN[-1], port
        self.folder = Path(tempfile.mkdtemp(prefix="effft-chaos-pg-"))
        self.data = self.folder / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/chaos"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        user = [] if os.getuid() != 0 else ["runuser", "-u", "postgres", "--"]  # initdb refuses to run as root
        return subprocess.run([*user, *args], capture_output=True, text=True, timeout=120, check=check)

    def init(self) -> OwnPostgres:
        if os.getuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "chaos")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"),
                  "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("fast")
        shutil.rmtree(self.folder, ignore_errors=True)


class SmallDisk:
    """A tmpfs of `size_mb` mounted on `folder` (root only), filled up once by the drill: a real ENOSPC."""

    def __init__(self, folder: Path, size_mb: int):
        self.folder, self.size_mb = folder, size_mb
        self.filler = folder / ".chaos-filler"

    def mount(self) -> SmallDisk:
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=700", "tmpfs", str(self.folder)],
                       check=True, capture_output=True, text=True)
        return self

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.folder).free

    def fill(self) -> int:
        """Write until the file system refuses (ENOSPC); returns the bytes written."""
        written, block = 0, b"\0" * (1 << 20)
        with open(self.filler, "wb", buffering=0) as file:
            try:
                while True:
                    written += file.write(block)
            except OSError:
                pass
            with contextlib.suppress(OSError):  # the last partial megabyte too
                while True:
                    written += file.write(b"\0" * 4096)
        return written

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.folder)], capture_output=True, text=True)


def can_mount_tmpfs() -> bool:
    if os.getuid() != 0:
        return False
    probe = Path(tempfile.mkdtemp(prefix="effft-chaos-probe-"))
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True)
        if done.returncode == 0:
            subprocess.run(["umount", str(probe)], capture_output=True)
        return done.returncode == 0
    finally:
        shutil.rmtree(probe, ignore_errors=True)
