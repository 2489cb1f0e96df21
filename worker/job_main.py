"""The driver of one service job on Ray: `python -m worker.job_main JOB_FILE` (a Ray Job's entrypoint).

It runs the plan on Ray Train with a spool-file sink, and ships the spool to the service while
training runs and until every record is stored, so the service can restart meanwhile.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from worker.ray_run import RayRun, ensure_ray, run_on_ray
from worker.shipper import Shipper
from worker.sinks import JsonlSink
from worker.train import WorkerJob

DRAIN_SECONDS = 3600  # a service down for longer than this loses the run's last records


def main(job_file: str) -> int:
    config = json.loads(Path(job_file).read_text())
    folder = Path(config["run_dir"])
    spool = folder / "metrics.jsonl"
    shipper = Shipper(spool, config["api_url"], config["job_id"], config["worker_token"]).start()
    ensure_ray()  # inside a Ray Job: connects to the cluster that runs it
    job = WorkerJob(config["plan"], config["output_dir"], str(folder / "work"))
    failed = None
    try:
        run_on_ray(RayRun(job, storage_path=str(folder / "ray"), name=config["job_id"],
                          accelerator_type=config.get("accelerator_type")), JsonlSink(spool))
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
