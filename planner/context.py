"""What the decision tree carries from step to step: the job, the device and its budget, the calibration,
and the decisions recorded so far; and the two choices at its edges (the GPUs, the checkpoint interval)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner.calibration import Calibration, CalibrationTable
from planner.catalog import GpuSpec, Inventory
from planner.errors import FieldProblem, InfeasibleError, SpecError
from planner.memory import MemoryBreakdown, estimate_memory
from planner.plan import Decision
from planner.profile import ModelProfile
from planner.setup import RunSetup
from planner.spec import JobSpec
from planner.throughput import Throughput


@dataclass
class PlanContext:
    spec: JobSpec
    profile: ModelProfile
    gpu: GpuSpec
    gpus: int
    budget: int
    calibration: CalibrationTable
    budget_input: int | None = None  # a budget the caller fixed (kept when re-planning without pins)
    decisions: list[Decision] = field(default_factory=list)

    def decide(self, step: str, setting: str, choice, reason: str, pinned: bool = False, **numbers) -> None:
        self.decisions.append(Decision(step=step, setting=setting, choice=str(choice), reason=reason,
                                       numbers=numbers, pinned=pinned))

    def calibration_for(self, run: RunSetup) -> Calibration:
        """Each candidate is corrected by the runs measured with its own method and recipe."""
        return self.calibration.lookup(self.gpu.name, run.arch.family, run.method, run.recipe)

    def fits(self, run: RunSetup) -> tuple[bool, MemoryBreakdown]:
        memory = estimate_memory(run, self.calibration_for(run))
        return memory.budgeted <= self.budget, memory


def check_sharding(spec: JobSpec, gpus: int) -> None:
    """A pinned sharding must match the GPU count it runs on."""
    if spec.sharding in ("ddp", "fsdp") and gpus < 2:
        raise SpecError([FieldProblem("sharding", spec.sharding, f"shards over 2 or more GPUs and this job has "
                                      f"{gpus}; set resources.gpus: 2 or more, or sharding: auto")])
    if spec.sharding == "none" and gpus > 1:
        raise SpecError([FieldProblem("sharding", "none", f"runs on one GPU and this job has {gpus}; set "
                                      "resources.gpus: 1, or sharding: auto")])


def choose_gpus(spec: JobSpec, inventory: Inventory, ctx_decisions: list[Decision]) -> tuple[GpuSpec, int]:
    types = inventory.types()
    if not types:
        raise InfeasibleError("the cluster reports no GPUs (and no CPU entry); start Ray workers with GPUs")
    if spec.resources.gpu_type:
        matches = [t for name, t in types.items() if name.lower() == spec.resources.gpu_type.lower()]
        if not matches:
            raise SpecError([FieldProblem("resources.gpu_type", spec.resources.gpu_type,
                                          f"the cluster has no such GPU; it has: {', '.join(types)}")])
        gpu, total, _ = matches[0]
    else:
        gpu, total, _ = max(types.values(), key=lambda t: (t[0].memory_bytes, t[1]))
    wanted = spec.resources.gpus
    if isinstance(wanted, int) and wanted > total:
        raise SpecError([FieldProblem("resources.gpus", wanted, f"the cluster has {total} x {gpu.name}; "
                                      f"ask for at most {total}, or 'auto'")])
    count = wanted if isinstance(wanted, int) else total
    ctx_decisions.append(Decision(step="resources", setting="resources.gpus", choice=f"{count} x {gpu.name}",
                                  reason="pinned" if isinstance(wanted, int) else "every GPU of the largest type",
                                  numbers={"gpu_memory_bytes": gpu.memory_bytes, "available": total},
                                  pinned=isinstance(wanted, int)))
    return gpu, count



CHECKPOINT_SECONDS = 600  # auto: a checkpoint about every 10 minutes of predicted training
CHECKPOINTS_PER_RUN = 4  # ... and at least this many in a run that gives max_steps


def checkpoint_interval(ctx: PlanContext, throughput: Throughput) -> int:
    pinned = ctx.spec.training.checkpoint_every_steps
    if pinned != "auto":
        ctx.decide("1->n", "training.checkpoint_every_steps", pinned, "pinned", pinned=True)
        return pinned
    steps = max(1, math.ceil(CHECKPOINT_SECONDS / throughput.step_seconds))
    if ctx.spec.training.max_steps is not None:
        steps = min(steps, max(1, ctx.spec.training.max_steps // CHECKPOINTS_PER_RUN))
    ctx.decide("1->n", "training.checkpoint_every_steps", steps, f"a restart loses at most {steps} steps "
               f"(about {steps * throughput.step_seconds:.0f} s)", step_seconds=throughput.step_seconds)
    return steps
