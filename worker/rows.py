"""Reading dataset rows: JSONL / JSON / Parquet / text files, a folder of them, or a `datasets` id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from planner.spec import DatasetSpec
from planner.units import size_text
from worker.errors import DataError

# the files this reader takes, by suffix (the service's path check refuses any other at submit)
FILE_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text", ".text": "text"}


@dataclass(frozen=True)
class SizeLimits:
    """How much of a dataset a reader takes before it refuses it; None: no limit. The service's planning sets
    them from its settings, whose names the error gives as the fix."""

    max_bytes: int | None = None  # the dataset's files on disk (a `datasets` id: its Arrow table)
    max_rows: int | None = None  # rows, after dataset.max_samples
    bytes_setting: str = "max_bytes"
    rows_setting: str = "max_rows"

    def check_bytes(self, spec: DatasetSpec, size: int) -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            raise DataError("dataset.path", spec.path, f"the dataset holds {size:,} bytes ({size_text(size)}), more "
                            f"than the {self.max_bytes:,} bytes this server reads to profile a dataset before "
                            f"planning ({self.bytes_setting}); give a smaller file or folder, or ask the operator "
                            f"to raise {self.bytes_setting}")

    def check_rows(self, spec: DatasetSpec, rows: int) -> None:
        if self.max_rows is not None and rows > self.max_rows:
            raise DataError("dataset.max_samples", spec.max_samples, f"the dataset has {rows:,} rows to profile, "
                            f"more than the {self.max_rows:,} this server takes ({self.rows_setting}); set "
                            f"dataset.max_samples to {self.max_rows:,} or fewer, or ask the operator to raise "
                            f"{self.rows_setting}")


NO_LIMITS = SizeLimits()


def suffix_problem(path: Path) -> str | None:
    """Why the reader cannot take this file, by its name alone; None when it can. A folder is read for its
    files of these suffixes, and a file without a suffix as JSON lines."""
    if not path.suffix or path.suffix.lower() in FILE_SUFFIXES or path.is_dir():
        return None
    return (f"a {path.suffix} file cannot be read; datasets are JSONL (.jsonl), JSON (.json), Parquet (.parquet) "
            "or text (.txt, .text) files, or a folder of them: convert it (a CSV to JSONL with pandas: "
            "pandas.read_csv(path).to_json(out, orient='records', lines=True))")


def read_rows(spec: DatasetSpec, limits: SizeLimits = NO_LIMITS) -> list[dict]:
    """All rows of the dataset as dicts, at most max_samples of them; a clear error when there are none, or
    when the dataset is past `limits` (its files' size is checked before they are read)."""
    path = Path(spec.path).expanduser()
    if path.is_dir() or path.suffix.lower() in FILE_SUFFIXES or path.exists():
        files = data_files(spec, path)
        limits.check_bytes(spec, sum(file.stat().st_size for file in files))
        rows = [row for file in files for row in _read_file(file, spec)]
    else:
        rows = _read_hub(spec, limits)
    if spec.max_samples is not None:
        rows = rows[: spec.max_samples]
    limits.check_rows(spec, len(rows))
    if not rows:
        raise DataError("dataset.path", spec.path, "the dataset is empty; it needs at least one row")
    return rows


def data_files(spec: DatasetSpec, path: Path) -> list[Path]:
    """The files a local dataset is read from: the file itself, or a folder's files of the known suffixes."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_SUFFIXES)
        if not files:
            raise DataError("dataset.path", spec.path, f"the folder holds no {'/'.join(FILE_SUFFIXES)} files")
        return files
    if (problem := suffix_problem(path)) is not None:
        raise DataError("dataset.path", spec.path, problem)
    if not path.is_file():
        raise DataError("dataset.path", spec.path, "no such file; give a JSONL, Parquet or text file, "
                        "a folder of them, or a `datasets` id")
    return [path]


def _read_file(path: Path, spec: DatasetSpec) -> list[dict]:
    kind = FILE_SUFFIXES.get(path.suffix.lower(), "json")
    if kind == "text":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [{spec.text_field: line} for line in lines if line.strip()]
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return _read_json(path)


def _read_json(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):  # a JSON array of rows rather than JSON lines
        return _checked_rows(json.loads(text), path)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError("dataset.path", str(path), f"line {number} is not valid JSON ({error.msg}); "
                            "each line of a JSONL file must be one JSON object") from None
    return _checked_rows(rows, path)


def _checked_rows(rows: list, path: Path) -> list[dict]:
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError("dataset.path", str(path), f"row {number} is a {type(row).__name__}, not an object "
                            "with fields")
    return rows


def _read_hub(spec: DatasetSpec, limits: SizeLimits) -> list[dict]:
    """A `datasets` id: works offline when the dataset is in the local HF cache."""
    import datasets

    try:
        loaded = datasets.load_dataset(spec.path, split=spec.split)
    except Exception as error:  # datasets raises many types: file-not-found, connection, missing split
        raise DataError("dataset.path", spec.path, "not a file or folder here, and not a loadable `datasets` id "
                        f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    limits.check_bytes(spec, loaded.data.nbytes)  # Arrow, memory-mapped: checked before any row becomes a dict
    return loaded.to_list()
