"""Finding the processes the drill kills: a job's Ray Train workers and its driver, on this drill's Ray head only."""

from __future__ import annotations

import json
from pathlib import Path


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def driver_pids(run_dir: Path) -> list[int]:
    """The job's driver: the Python running `worker.job_main RUN_DIR/job.json` (not the shell Ray wraps it in)."""
    job_file = str(run_dir / "job.json")
    return [pid for pid in all_pids()
            if (line := cmdline(pid)).split(" ")[0].split("/")[-1].startswith("python")
            and "worker.job_main" in line and job_file in line]


def ray_job_info(dashboard_url: str, submission_id: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard_url).get_job_info(submission_id)


def train_worker_pids(dashboard_url: str, ray_job_id: str) -> list[int]:
    """The live Ray Train workers (RayTrainWorker actors) that the given Ray job (its driver) started."""
    from ray.util.state import list_actors

    actors = list_actors(address=dashboard_url, limit=1000, raise_on_missing_output=False,
                         filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    return [int(actor.pid) for actor in actors if actor.job_id == ray_job_id and actor.pid]


def head(data_dir: Path) -> dict:
    """The Ray head `effft server` started for this data dir: its address and dashboard URL."""
    return json.loads((data_dir / "ray-head.json").read_text())


def ray_submissions(dashboard_url: str) -> list:
    """Every Ray job the head knows: submission id, status, start and end (ms)."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard_url).list_jobs()
