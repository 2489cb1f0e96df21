"""A run driven to its end through out-of-memory: re-planned with the evidence, resumed from its last checkpoint.

`effft run` and the service's job driver (worker/job_main.py) both run a plan through here. When
a worker runs out of its budget it leaves the evidence beside Ray's checkpoints (worker/ray_run.py);
this loop asks the planner for the next lighter plan that keeps the training (planner/recovery.py),
writes a `replan` record with the numbers, and runs again under the same name and storage, so Ray
hands the new attempt the last checkpoint: same data order, learning-rate schedule and step count.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from planner import InfeasibleError, load_profile
from planner.calibration import EMPTY, CalibrationTable
from planner.catalog import Inventory
from planner.plan import Plan
from planner.recovery import MemoryEvidence, Replan, replan
from planner.spec import JobSpec
from worker.budget import OutOfMemory
from worker.disk import DISK_WAIT_SECONDS, MAX_DISK_RESUMES, is_disk_full, room_needed, wait_for_room
from worker.ray_run import RayRun, clear_memory_evidence, memory_evidence, run_on_ray
from worker.sinks import MetricsSink

DEFAULT_MAX_REPLANS = 3
Replanner = Callable[[Plan, MemoryEvidence], Replan]


def spec_replanner(spec: JobSpec, inventory: Inventory, calibration: CalibrationTable = EMPTY) -> Replanner:
    """Re-plans `spec` on `inventory`; the model's config is read only when a re-plan is needed."""
    def replanner(previous: Plan, evidence: MemoryEvidence) -> Replan:
        profile = load_profile(spec.model.path, spec.model.revision)
        return replan(spec, profile, inventory, previous, evidence, calibration)

    return replanner


def run_with_recovery(run: RayRun, sink: MetricsSink, replanner: Replanner | None,
                      max_replans: int = DEFAULT_MAX_REPLANS, disk_wait: float = DISK_WAIT_SECONDS,
                      ) -> tuple[object, Plan]:
    """Ray's Result and the plan that finished; OutOfMemory (with the evidence) when no re-plan is left. A run
    that failed on a full disk waits for room and resumes (worker/disk.py), at most MAX_DISK_RESUMES times."""
    disk_resumes = 0
    while True:
        try:
            return run_on_ray(run, sink), run.job.plan
        except Exception as error:
            found = memory_evidence(run)
            if found is None:
                if is_disk_full(error) and disk_resumes < MAX_DISK_RESUMES and _room_again(run, sink, error,
                                                                                           disk_wait):
                    disk_resumes += 1
                    continue
                raise
        run = _next_attempt(run, sink, replanner, max_replans, found)


def _room_again(run: RayRun, sink: MetricsSink, error: Exception, wait: float) -> bool:
    """Wait for room on the run's disk; True (and a note for the job's events) when there is room again."""
    storage = Path(run.storage_path)
    while not storage.exists() and storage != storage.parent:
        storage = storage.parent
    waited = wait_for_room(storage, room_needed(Path(run.storage_path)), wait)
    if waited is None:
        return False
    line = next((text for text in str(error).splitlines()[::-1] if "Errno 28" in text or "space" in text), "")
    with contextlib.suppress(OSError):
        sink.write({"kind": "disk_full", "time": time.time(), "text": f"the run's disk was full ({line.strip()[:200]}"
                    f"); room again after {waited:.0f} s: resuming from the last checkpoint"})
    return True


def _next_attempt(run: RayRun, sink: MetricsSink, replanner: Replanner | None, max_replans: int,
                  found: dict) -> RayRun:
    evidence = MemoryEvidence.from_dict(found)
    if evidence.kind == "pressure" and (replanner is None or run.attempt >= max_replans):
        return _carry_on(run, sink, found, f"no re-plan left (at most {max_replans})")
    if replanner is None or run.attempt >= max_replans:
        outcome = f"no re-plan left (at most {max_replans})" if replanner else "this run cannot be re-planned"
        _refused(sink, run, found, outcome)
        raise OutOfMemory(found, outcome)
    try:
        new = replanner(run.job.plan, evidence)
    except InfeasibleError as error:
        if evidence.kind == "pressure":  # it has not failed: it runs on, close to its budget
            return _carry_on(run, sink, found, "no lighter plan keeps the training")
        _refused(sink, run, found, str(error))
        raise OutOfMemory(found, "no lighter plan keeps the training") from None
    sink.write({"kind": "replan", "attempt": run.attempt + 1, "evidence": found, "changes": new.changes,
                "failed_plan": run.job.plan.to_dict(),
                "text": f"attempt {run.attempt + 2}: {evidence.describe()}; {new.describe()}; resuming from the "
                        "last checkpoint", "plan": new.plan.to_dict(), "resets_optimizer_state":
                new.resets_optimizer_state, "time": time.time()})
    job = replace(run.job, plan=new.plan, fresh_optimizer=new.resets_optimizer_state)
    return replace(run, job=job, attempt=run.attempt + 1)


def _carry_on(run: RayRun, sink: MetricsSink, found: dict, why: str) -> RayRun:
    """Above the safety line with nothing lighter to run: resume the same plan, without the line this time."""
    sink.write({"kind": "replan_skipped", "attempt": run.attempt + 1, "evidence": found, "time": time.time(),
                "text": f"{MemoryEvidence.from_dict(found).describe()}; {why}: resuming the same plan"})
    clear_memory_evidence(run)
    return replace(run, job=replace(run.job, memory_safety=None), attempt=run.attempt + 1)


def _refused(sink: MetricsSink, run: RayRun, found: dict, outcome: str) -> None:
    sink.write({"kind": "replan_refused", "attempt": run.attempt + 1, "evidence": found,
                "failed_plan": run.job.plan.to_dict(), "text":
                f"{MemoryEvidence.from_dict(found).describe()}; {outcome}", "time": time.time()})
