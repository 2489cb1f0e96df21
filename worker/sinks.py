"""Where metric records go. The worker writes to a sink; the service plugs in its own.

A record is a flat JSON-able dict with a `kind`: "start", "step", "eval", "checkpoint", "summary"
or "error". Step records carry the step number, so a reader that sees a step twice (a run that
resumed from a checkpoint repeats the steps after it) keeps the last one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class MetricsSink(Protocol):
    def write(self, record: dict) -> None: ...

    def close(self) -> None: ...


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


class JsonlSink:
    """One JSON object per line, appended and flushed per record; picklable (it holds only the path)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = None

    def write(self, record: dict) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps({k: _finite(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        return {"path": self.path, "_file": None}


class ListSink:
    """Keeps records in memory: for in-process runs and tests."""

    def __init__(self):
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(dict(record))

    def close(self) -> None:
        pass


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def last_per_step(records: list[dict]) -> list[dict]:
    """Step records, one per step (the latest write wins), in step order."""
    steps = {r["step"]: r for r in records if r.get("kind") == "step"}
    return [steps[s] for s in sorted(steps)]
