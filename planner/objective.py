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
    """The objective the plan follows, why, and the numbers the reason rests on.

    Without a queue the decision reads the same whether the job was planned alone or beside idle GPUs, so a
    preview (`effft plan`) and the scheduler's plan agree wherever the cluster is not busy."""
    if spec.objective != "auto":
        return spec.objective, "pinned", {}
    if queue is not None and queue.busy:
        return "throughput", (f"auto: {queue.waiting} jobs wait for {queue.free_gpus} free GPUs, so a smaller "
                              "memory share lets more of them run at once"), {"jobs_waiting": queue.waiting,
                                                                             "free_gpus": queue.free_gpus}
    return "fastest", "auto: no jobs queue for GPUs", {}
