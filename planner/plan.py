"""The Plan: every resolved setting, the memory breakdown, the throughput and the decisions."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from planner.memory import MemoryBreakdown
from planner.throughput import Throughput


@dataclass(frozen=True)
class Decision:
    step: str  # "resources", "0->1 static", "0->1 activations", "1->n"
    setting: str  # the spec field it sets
    choice: str
    reason: str
    numbers: dict  # the numbers the reason rests on (bytes, tokens/s, ...)
    pinned: bool = False  # the user set it; the planner only checked it


@dataclass(frozen=True)
class Plan:
    name: str
    model: str
    config_origin: str
    params_total: int
    params_trainable: int
    gpu: str
    gpus: int
    budget_bytes: int  # per GPU: memory x max_memory_fraction - CUDA context
    settings: dict  # every spec field with its chosen value, plus sharding and gradient_accumulation_steps
    memory: MemoryBreakdown
    throughput: Throughput
    decisions: tuple[Decision, ...]
    max_steps: int | None

    @property
    def run_seconds(self) -> float | None:
        return None if self.max_steps is None else self.throughput.run_seconds(self.max_steps)

    def to_dict(self) -> dict:
        memory = {**self.memory.terms(), "total": self.memory.total, "margin": self.memory.margin,
                  "margin_reasons": list(self.memory.margin_reasons), "budgeted": self.memory.budgeted,
                  "phase": self.memory.phase,
                  "metric": self.memory.metric, "phases": dict(self.memory.phases),
                  "budget": self.budget_bytes}
        t = self.throughput
        return {
            "name": self.name, "model": self.model, "config_origin": self.config_origin,
            "params": {"total": self.params_total, "trainable": self.params_trainable},
            "gpu": self.gpu, "gpus": self.gpus, "memory": memory, "settings": self.settings,
            "throughput": {"tokens_per_second": t.tokens_per_second, "samples_per_second": t.samples_per_second,
                           "mfu": t.mfu, "step_seconds": t.step_seconds, "bound": t.bound,
                           "model_flops_per_token": t.model_flops_per_token,
                           "hardware_flops_per_token": t.hardware_flops_per_token,
                           "run_seconds": self.run_seconds},
            "decisions": [asdict(d) for d in self.decisions],
        }
