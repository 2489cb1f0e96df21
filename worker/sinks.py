"""Where metric records go. The worker writes to a sink; the service plugs in its own.

A record is a flat JSON-able dict with a `kind`: "start", "step", "eval", "checkpoint", "summary"
or "error". Step records carry the step number, so a reader that sees a step twice (a run that
resumed from a checkpoint repeats the steps after it) keeps the last one.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from worker.jsonl import finite


@runtime_checkable
class MetricsSink(Protocol):
    def write(self, record: dict) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line, each appended whole under a lock; picklable (it holds only the path).

    Rank 0 and Ray's controller write to the same file from their own processes. A writer that died
    mid-line left a torn last line: the next writer cuts it off before its first line, so it never
    becomes a damaged line in the middle of the file (see worker.jsonl for how readers treat it).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def write(self, record: dict) -> None:
        line = (json.dumps(finite(record)) + "\n").encode("utf-8")
        opening = self._fd is None
        if opening:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # no reader of a repair and no other writer sees half a line
        try:
            if opening:
                _cut_torn_tail(self._fd)
            written = 0
            while written < len(line):  # a regular file takes it in one write, short of a full disk
                written += os.write(self._fd, line[written:])
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __getstate__(self):
        return {"path": self.path, "_fd": None}


def _cut_torn_tail(fd: int) -> None:
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.ftruncate(fd, os.pread(fd, size, 0).rfind(b"\n") + 1)


class ListSink:
    """Keeps records in memory: for in-process runs and tests."""

    def __init__(self):
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(dict(record))

    def close(self) -> None:
        pass


def last_per_step(records: list[dict]) -> list[dict]:
    """Step records, one per step (the latest write wins), in step order."""
    steps = {r["step"]: r for r in records if r.get("kind") == "step"}
    return [steps[s] for s in sorted(steps)]
