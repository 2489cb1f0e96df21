"""Re-planning after a run ran out of memory (or came close): the next lighter plan that keeps the training.

The evidence (what was in use when the allocator refused, or the measured peak above the safety
line) becomes a calibration factor for the failed plan's key, so the same decision tree now sees
the failed settings as too large. Everything that defines the training is pinned to the failed
plan: sequence length, packing, precision, attention, the GPUs, the checkpoint interval, and the
effective batch (the tree always keeps it). Then the rungs are tried in order, each lighter than
the last, and the first that fits wins:

1. the same method and optimizer: the tree shrinks the micro-batch (accumulation grows to keep the
   effective batch), and turns gradient checkpointing on when micro-batch 1 needs it;
2. the 8-bit optimizer, when the job left `optimizer: auto`;
3. QLoRA, when the job left `method: auto` and the plan was LoRA (its adapter carries over).

Pure: data in, plan out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from planner.calibration import Calibration, CalibrationTable
from planner.catalog import Inventory
from planner.errors import InfeasibleError, SpecError
from planner.plan import Decision, Plan
from planner.profile import ModelProfile
from planner.spec import JobSpec
from planner.tree import make_plan
from planner.units import size_text


@dataclass(frozen=True)
class MemoryEvidence:
    """What a run measured when it ran out of memory ("oom") or passed its safety line ("pressure")."""

    kind: str  # oom | pressure
    step: int  # the optimizer step being run (1-based)
    phase: str  # forward, backward, optimizer, eval, ...
    in_use_bytes: int  # in use when the allocation was refused (pressure: the measured peak)
    requested_bytes: int  # the refused allocation (0 when the device does not say, and for pressure)
    limit_bytes: int  # the job's cap, the plan's budget (pressure: the safety line, a share of it)
    peak_bytes: int  # the largest use measured before
    predicted_bytes: int  # what the plan predicted (its estimate, calibrated)
    device: str

    @property
    def needed_bytes(self) -> int:
        """A lower bound on what the step needs: the refused allocation on top of what was in use."""
        return max(self.in_use_bytes + self.requested_bytes, self.peak_bytes)

    def describe(self) -> str:
        if self.kind == "pressure":
            return (f"memory above the safety line at step {self.step}: a peak of {size_text(self.peak_bytes)}, "
                    f"line {size_text(self.limit_bytes)}; the plan predicted {size_text(self.predicted_bytes)}")
        asked = f" + {size_text(self.requested_bytes)} asked" if self.requested_bytes else ""
        return (f"out of memory at step {self.step} ({self.phase}): {size_text(self.in_use_bytes)} in use{asked}, "
                f"budget {size_text(self.limit_bytes)}; the plan predicted {size_text(self.predicted_bytes)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MemoryEvidence:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Replan:
    plan: Plan
    changes: list[str]  # "micro-batch 4 -> 2", ... what a user reads in the job's events
    memory_factor: float  # the factor the evidence set for the failed plan's key
    resets_optimizer_state: bool  # the new optimizer cannot take the old one's state

    def describe(self) -> str:
        return "; ".join(self.changes)


def evidence_calibration(table: CalibrationTable, previous: Plan, evidence: MemoryEvidence) -> tuple[
        CalibrationTable, float]:
    """The table with the failed plan's key corrected so that its settings need what was measured."""
    key = (previous.gpu, previous.family, previous.settings.method, previous.settings.precision_recipe)
    current = table.lookup(*key)
    raw = previous.memory.total / previous.memory.calibration
    # never below what the failed plan already applied: the evidence only ever corrects upward
    factor = max(current.memory, previous.memory.calibration, evidence.needed_bytes / max(raw, 1))
    corrected = Calibration(memory=factor, tokens_per_second=current.tokens_per_second, runs=current.runs + 1,
                            key=key)
    return CalibrationTable({**table.factors, key: corrected}), factor


def _pinned(spec: JobSpec, previous: Plan) -> JobSpec:
    """The spec with everything that defines the training fixed to the failed plan's values."""
    settings = previous.settings
    training = spec.training.model_copy(update={"checkpoint_every_steps": settings.training.checkpoint_every_steps})
    resources = spec.resources.model_copy(update={"gpus": previous.gpus, "gpu_type": previous.gpu})
    update = {"seq_len": settings.seq_len, "packing": settings.packing, "precision": settings.precision,
              "precision_recipe": settings.precision_recipe, "attention": settings.attention,
              "training": training, "resources": resources, "method": settings.method,
              "optimizer": settings.optimizer, "objective": "fastest"}
    if settings.gradient_checkpointing:  # never lighter to turn it off again
        update["gradient_checkpointing"] = True
    return spec.model_copy(update=update)


