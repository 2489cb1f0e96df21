"""`effft run`: one job on the local Ray cluster, followed live, without the service."""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from service.calibration import record_local_run, table_from_local
from service.exit_codes import EXIT_BAD_INPUT, EXIT_JOB_FAILED, EXIT_OK
from service.progress import PROGRESS_EVERY_SECONDS, follow, render_summary, tail_records
from service.render import render_plan
from service.settings import LocalSettings
from worker.jsonl import position_at
from worker.retention import DEFAULT_CHECKPOINTS_TO_KEEP


@dataclass(frozen=True)
class RunOptions:
    """How `effft run` runs and shows a job, beyond the job file."""

    run_dir: Path | None = None  # default: runs/NAME
    fresh: bool = False  # start over instead of resuming the last checkpoint
    checkpoints_to_keep: int = DEFAULT_CHECKPOINTS_TO_KEEP
    progress_every: float = PROGRESS_EVERY_SECONDS  # without a terminal: a progress line this often


def run_standalone(job_path: Path, options: RunOptions, console: Console) -> int:
    from planner import PlannerError, load_job
    from planner.spec import resolve_relative_paths
    from worker.errors import WorkerError
    from worker.standalone import execute, prepare_local_run

    errors = Console(stderr=True, width=160)
    try:
        spec = resolve_relative_paths(load_job(job_path), job_path.parent)
        folder = options.run_dir or Path("runs") / spec.name
        if options.fresh and folder.exists():
            shutil.rmtree(folder)
        run = prepare_local_run(spec, folder, calibration=table_from_local(LocalSettings().data_dir),
                                checkpoints_to_keep=options.checkpoints_to_keep)
    except (PlannerError, WorkerError, ValueError, OSError) as error:
        errors.print(f"[red]error:[/] {error}", highlight=False)
        return EXIT_BAD_INPUT
    render_plan(run.plan, console)
    console.print(f"data: {run.data.rows} rows ({run.data.format}); run folder {run.folder}")
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["result"], outcome["plan"] = execute(run)
        except Exception as error:  # Ray raises its own error types for failed runs: report them all
            outcome["error"] = error

    # a resumed run appends to the same file: show only what this run writes
    start = position_at(run.metrics_path)
    thread = threading.Thread(target=fit, name="effft-fit", daemon=True)
    thread.start()
    summary = follow(tail_records(run.metrics_path, done=lambda: not thread.is_alive(), start=start), console,
                     options.progress_every)
    thread.join()
    if "error" in outcome or summary is None:
        errors.print(f"[red]run failed:[/] {outcome.get('error', 'no summary was written')}", highlight=False)
        return EXIT_JOB_FAILED
    render_summary(summary, console)
    # the next plan learns from this run, measured under the plan that finished (a re-plan's, after an OOM)
    record_local_run(LocalSettings().data_dir, outcome["plan"], summary)
    return EXIT_OK
