"""`effft stop` also ends the job drivers the Ray head leaves behind (each in a session of its own), and only
those of its own data dir."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from service.server import stop
from tests.service.test_scheduler import process_gone

SLEEPER = "import time; time.sleep(600)"  # a driver still draining its records to a server that is gone


def fake_driver(data_dir) -> int:
    """Its pid; started through a shell that exits at once, so that, like a real driver, it is nobody's child
    here (a child of this test would linger as a zombie until the test reaped it)."""
    job_file = data_dir / "runs" / "j0123456789abcdef" / "job.json"
    started = subprocess.run(["sh", "-c", f'setsid {sys.executable} -c "{SLEEPER}" -m worker.job_main {job_file} '
                                          "> /dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True)
    return int(started.stdout)


def test_stop_ends_this_data_dirs_leftover_drivers_and_no_others(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    mine, other = fake_driver(ours), fake_driver(theirs)
    try:
        time.sleep(0.5)  # their command lines are in /proc
        assert stop(ours) == ["1 job driver(s) left by the Ray head"]
        assert process_gone(mine) and not process_gone(other)
        assert stop(ours) == []  # nothing left: said so
    finally:
        for pid in (mine, other):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
