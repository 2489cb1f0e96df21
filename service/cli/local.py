"""The commands that need no server: plan, run, init-example. `effft plan` needs only the base install."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.exit_codes import EXIT_BAD_INPUT
from service.progress import PROGRESS_EVERY_SECONDS
from worker.retention import DEFAULT_CHECKPOINTS_TO_KEEP  # no torch: the base install has it


def profiled_seq_len(spec) -> tuple[int | None, str | None]:
    """seq_len auto: the dataset's length exactly as the scheduler profiles it, so the preview is the plan that
    runs; (None, why) when it cannot be profiled here (the plan then assumes 2048 and says so)."""
    if spec.seq_len != "auto":
        return None, None
    try:
        from worker.errors import WorkerError
        from worker.profiling import profile_dataset
    except ImportError:
        return None, "the worker extras are not installed (pip install 'effft[worker]')"
    try:
        return profile_dataset(spec).seq_len, None
    except (WorkerError, ValueError, OSError) as error:  # a dataset or tokenizer not reachable from here
        return None, str(error).splitlines()[0][:300]


def local_inventory(gpu: str | None, gpus: int | None):
    """--gpu NAME plans for that GPU; without it, the GPUs nvidia-smi lists, or this machine's CPU."""
    from planner import Inventory, cpu_with_memory, parse_gpu_name
    from worker.host import host_memory_bytes  # the number Ray's inventory gives the scheduler too

    if gpu is not None:
        spec = cpu_with_memory(host_memory_bytes()) if gpu.lower() == "cpu" else parse_gpu_name(gpu)
        return Inventory.single(spec, gpus or 1)
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]
        rows = [line.split(",") for line in subprocess.run(query, capture_output=True, text=True,
                                                           timeout=10).stdout.splitlines() if line.strip()]
        if rows:
            spec = parse_gpu_name(rows[0][0], int(float(rows[0][1])) * 2**20)
            return Inventory.single(spec, gpus or len(rows))
    return Inventory.single(cpu_with_memory(host_memory_bytes()), 1)


def local_calibration():
    """The factors fitted from this machine's history of `effft run` runs (service/calibration.py)."""
    from service.calibration import table_from_local
    from service.settings import LocalSettings

    return table_from_local(LocalSettings().data_dir)


def plan(job: Annotated[Path, typer.Argument(help="the job.yaml to plan")],
         gpu: Annotated[str | None, typer.Option(help="plan for this GPU (e.g. A10G, H100-80GB, cpu)")] = None,
         gpus: Annotated[int | None, typer.Option(min=1, help="how many of them")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
         no_calibration: Annotated[bool, typer.Option("--no-calibration", help="the raw model: no corrections "
                                                      "from measured runs")] = False) -> None:
    """Show what fits, how fast, and why, without running anything (corrected by the runs `effft run` measured
    here, unless --no-calibration)."""
    from planner import PlannerError, load_job, plan_job
    from planner.spec import resolve_relative_paths
    from service.render import render_plan

    console = Console(stderr=False, width=160)
    try:
        spec = resolve_relative_paths(load_job(job), job.parent)
        inventory = local_inventory(gpu, gpus)
        seq_len, unprofiled = profiled_seq_len(spec)
        result = plan_job(spec, inventory, calibration=None if no_calibration else local_calibration(),
                          seq_len=seq_len)
    except (PlannerError, ValueError) as error:
        Console(stderr=True, width=160).print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if unprofiled:
        Console(stderr=True, width=160).print(f"[yellow]note:[/] seq_len auto: the dataset was not profiled "
                                              f"({unprofiled}); planned at {result.settings.seq_len}",
                                              highlight=False)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        render_plan(result, console)


def run(job: Annotated[Path, typer.Argument(help="the job.yaml to run")],
        run_dir: Annotated[Path | None, typer.Option(help="the run's folder (default: runs/NAME)")] = None,
        fresh: Annotated[bool, typer.Option(help="start over instead of resuming the run's last checkpoint")] = False,
        checkpoints_to_keep: Annotated[int, typer.Option(
            min=1, help="checkpoints kept: the last N, and the one a resumed run started from")
        ] = DEFAULT_CHECKPOINTS_TO_KEEP,
        progress_every: Annotated[float, typer.Option(
            min=1, help="without a terminal (a pipe, a log), a progress line this often, in seconds")
        ] = PROGRESS_EVERY_SECONDS,
        ) -> None:
    """Plan against the local Ray cluster's GPUs (or this CPU) and run it, with progress and a summary."""
    from service.standalone import RunOptions, run_standalone

    options = RunOptions(run_dir, fresh, checkpoints_to_keep, progress_every)
    raise typer.Exit(run_standalone(job, options, Console(width=160)))


def init_example(folder: Annotated[Path, typer.Argument(help="where to write the example")],
                 model: Annotated[str, typer.Option(help="tiny (random weights, ~1 min on a CPU) or smollm2 "
                                                         "(the real SmolLM2-135M-Instruct)")] = "tiny") -> None:
    """Write a model, a dataset in each format and DIR/job.yaml, offline."""
    from worker.example import init_example as write_example

    try:
        job_path = write_example(folder, model)
    except (ValueError, FileNotFoundError) as error:
        Console(stderr=True).print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(f"wrote {job_path}; run it with: effft run {job_path}")
