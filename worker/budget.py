"""The worker's side of the closed loop: training held to the plan's budget, the evidence when it is
not enough, and an evaluation that runs out of memory shrinking its own batch (never the training's).

The re-plan itself happens where the run is driven (worker/recovery.py): a worker only reports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback

from planner.plan import Plan
from planner.recovery import MemoryEvidence
from worker.errors import WorkerError
from worker.memory_cap import MemoryCap, StepPosition
from worker.memprobe import quant_state_tensors


class OutOfMemory(WorkerError):
    """A step needed more than the plan's budget; carries the evidence for the re-plan."""

    def __init__(self, evidence: dict, outcome: str = ""):
        self.evidence, self.outcome = evidence, outcome
        super().__init__(MemoryEvidence.from_dict(evidence).describe() + (f"; {outcome}" if outcome else ""))

    def __reduce__(self):  # it crosses from a Ray worker to the driver
        return (type(self), (self.evidence, self.outcome))


def optimizer_tensors(optimizer) -> list[torch.Tensor]:
    return [value for state in getattr(optimizer, "state", {}).values() for value in state.values()
            if isinstance(value, torch.Tensor)]


@contextmanager
def held_to_budget(cap: MemoryCap, plan: Plan, model, sink) -> Iterator[MemoryCap]:
    """Training under the cap; an out-of-memory error becomes OutOfMemory with its evidence (written to
    `sink` when this rank reports)."""
    cap.track([*model.parameters(), *model.buffers(), *quant_state_tensors(model)])
    try:
        with cap:
            yield cap
    except torch.OutOfMemoryError as error:
        _report(sink, cap.evidence(error, plan.memory.total), str(error)[:500])
    if cap.pressure is not None:  # training stopped itself after saving a checkpoint: re-plan before a failure
        _report(sink, cap.pressure, "")


def _report(sink, evidence: MemoryEvidence, message: str):
    if sink is not None:
        sink.write({"kind": evidence.kind, **evidence.to_dict(), "text": evidence.describe(), "message": message,
                    "time": time.time()})
    raise OutOfMemory(evidence.to_dict()) from None


class CapCallback(TrainerCallback):
    """Keeps the cap's position (step and phase) and hands each step's measured peak to the meter."""

    def __init__(self, cap: MemoryCap, meter, reserved_bytes: int):
        self.cap, self.meter, self.reserved_bytes = cap, meter, reserved_bytes
        self.steady_step: int | None = None  # the step whose peak is held against the safety line

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.cap.track(optimizer_tensors(optimizer))  # a resumed optimizer's state was loaded, not computed
        self.steady_step = state.global_step + 2  # the first step with the optimizer state alive throughout

    def on_step_begin(self, args, state, control, **kwargs):
        self.cap.position.step, self.cap.position.phase = state.global_step + 1, "forward"
        self.cap.new_step()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.cap.position.phase = "optimizer"

    def on_step_end(self, args, state, control, **kwargs):
        self.cap.position.phase = "log and checkpoint save"
        peak = self.cap.step_peak()
        if peak is not None:
            self.meter.step_peak_bytes = max(self.meter.step_peak_bytes or 0, peak)
        if state.global_step == self.steady_step and state.global_step < state.max_steps and \
                self.cap.check_safety_line(self.meter.predicted_peak_bytes, self.reserved_bytes):
            control.should_save = control.should_training_stop = True  # resume from here under a lighter plan


class CappedTrainer(Trainer):
    """The HF Trainer, whose evaluation halves its own batch when it runs out of memory."""

    def __init__(self, position: StepPosition, sink, **kwargs):
        super().__init__(**kwargs)
        self.position, self.sink = position, sink
        self.remove_callback(PrinterCallback)  # the sink carries the logs; no dicts on stdout

    def evaluate(self, *args, **kwargs):
        before, self.position.phase = self.position.phase, "eval"
        try:
            while True:
                refused = self._evaluate_once(args, kwargs)
                if isinstance(refused, dict):
                    return refused
                self._shrink_eval_batch(refused)
        finally:
            self.position.phase = before

    def _evaluate_once(self, args, kwargs) -> dict | str:
        """The metrics, or the refusal's message (returned, so its frames and tensors are gone before a retry)."""
        try:
            return super().evaluate(*args, **kwargs)
        except torch.OutOfMemoryError as error:
            if self.args.per_device_eval_batch_size <= 1:
                raise
            return str(error)[:300]

    def _shrink_eval_batch(self, message: str) -> None:
        size = self.args.per_device_eval_batch_size
        self.args.per_device_eval_batch_size = size // 2
        if self.is_world_process_zero():
            self.sink.write({"kind": "eval_batch", "step": self.state.global_step, "from": size, "to": size // 2,
                             "text": f"evaluation ran out of memory at batch {size}; batch {size // 2} now "
                                     f"(training unchanged): {message}", "time": time.time()})
