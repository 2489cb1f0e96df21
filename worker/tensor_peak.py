"""The CPU's measured peak, in the planner's own unit: tensor bytes over one steady-state step.

On a GPU the caching allocator counts the peak (`max_memory_reserved`). The CPU allocator keeps no
such count, and the process's RSS mixes in the interpreter, libraries and freed pages; so on the
CPU the worker measures what the planner predicts: MemTracker (`worker.memprobe`) over the second
optimizer step of the run (the optimizer state then exists), every micro-batch and the AdamW
step included. That step runs slower under the tracker, so its time and tokens are left out of
the run's tokens/s.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

from worker.memprobe import FrozenAwareMemTracker, quant_state_tensors


class TensorPeakCallback(TrainerCallback):
    """Tracks the first step after the run's (or the resumed run's) first optimizer step."""

    def __init__(self, meter):
        self.meter, self.tracker, self.started = meter, None, 0.0
        self.target_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.target_step = state.global_step + 1  # global_step counts finished optimizer steps

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if state.global_step != self.target_step or self.tracker is not None or model is None:
            return
        self.tracker = FrozenAwareMemTracker()
        self.tracker.track_external(model, *([optimizer] if optimizer is not None else []),
                                    *quant_state_tensors(model))
        self.tracker.__enter__()
        self.started, self.tokens = time.perf_counter(), state.num_input_tokens_seen

    def on_substep_end(self, args, state, control, **kwargs):
        """Gradient accumulation runs the model again within the step: the tracker's per-module stats
        start over (its peak over the whole step stays)."""
        if self.tracker is not None and self.meter.tensor_peak_bytes is None:
            self.tracker.reset_mod_stats()

    def on_step_end(self, args, state, control, **kwargs):
        if self.tracker is None or self.meter.tensor_peak_bytes is not None:
            return
        self.tracker.__exit__(None, None, None)
        peak = self.tracker.get_tracker_snapshot("peak")
        self.meter.tensor_peak_bytes = int(max((snap.get("Total", 0) for snap in peak.values()), default=0))
        self.meter.excluded_seconds += time.perf_counter() - self.started
        self.meter.excluded_tokens += state.num_input_tokens_seen - self.tokens
        self.meter.probe_step = state.global_step
