"""The driver of one service job on Ray: `python -m worker.job_main JOB_FILE` (a Ray Job's entrypoint).

It runs the plan on Ray Train with a spool-file sink, and ships the spool to the service while
training runs and until every record is stored, so the service can restart meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path

from planner.spec import parse_job
from worker.confine import field_read_problem, write_problem
from worker.errors import DataError
from worker.job_file import JobFile
from worker.ray_run import RayRun, ensure_ray, inventory
from worker.recovery import run_with_recovery, spec_replanner
from worker.shipper import Shipper
from worker.sinks import JsonlSink
from worker.train import WorkerJob

DRAIN_SECONDS = 3600  # a service down for longer than this loses the run's last records


def check_confinement(config: JobFile) -> None:
    """The service checked these paths before planning; check again right before reading (files change)."""
    if config.confinement is None:
        return
    rules, settings = config.confinement.rules(), config.plan.settings
    for field, path in (("dataset.path", settings.dataset.path), ("model.path", settings.model.path)):
        if path.startswith("/") and (reason := field_read_problem(rules, field, path)) is not None:
            raise DataError(field, path, reason)
    if settings.output.dir and (reason := write_problem(rules, config.output_dir)) is not None:
        raise DataError("output.dir", config.output_dir, reason)


def main(job_file: str) -> int:
    config = JobFile.read(Path(job_file))
    check_confinement(config)
    folder = Path(config.run_dir)
    spool = folder / "metrics.jsonl"
    shipper = Shipper(spool, config.api_url, config.job_id, config.worker_token).start()
    # the cluster the service named, by address: `auto` may find another installation's head on this host
    ensure_ray(config.ray_address)
    job = WorkerJob(config.plan, config.output_dir, str(folder / "work"), memory_cap_bytes=config.memory_cap_bytes,
                    memory_safety=config.memory_safety_line if config.memory_safety_line < 1 else None,
                    checkpoints_to_keep=config.checkpoints_to_keep)
    # the same inventory the scheduler planned on; a re-plan keeps the plan's GPUs and budget
    replanner = spec_replanner(parse_job(config.spec), inventory()[0]) if config.spec is not None else None
    failed = None
    try:
        run_with_recovery(RayRun(job, storage_path=str(folder / "ray"), name=config.job_id,
                                 accelerator_type=config.accelerator_type, device_share=config.device_share),
                          JsonlSink(spool), replanner, config.max_replans)
    except Exception as error:  # the run failed: ship what it wrote, then fail the Ray job
        failed = error
    stored = shipper.drain(DRAIN_SECONDS)
    if failed is not None:
        raise failed
    if not stored:
        print("effft: the service did not take the last metric records", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
