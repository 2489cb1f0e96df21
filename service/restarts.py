"""A job's driver killed from outside (SIGKILL, the kernel's OOM killer) is started again, and resumes.

The driver (`python -m worker.job_main`, a Ray Job's entrypoint) owns the Ray Train run: when it dies, its
workers die with it, but the run's checkpoints stay in the run folder. A Python failure exits 1 (its
traceback in the log) and fails the job; an exit by a signal (the shell Ray wraps the entrypoint in answers
128 + the signal, Ray itself a negative number) or no exit code at all is not the training's fault: the
scheduler submits the same job file again as a new Ray job (`JOBID-rN`), which resumes from the last
checkpoint under the same run name and storage, at most `EFFFT_MAX_DRIVER_RESTARTS` times.
"""

from __future__ import annotations

import logging
import re

from planner.plan import load_plan

log = logging.getLogger("effft.scheduler")
RESTARTED = re.compile(r"-r(\d+)$")


def how_it_died(exit_code: int | None) -> str | None:
    """Why the driver's Ray job failed when it was killed from outside; None when it exited by itself."""
    if exit_code is None:
        return "its Ray job ended without an exit code (the driver or its supervisor died)"
    if exit_code < 0:
        return f"it was killed by signal {-exit_code}"
    if exit_code > 128:
        return f"it was killed by signal {exit_code - 128}"
    return None


def restarts_of(ray_job_id: str) -> int:
    found = RESTARTED.search(ray_job_id)
    return int(found.group(1)) if found else 0


def restart_driver(scheduler, job) -> bool:
    """Start the job's driver again if it was killed and restarts are left; True when it runs again."""
    exit_code = getattr(scheduler.cluster, "exit_code", lambda _: 1)(job.ray_job_id)
    why = how_it_died(exit_code)
    restarts, limit = restarts_of(job.ray_job_id), scheduler.settings.max_driver_restarts
    if why is None or restarts >= limit or not job.plan or not job.placement:
        if why is not None:
            scheduler.store.note(job.id, f"the job's driver died ({why}); no restart left (at most {limit})")
        return False
    # the plan it runs now, under a new Ray job id
    new = scheduler.submit_driver(job.id, f"{job.id}-r{restarts + 1}", load_plan(job.plan), job.placement)
    reason = (f"the job's driver died ({why}); started again as Ray job {new}, resuming from the last checkpoint "
              f"(restart {restarts + 1} of at most {limit})")
    if not scheduler.store.replace_ray_job(job.id, job.ray_job_id, new, reason):
        scheduler.cluster.stop(new)  # cancelled (or moved on) meanwhile
        return False
    log.warning("job %s: %s", job.id, reason)
    return True

