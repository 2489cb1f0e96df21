"""A run whose folder's disk filled up waits for room, then resumes from its last checkpoint.

A full disk fails a save, a metric write or a checkpoint upload with ENOSPC (errno 28); Ray hands the
driver the worker's error as text. The driver (worker/recovery.py) then waits, at most DISK_WAIT_SECONDS,
until the run folder's file system has room for two of the run's checkpoints again (at least
MIN_FREE_BYTES), and runs the same run again: Ray resumes it from the last checkpoint it holds, so data
order, schedule and weights are the uninterrupted run's. Past the wait the error stands, and the service
fails the job with cause `system`, its message saying the disk is full. No Ray import here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

DISK_WAIT_SECONDS = 600.0
MIN_FREE_BYTES = 16 * 2**20
MAX_DISK_RESUMES = 3
FULL_TEXTS = ("No space left on device", "[Errno 28]", "[errno 28]")


def says_disk_full(text: str) -> bool:
    """The text (an error, a Ray job's log) names ENOSPC."""
    return any(full in text for full in FULL_TEXTS)


def is_disk_full(error: BaseException | None) -> bool:
    """The error (or one it was raised from) is ENOSPC, as an OSError or in the text Ray made of it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if says_disk_full(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def room_needed(storage: Path) -> int:
    """Two of the run's largest checkpoints (a save beside the one kept), at least MIN_FREE_BYTES."""
    sizes = [folder_bytes(folder) for folder in storage.glob("*/checkpoint_*") if folder.is_dir()]
    return max(MIN_FREE_BYTES, 2 * max(sizes, default=0))


def wait_for_room(folder: Path, needed: int, timeout: float = DISK_WAIT_SECONDS,
                  free: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
                  sleep: Callable[[float], None] = time.sleep) -> float | None:
    """Seconds waited until `folder`'s file system has `needed` bytes free; None when it did not within `timeout`."""
    waited = 0.0
    while free(folder) < needed:
        if waited >= timeout:
            return None
        sleep(2.0)
        waited += 2.0
    return waited
