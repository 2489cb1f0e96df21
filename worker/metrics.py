"""Per-step metrics from the HF Trainer's logs, timed and sent to a sink by rank 0.

Records are built from numbers the Trainer already has (loss, grad norm, learning rate, the
gathered token count), so measuring costs no extra device syncs; `report_seconds` counts what
building and writing them took, for the <= 1 % overhead goal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback

from worker.hardware import gpu_utilization, peak_memory
from worker.sinks import MetricsSink


@dataclass
class RunMeter:
    """The numbers a run is measured against, and its running totals."""

    total_steps: int
    samples_per_step: int  # global: micro-batch x accumulation x data-parallel ranks
    model_flops_per_token: float  # the planner's: MFU counts model FLOPs, not recompute
    peak_flops: float  # over all ranks
    predicted_peak_bytes: int
    predicted_tokens_per_second: float
    device: torch.device
    attempt: int = 0  # 1 when Ray restarted the run from a checkpoint
    plan_attempt: int = 0  # how many times the run was re-planned (worker/recovery.py)
    start_time: float = 0.0
    start_step: int = 0
    start_tokens: int = 0
    last: tuple[float, int, int] = (0.0, 0, 0)  # time, step, tokens at the last log
    report_seconds: float = 0.0
    train_seconds: float = 0.0
    tensor_peak_bytes: int | None = None  # CPU: the measured peak (worker/tensor_peak.py); None until measured
    probe_step: int | None = None  # the step measured that way: slower, so left out of tokens/s
    step_peak_bytes: int | None = None  # CPU: the cap's count of live tensor bytes, the largest since the last log
    excluded_seconds: float = 0.0
    excluded_tokens: int = 0
    steps: list[dict] = field(default_factory=list)

    def begin(self, step: int, tokens: int) -> None:
        self.start_time = time.perf_counter()
        self.start_step, self.start_tokens = step, tokens
        self.last = (self.start_time, step, tokens)

    def memory(self) -> dict:
        """The measured peak under the metric the plan predicts (planner/memory.py), and the raw readings."""
        measured = peak_memory(self.device)
        if self.device.type == "cuda":
            return measured
        return {"memory_peak_bytes": self.tensor_peak_bytes, **measured}

    def throughput_window(self, tokens: int, seconds: float) -> tuple[int, float]:
        """Tokens and seconds of the steady optimizer steps: without the first (warm-up), the one measured under
        the memory tracker, and what ran between steps (logs, evaluation, checkpoint saves)."""
        return tokens - self.excluded_tokens, max(seconds - self.excluded_seconds, 1e-9)

    def step_record(self, logs: dict, step: int, epoch: float | None, tokens: int) -> dict:
        now = time.perf_counter()
        last_time, last_step, last_tokens = self.last
        seconds, steps = max(now - last_time, 1e-9), max(step - last_step, 1)
        tokens_per_second = (tokens - last_tokens) / seconds
        mean_step_seconds = (now - self.start_time) / max(step - self.start_step, 1)
        self.last = (now, step, tokens)
        step_peak, self.step_peak_bytes = self.step_peak_bytes, None
        return {
            "kind": "step", "step": step, "total_steps": self.total_steps, "epoch": epoch,
            "loss": logs.get("loss"), "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
            "tokens": tokens, "tokens_per_second": tokens_per_second,
            "tokens_per_second_predicted": self.predicted_tokens_per_second,
            "samples_per_second": steps * self.samples_per_step / seconds, "step_seconds": seconds / steps,
            "mfu": self.model_flops_per_token * tokens_per_second / self.peak_flops,
            **self.memory(), "memory_predicted_bytes": self.predicted_peak_bytes, "memory_step_peak_bytes": step_peak,
            "memory_probe": step == self.probe_step,
            "gpu_utilization": gpu_utilization(self.device),
            "eta_seconds": (self.total_steps - step) * mean_step_seconds, "attempt": self.attempt,
            "plan_attempt": self.plan_attempt, "time": time.time(),
        }


class MetricsCallback(TrainerCallback):
    """Rank 0 turns each Trainer log into a step or eval record."""

    def __init__(self, sink: MetricsSink, meter: RunMeter):
        self.sink, self.meter = sink, meter
        self.step_began = self.step_ended = 0.0
        self.tokens_at_begin = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.meter.begin(state.global_step, state.num_input_tokens_seen)

    # tokens/s counts the optimizer steps: what runs between them (logging, evaluation, checkpoint saves) and
    # the first step (warm-up: lazy initialisation, first-call costs) are measured apart and left out
    def on_step_begin(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self.step_ended:
            self.meter.excluded_seconds += now - self.step_ended
            self.step_ended = 0.0
        self.step_began, self.tokens_at_begin = now, state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ended = time.perf_counter()
        if state.global_step == self.meter.start_step + 1:
            self.meter.excluded_seconds += self.step_ended - self.step_began
            self.meter.excluded_tokens += state.num_input_tokens_seen - self.tokens_at_begin

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        started = time.perf_counter()
        if "loss" in logs:
            record = self.meter.step_record(logs, state.global_step, state.epoch, state.num_input_tokens_seen)
            self.meter.steps.append(record)
        elif "eval_loss" in logs:
            record = {"kind": "eval", "step": state.global_step, "eval_loss": logs["eval_loss"], "time": time.time()}
        else:
            return  # the Trainer's end-of-run averages: the summary covers them
        self.sink.write(record)
        self.meter.report_seconds += time.perf_counter() - started

    def on_train_end(self, args, state, control, **kwargs):
        self.meter.train_seconds = time.perf_counter() - self.meter.start_time
        if self.step_ended:  # the last step's log and save
            self.meter.excluded_seconds += time.perf_counter() - self.step_ended
