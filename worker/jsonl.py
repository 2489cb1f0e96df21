"""JSON lines as effft's metric files hold them: strict JSON on the way in, one reader on the way out.

A writer appends whole lines (worker.sinks.JsonlSink). A reader may find the last line torn, without
its newline: it is not written yet, so the reader stops before it and takes it on a later read. A
complete line that is not a JSON object is damage: an error naming the file and the line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path


class JsonlError(ValueError):
    """A complete line of a JSONL file that is not a JSON object."""


@dataclass(frozen=True)
class Position:
    """A point between the lines of a JSONL file: its byte offset and how many lines lie before it."""

    offset: int = 0
    line: int = 0


START = Position()  # a file's first line

def finite(value):
    """`value` with every non-finite float (NaN, inf) as None: strict JSON, which Postgres and browsers take."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def read_records(path: str | Path, start: Position = START, limit: int | None = None,
                 ) -> tuple[list[dict], Position]:
    """The records on the complete lines after `start` (at most `limit` of them), and the position after them."""
    path = Path(path)
    if not path.exists():
        return [], start
    records, offset, line = [], start.offset, start.line
    with path.open("rb") as file:
        file.seek(offset)
        for raw in file:
            if not raw.endswith(b"\n") or (limit is not None and len(records) >= limit):
                break  # a torn last line is one its writer has not finished
            offset, line = offset + len(raw), line + 1
            if raw.strip():
                records.append(_record(raw, path, line))
    return records, Position(offset, line)


def _record(raw: bytes, path: Path, line: int) -> dict:
    try:
        record = json.loads(raw)
    except ValueError as error:  # not UTF-8, or not JSON
        raise JsonlError(f"{path} line {line} is not JSON ({error}); the file is damaged there") from None
    if not isinstance(record, dict):
        raise JsonlError(f"{path} line {line} is a JSON {type(record).__name__}, not a record (an object)")
    return record


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record written so far."""
    return read_records(path)[0]


def position_at(path: str | Path, offset: int | None = None) -> Position:
    """The position at `offset` (the start of a line), or after the last complete line when None."""
    path = Path(path)
    if not path.exists():
        return Position()
    with path.open("rb") as file:
        data = file.read() if offset is None else file.read(offset)
    end = data.rfind(b"\n") + 1 if offset is None else len(data)
    return Position(end, data.count(b"\n", 0, end))
