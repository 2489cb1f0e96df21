"""Reading dataset rows: JSONL / JSON / Parquet / text files, a folder of them, or a `datasets` id."""

from __future__ import annotations

import json
from pathlib import Path

from planner.spec import DatasetSpec
from worker.errors import DataError

# the files this reader takes, by suffix (the service's path check refuses any other at submit)
FILE_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text", ".text": "text"}


def suffix_problem(path: Path) -> str | None:
    """Why the reader cannot take this file, by its name alone; None when it can. A folder is read for its
    files of these suffixes, and a file without a suffix as JSON lines."""
    if not path.suffix or path.suffix.lower() in FILE_SUFFIXES or path.is_dir():
        return None
    return (f"a {path.suffix} file cannot be read; datasets are JSONL (.jsonl), JSON (.json), Parquet (.parquet) "
            "or text (.txt, .text) files, or a folder of them: convert it (a CSV to JSONL with pandas: "
            "pandas.read_csv(path).to_json(out, orient='records', lines=True))")


def read_rows(spec: DatasetSpec) -> list[dict]:
    """All rows of the dataset as dicts, at most max_samples of them; a clear error when there are none."""
    path = Path(spec.path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_SUFFIXES)
        if not files:
            raise DataError("dataset.path", spec.path, f"the folder holds no {'/'.join(FILE_SUFFIXES)} files")
        rows = [row for file in files for row in _read_file(file, spec)]
    elif path.suffix.lower() in FILE_SUFFIXES or path.exists():
        if (problem := suffix_problem(path)) is not None:
            raise DataError("dataset.path", spec.path, problem)
        if not path.is_file():
            raise DataError("dataset.path", spec.path, "no such file; give a JSONL, Parquet or text file, "
                            "a folder of them, or a `datasets` id")
        rows = _read_file(path, spec)
    else:
        rows = _read_hub(spec)
    if spec.max_samples is not None:
        rows = rows[: spec.max_samples]
    if not rows:
        raise DataError("dataset.path", spec.path, "the dataset is empty; it needs at least one row")
    return rows


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


def _read_hub(spec: DatasetSpec) -> list[dict]:
    """A `datasets` id: works offline when the dataset is in the local HF cache."""
    import datasets

    try:
        loaded = datasets.load_dataset(spec.path, split=spec.split)
    except Exception as error:  # datasets raises many types: file-not-found, connection, missing split
        raise DataError("dataset.path", spec.path, "not a file or folder here, and not a loadable `datasets` id "
                        f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    return loaded.to_list()
