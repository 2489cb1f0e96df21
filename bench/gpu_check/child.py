"""One measured run in its own process: a clean CUDA context and allocator, so every peak starts at zero
and an out-of-memory costs one row.

Forked from the launcher's preloaded server (`in_child`) or, as a fallback, started fresh:
`python -m bench.gpu_check.child JOB.json RESULT.json THREADS`. Either way it writes one JSON result.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# a forked child whose parent touched CUDA cannot use it: these say so, and the launcher then starts fresh
# interpreters instead
FORK_POISONED = ("Cannot re-initialize CUDA in forked subprocess", "CUDA error: initialization error")


def _runner(kind: str):
    if kind == "anchor":
        from bench.gpu_check.anchor import anchor_run

        return anchor_run
    from bench.gpu_check import measure

    return {"worker": measure.worker_run, "plain": measure.plain_run, "naive": measure.naive_run}[kind]


def run_job(job: dict) -> dict:
    started = time.perf_counter()
    try:
        result = _runner(job["kind"])(job)
    except Exception as error:  # a row that says what broke, never a lost table
        text = f"{type(error).__name__}: {error}"
        result = {"outcome": "error", "error": text[:500], "fork_poisoned": any(p in text for p in FORK_POISONED)}
    return {**result, "seconds": time.perf_counter() - started, "pid": os.getpid()}


def write_result(path: str, result: dict) -> None:
    partial = Path(path + ".partial")
    partial.write_text(json.dumps(result, default=str))
    partial.replace(path)  # whole or absent: a killed child leaves no half-written result


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def in_child(job: dict, result_path: str, log_path: str, threads: int) -> None:
    """The forked process's target: its output to its own log, then the run."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    _set_threads(threads)
    write_result(result_path, run_job(job))


def main(argv: list[str]) -> int:
    job_path, result_path, threads = argv
    _set_threads(int(threads))
    write_result(result_path, run_job(json.loads(Path(job_path).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