def _rungs(spec: JobSpec, previous: Plan) -> list[tuple[str, JobSpec]]:
    base = _pinned(spec, previous)
    rungs = [("same method and optimizer", base)]
    if spec.optimizer == "auto" and previous.settings.optimizer == "adamw":
        rungs.append(("8-bit AdamW", base.model_copy(update={"optimizer": "adamw_8bit"})))
    if spec.method == "auto" and previous.settings.method == "lora":
        rungs.append(("QLoRA", base.model_copy(update={"method": "qlora", "optimizer": spec.optimizer})))
    return rungs


def _changes(previous: Plan, new: Plan) -> list[str]:
    old, now = previous.settings, new.settings
    changes = []
    for label, field in (("method", "method"), ("optimizer", "optimizer"), ("micro-batch", "micro_batch_size"),
                         ("accumulation", "gradient_accumulation_steps"),
                         ("gradient checkpointing", "gradient_checkpointing")):
        before, after = getattr(old, field), getattr(now, field)
        if before != after:
            changes.append(f"{label} {_text(before)} -> {_text(after)}")
    changes.append(f"effective batch {_effective(new)} unchanged")
    changes.append(f"predicted {size_text(new.memory.total)} of {size_text(new.memory.budget)}")
    return changes


def _text(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def _effective(plan: Plan) -> int:
    data_parallel = plan.gpus if plan.settings.sharding != "none" else 1
    return plan.settings.micro_batch_size * plan.settings.gradient_accumulation_steps * data_parallel


def _memory_settings(plan: Plan) -> tuple:
    s = plan.settings
    return (s.method, s.optimizer, s.micro_batch_size, s.gradient_checkpointing, s.sharding)


def replan(spec: JobSpec, profile: ModelProfile, inventory: Inventory, previous: Plan, evidence: MemoryEvidence,
           calibration: CalibrationTable) -> Replan:
    """The first rung that fits with the evidence counted; InfeasibleError (with the evidence) when none does."""
    table, factor = evidence_calibration(calibration, previous, evidence)
    # under the safety line after a pressure re-plan; and a device that refused below the budget (something
    # else holds memory) gave only what was asked of it
    budget = min(previous.memory.budget, evidence.limit_bytes, evidence.needed_bytes)
    tried = []
    for name, candidate in _rungs(spec, previous):
        try:
            plan = _lighter_plan(candidate, profile, inventory, budget, table, previous)
        except (InfeasibleError, SpecError) as error:
            tried.append(f"{name}: {str(error).split(';')[0]}")
            continue
        if _memory_settings(plan) == _memory_settings(previous):
            tried.append(f"{name}: nothing lighter than the failed plan")
            continue
        if _effective(plan) != _effective(previous):  # the tree keeps it; a plan that did not is never run
            raise AssertionError(f"re-plan changed the effective batch {_effective(previous)} -> {_effective(plan)}")
        plan = plan.model_copy(update={"decisions": [*plan.decisions, _decision(evidence, factor, name)]})
        return Replan(plan, _changes(previous, plan), factor,
                      resets_optimizer_state=plan.settings.optimizer != previous.settings.optimizer)
    raise InfeasibleError(f"{evidence.describe()}; no lighter plan keeps the training: " + "; ".join(tried),
                          evidence.needed_bytes, evidence.limit_bytes)


def _lighter_plan(spec: JobSpec, profile: ModelProfile, inventory: Inventory, budget: int,
                  table: CalibrationTable, previous: Plan) -> Plan:
    """The tree's plan for `spec`, never at a larger micro-batch than the failed plan's (a lighter method or
    optimizer frees room the tree would spend on one)."""
    plan = make_plan(spec, profile, inventory, budget_override=budget, calibration=table,
                     seq_len=previous.settings.seq_len)
    if plan.settings.micro_batch_size > previous.settings.micro_batch_size:
        plan = make_plan(spec.model_copy(update={"micro_batch_size": previous.settings.micro_batch_size}), profile,
                         inventory, budget_override=budget, calibration=table, seq_len=previous.settings.seq_len)
    return plan


def _decision(evidence: MemoryEvidence, factor: float, rung: str) -> Decision:
    return Decision(step="recovery", setting="re-plan", choice=rung,
                    reason=f"{evidence.describe()}: memory of the failed settings x{factor:.2f}",
                    numbers={"step": evidence.step, "in_use_bytes": evidence.in_use_bytes,
                             "requested_bytes": evidence.requested_bytes, "limit_bytes": evidence.limit_bytes,
                             "memory_factor": factor})

