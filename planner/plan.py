"""The Plan: one versioned, typed document that crosses every boundary.

The planner builds it; the CLI prints it; the scheduler stores it as JSON; the worker, the store
and the API read it back with `load_plan`, which validates every field, so a renamed or missing
key fails where the plan is read, with its path, and never as a KeyError on a Ray worker.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.calibration import Observation
from planner.memory import TERMS, MemoryBreakdown
from planner.spec import DatasetSpec, Ia3Spec, LoraSpec, ModelSource, OutputSpec, TrainingSpec
from planner.throughput import Throughput

SCHEMA_VERSION = 1  # raise it when a field changes meaning or goes; `load_plan` names the two versions


class PlanModel(BaseModel):
    # not strict: a plan is read back from JSON, where a tuple is a list and 2.0 may be 2
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ResolvedResources(PlanModel):
    gpus: int = Field(ge=1)  # GPUs per job (1 unless the plan shards)
    gpu_type: str
    max_memory_fraction: float = Field(gt=0, le=1)
    exclusive: bool = False  # whole GPUs even where its memory leaves room (service/packing.py)


class RunSettings(PlanModel):
    """What the worker runs: the job spec with every `auto` resolved (planner/settings_out.py)."""

    name: str
    model: ModelSource
    dataset: DatasetSpec
    seq_len: int = Field(ge=1)
    packing: bool
    method: Literal["full", "lora", "qlora", "ia3"]
    lora: LoraSpec
    ia3: Ia3Spec
    precision: Literal["bf16", "fp16", "fp32"]
    precision_recipe: Literal["fp32", "amp", "pure"]
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit"]
    micro_batch_size: int = Field(ge=1)
    gradient_checkpointing: bool
    attention: Literal["sdpa", "flash_attention_2", "eager"]
    training: TrainingSpec
    resources: ResolvedResources
    objective: Literal["fastest", "least_memory", "throughput"]
    output: OutputSpec
    sharding: Literal["none", "ddp", "fsdp"]
    gradient_accumulation_steps: int = Field(ge=1)


class PlanMemory(PlanModel):
    """Bytes per GPU at the predicted peak, by term, and the budget it must fit."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int
    total: int  # the estimate: what the measured peak is compared with
    margin: int  # reserved beyond the estimate where the model is uncertain
    margin_reasons: list[str]
    budgeted: int  # total + margin: what must fit in the budget
    phase: str  # the phase of the step where the peak falls
    metric: str  # what the prediction is of (CUDA: max reserved; CPU: tensor bytes)
    phases: dict[str, int]
    budget: int  # per GPU: memory x max_memory_fraction - CUDA context
    calibration: float = 1.0  # the measured-runs factor every term was scaled by (raw = total / it)

    def terms(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in TERMS}

    @classmethod
    def of(cls, breakdown: MemoryBreakdown, budget: int, calibration: float = 1.0) -> PlanMemory:
        return cls(**breakdown.terms(), total=breakdown.total, margin=breakdown.margin,
                   margin_reasons=list(breakdown.margin_reasons), budgeted=breakdown.budgeted,
                   phase=breakdown.phase, metric=breakdown.metric, phases=dict(breakdown.phases), budget=budget,
                   calibration=calibration)


class PlanThroughput(PlanModel):
    tokens_per_second: float
    samples_per_second: float
    mfu: float
    step_seconds: float
    bound: Literal["math", "memory"]
    model_flops_per_token: float  # what MFU counts: no recompute
    hardware_flops_per_token: float  # what the device executes: recompute included
    run_seconds: float | None  # None when the run is given in epochs (it depends on the dataset)
    calibration: float = 1.0  # the measured-runs factor tokens/s was scaled by (raw = tokens/s / it)

    @classmethod
    def of(cls, throughput: Throughput, max_steps: int | None, calibration: float = 1.0) -> PlanThroughput:
        """The model's throughput, faster or slower by what measured runs of the same kind showed."""
        step_seconds = throughput.step_seconds / calibration
        return cls(tokens_per_second=throughput.tokens_per_second * calibration,
                   samples_per_second=throughput.samples_per_second * calibration, mfu=throughput.mfu * calibration,
                   step_seconds=step_seconds, bound=throughput.bound,
                   model_flops_per_token=throughput.model_flops_per_token,
                   hardware_flops_per_token=throughput.hardware_flops_per_token,
                   run_seconds=None if max_steps is None else max_steps * step_seconds, calibration=calibration)


class Decision(PlanModel):
    step: str  # "resources", "0->1 static", "0->1 activations", "1->n"
    setting: str  # the spec field it sets
    choice: str
    reason: str
    numbers: dict[str, Union[int, float, str, bool, None]] = {}  # what the reason rests on
    pinned: bool = False  # the user set it; the planner only checked it


class ParamCounts(PlanModel):
    total: int
    trainable: int


class Plan(PlanModel):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    model: str
    family: str = ""  # the model family the planner read (calibration's key); unknown in version-0 plans
    config_origin: str
    params: ParamCounts
    gpu: str
    gpus: int = Field(ge=1)
    memory: PlanMemory
    settings: RunSettings
    throughput: PlanThroughput
    decisions: list[Decision]

    def to_dict(self) -> dict:
        """The JSON form, as stored and sent: `load_plan` reads it back."""
        return self.model_dump(mode="json")

    def observation(self, measured_bytes: int | None, measured_tokens_per_second: float | None) -> Observation | None:
        """What a finished run of this plan teaches calibration: the raw model's predictions (before the
        factors this plan applied) beside the measurements; None when the run measured neither."""
        if not measured_bytes and not measured_tokens_per_second:
            return None
        return Observation(device=self.gpu, family=self.family, method=self.settings.method,
                           recipe=self.settings.precision_recipe,
                           predicted_bytes=round(self.memory.total / self.memory.calibration),
                           measured_bytes=int(measured_bytes or 0),
                           predicted_tokens_per_second=self.throughput.tokens_per_second / self.throughput.calibration,
                           measured_tokens_per_second=float(measured_tokens_per_second or 0.0))


class PlanVersionError(ValueError):
    """A stored plan this version cannot read: the message names both versions and the fix."""


def load_plan(data: dict) -> Plan:
    """Read a stored or sent plan. A plan from before `schema_version` existed (version 0) had the
    same fields and loads when it validates; anything else fails naming the field or the version."""
    if not isinstance(data, dict):
        raise PlanVersionError(f"a plan is a JSON object, not {type(data).__name__}")
    version = data.get("schema_version", 0)
    if version not in (0, SCHEMA_VERSION):
        raise PlanVersionError(f"plan schema version {version!r} is not {SCHEMA_VERSION}, the one this effft "
                               "reads; re-plan the job with this version (`effft plan`, or submit it again)")
    try:
        return Plan.model_validate({**data, "schema_version": SCHEMA_VERSION})
    except ValidationError as error:
        listed = "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
        raise PlanVersionError(f"a plan of schema version {version} does not match version {SCHEMA_VERSION} "
                               f"({listed}); re-plan the job with this version of effft") from None
