"""What `objective: auto` means: the fastest plan for this job, unless jobs are queueing for GPUs.

With more jobs waiting than GPUs free, each job's memory share decides how many run at once: then `throughput`
(within THROUGHPUT_COST of the job's fastest tokens/s, the smallest memory share) finishes the queue sooner. The
scheduler knows the queue; the planner is told it as data (Queue), and without it (`effft plan`, `effft run`)
auto is `fastest`.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.spec import JobSpec


@dataclass(frozen=True)
class Queue:
    """The cluster when this job is planned: jobs not yet running (this one included), and GPUs no job holds."""

    waiting: int
    free_gpus: int

    @property
    def busy(self) -> bool:
        return self.waiting > self.free_gpus


def resolved_objective(spec: JobSpec, queue: Queue | None) -> tuple[str, str, dict]:
    """The objective the plan follows, why, and the numbers the reason rests on."""
    if spec.objective != "auto":
        return spec.objective, "pinned", {}
    if queue is None:
        return "fastest", "auto: no queue to share GPUs with (planned on its own)", {}
    numbers = {"jobs_waiting": queue.waiting, "free_gpus": queue.free_gpus}
    if queue.busy:
        return "throughput", (f"auto: {queue.waiting} jobs wait for {queue.free_gpus} free GPUs, so a smaller "
                              "memory share lets more of them run at once"), numbers
    return "fastest", f"auto: {queue.waiting} jobs waiting, {queue.free_gpus} GPUs free: no queue", numbers
