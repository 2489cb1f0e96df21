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
from planner.spec import JobSpec
from worker.profiling import DataProfile, profile_dataset
from worker.retention import DEFAULT_CHECKPOINTS_TO_KEEP
from worker.sinks import JsonlSink
from worker.train import WorkerJob


@dataclass(frozen=True)
class LocalRun:
    spec: JobSpec
    plan: Plan
    data: DataProfile
    folder: Path
    accelerator_type: str | None
    inventory: Inventory | None = None  # what the plan was made on: a re-plan after running out of memory too
    calibration: CalibrationTable | None = None
    checkpoints_to_keep: int = DEFAULT_CHECKPOINTS_TO_KEEP  # the last N, beside the one resumed from

    @property
    def metrics_path(self) -> Path:
        return self.folder / "metrics.jsonl"

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.output.dir) if self.spec.output.dir else self.folder / "output"

    def worker_job(self) -> WorkerJob:
        return WorkerJob(self.plan, str(self.output_dir), str(self.folder / "work"),
                         checkpoints_to_keep=self.checkpoints_to_keep)


def prepare_local_run(spec: JobSpec, folder: Path, ray_address: str | None = None,
                      calibration: CalibrationTable | None = None,
                      checkpoints_to_keep: int = DEFAULT_CHECKPOINTS_TO_KEEP) -> LocalRun:
    from worker.ray_run import ensure_ray, inventory

    data = profile_dataset(spec)
    ensure_ray(ray_address)
    cluster, ray_names = inventory()
    plan = plan_job(spec, cluster, calibration=calibration, seq_len=data.seq_len)
    return LocalRun(spec, plan, data, folder.resolve(), ray_names.get(plan.gpu), cluster, calibration,
                    checkpoints_to_keep)


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
