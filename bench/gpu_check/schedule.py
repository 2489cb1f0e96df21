"""Running a section's tasks within its share of the wall-clock budget.

Memory-only runs share the device: a run starts while the others' reserved memory plus its own stays
under the capacity (each process has its own allocator, so its peak is its own). Timed runs and OOM
checks run alone. A run that went out of memory beside others, where the planner said it fits, runs
again alone before it counts; a child that found CUDA unusable after the fork runs again as a fresh
interpreter. Tasks not started by the deadline come back as `skipped` rows, never as numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.gpu_check.launch import Launcher, Running, Task

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Admission:
    concurrency: int  # runs at once at most
    capacity_bytes: int  # device memory the concurrent runs' reservations may add up to


def _may_start(task: Task, running: list[Running], pending: list[Task], admission: Admission) -> bool:
    if task.alone:  # after every shared run, with nothing beside it
        return not running and not any(not other.alone for other in pending)
    if len(running) >= admission.concurrency or any(r.task.alone for r in running):
        return False
    held = sum(r.task.reserve_bytes for r in running)
    return not running or held + task.reserve_bytes <= admission.capacity_bytes


def _needs_retry(task: Task, result: dict, overlapped: bool) -> str | None:
    """Why this run should go again, or None."""
    if task.tries >= 2:
        return None
    if result.get("fork_poisoned"):
        return "fork"
    shared_oom = result.get("outcome") == "OOM" or result.get("oom_in_log")
    if shared_oom and overlapped and task.row.get("planner_fits", True):
        return "alone"
    return None


def run_section(launcher: Launcher, tasks: list[Task], start_until: float, stop_by: float, admission: Admission,
                on_row: Callable[[Task, dict], None], retry: Callable[[Task, dict], Task | None] = lambda t, r: None
                ) -> None:
    """Run `tasks`, calling `on_row(task, result)` as each ends. None starts after `start_until` (the section's
    share) and none runs past `stop_by` (the whole budget). `retry` may return a follow-up task for a result
    (the naive run's smaller micro-batch after an OOM)."""
    pending, running = list(tasks), []
    try:
        _loop(launcher, pending, running, start_until, stop_by, admission, on_row, retry)
    finally:  # stopped from outside (the shell's timeout): no run outlives the proof
        for run in running:
            run.stop()


def _loop(launcher, pending: list[Task], running: list[Running], start_until: float, stop_by: float,
          admission: Admission, on_row, retry) -> None:
    while pending or running:
        now = time.monotonic()
        for run in [r for r in running if r.finished() or now > r.deadline]:
            if not run.finished():
                run.stop()
            running.remove(run)
            _finish(launcher, run, pending, on_row, retry)
        if now > start_until:
            for task in pending:
                on_row(task, {"outcome": "skipped", "error": "not started: the section's wall-clock budget ran out"})
            pending.clear()
        for task in list(pending):
            if _may_start(task, running, pending, admission):
                pending.remove(task)
                task.timeout = min(task.timeout, max(stop_by - now, 1.0))
                started = launcher.start(task, now)
                for other in running:
                    other.overlapped = started.overlapped = True
                running.append(started)
        time.sleep(POLL_SECONDS)


def _finish(launcher: Launcher, run: Running, pending: list[Task], on_row, retry) -> None:
    result = {**run.result(), "ran_alone": not run.overlapped, "tries": run.task.tries}
    reason = _needs_retry(run.task, result, run.overlapped)
    if reason == "fork" and launcher.mode == "fork":
        launcher.fall_back_to_exec()
    if reason is not None:
        run.task.alone = run.task.alone or reason == "alone"
        pending.insert(0, run.task)
        print(f"  {run.task.id}: again ({reason}): {result.get('outcome')} {result.get('error', '')[:120]}", flush=True)
        return
    on_row(run.task, result)
    follow_up = retry(run.task, result)
    if follow_up is not None:
        pending.insert(0, follow_up)
