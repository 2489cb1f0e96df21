"""A run without the service: profile the data, plan against the cluster Ray sees, run on Ray Train.

The run's folder holds everything of one run: metrics.jsonl (the sink), ray/ (Ray's
checkpoints), work/ (the Trainer's own checkpoints) and output/ (the adapter or model, unless
the job names output.dir). Running the same job into the same folder again resumes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from planner import Plan, plan_job
from planner.calibration import CalibrationTable
from planner.catalog import Inventory
from planner.profile import load_profile
from planner.spec import JobSpec
from worker.data import checked_rows, suggest_seq_len, tokenize_rows
from worker.sinks import JsonlSink
from worker.train import WorkerJob


@dataclass(frozen=True)
class DataProfile:
    rows: int
    format: str
    seq_len: int  # the length that covers 95 % of the examples whole


def profile_dataset(spec: JobSpec) -> DataProfile:
    """Tokenize the data once on the driver: bad data fails here, and seq_len auto gets its number."""
    from worker.model import load_tokenizer

    fmt, rows = checked_rows(spec.dataset)  # bad data fails before the model's files are even opened
    data = tokenize_rows(fmt, rows, spec.dataset, load_tokenizer(spec.model))
    positions = load_profile(spec.model.path, spec.model.revision).arch.max_positions
    return DataProfile(len(data.train), data.format, suggest_seq_len(data.lengths, positions))


@dataclass(frozen=True)
class LocalRun:
    spec: JobSpec
    plan: Plan
    data: DataProfile
    folder: Path
    accelerator_type: str | None
    inventory: Inventory | None = None  # what the plan was made on: a re-plan after running out of memory too
    calibration: CalibrationTable | None = None

    @property
    def metrics_path(self) -> Path:
        return self.folder / "metrics.jsonl"

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.output.dir) if self.spec.output.dir else self.folder / "output"

    def worker_job(self) -> WorkerJob:
        return WorkerJob(self.plan, str(self.output_dir), str(self.folder / "work"))


def prepare_local_run(spec: JobSpec, folder: Path, ray_address: str | None = None,
                      calibration: CalibrationTable | None = None) -> LocalRun:
    from worker.ray_run import ensure_ray, inventory

    data = profile_dataset(spec)
    ensure_ray(ray_address)
    cluster, ray_names = inventory()
    plan = plan_job(spec, cluster, calibration=calibration, seq_len=data.seq_len)
    return LocalRun(spec, plan, data, folder.resolve(), ray_names.get(plan.gpu), cluster, calibration)


def execute(run: LocalRun, max_replans: int = 3) -> tuple[object, Plan]:
    """Run on Ray to the end, re-planned when it runs out of memory; Ray's Result and the plan that finished.
    Metrics land in run.metrics_path as they happen."""
    from planner.calibration import EMPTY
    from worker.ray_run import RayRun
    from worker.recovery import run_with_recovery, spec_replanner

    run.folder.mkdir(parents=True, exist_ok=True)
    ray_run = RayRun(run.worker_job(), storage_path=str(run.folder / "ray"), name=run.spec.name,
                     accelerator_type=run.accelerator_type)
    replanner = spec_replanner(run.spec, run.inventory, run.calibration or EMPTY) if run.inventory else None
    return run_with_recovery(ray_run, JsonlSink(run.metrics_path), replanner, max_replans)
