"""The Trainer callbacks every timed run carries, so that effft, a plain Trainer and a naive one are
timed the same way."""

from __future__ import annotations

import time

import torch
from transformers import TrainerCallback


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock(TrainerCallback):
    """Tokens and wall time from the end of step `warmup` to the end of the last step, the device synchronized
    at each step's end: the steady steps only (the first pays for lazy initialisation; on a CPU effft's second
    is its memory probe)."""

    def __init__(self, device: torch.device, warmup: int):
        self.device, self.warmup = device, warmup
        self.start: tuple[float, int] | None = None
        self.end: tuple[float, int] | None = None
        self.timed_steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        mark = (time.perf_counter(), state.num_input_tokens_seen)
        if state.global_step == self.warmup:
            self.start = mark
        self.end = mark
        self.timed_steps = max(0, state.global_step - self.warmup)

    def tokens_per_second(self) -> float | None:
        """None when no step ran after the warm-up (a run cut short)."""
        if self.start is None or self.end is None or self.end[0] <= self.start[0]:
            return None
        return (self.end[1] - self.start[1]) / (self.end[0] - self.start[0])


class NoSave(TrainerCallback):
    """A benchmark keeps nothing: the Trainer's end-of-run checkpoint of a 3B model takes longer than its steps."""

    def on_step_end(self, args, state, control, **kwargs):
        control.should_save = False
