"""The job spec (job.yaml): one pydantic model, the same class in the CLI, the API and the worker.

Every `auto` is the planner's to decide; every concrete value is a pin the planner respects.
Unknown keys are rejected and every problem is reported at once, each with its field path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from planner.errors import FieldProblem, SpecError
from planner.spec_types import (
    MAX_BATCH,
    MAX_PATH_CHARS,
    MAX_STEPS,
    MAX_TOKENS,
    AutoBool,
    AutoInt,
    Names,
    Revision,
    StrictModel,
    Text,
    Whole,
)


class ModelSource(StrictModel):
    """Where the base model comes from."""

    path: Text(MAX_PATH_CHARS, 1)  # a Hugging Face id ("org/name") or a local folder
    revision: Revision | None = None  # a hub branch, tag or commit
    trust_remote_code: bool = False  # run the model's own Python code; operators may forbid it


class DatasetSpec(StrictModel):
    """The training data: JSONL, Parquet, text files, or a `datasets` id."""

    path: Text(MAX_PATH_CHARS, 1)
    format: Literal["auto", "text", "alpaca", "chat"] = "auto"
    text_field: Text(256, 1) = "text"  # the column read by the text format
    split: Text(256, 1) = "train"  # the split of a `datasets` id
    max_samples: Whole | None = Field(default=None, ge=1, le=1_000_000_000)


class LoraSpec(StrictModel):
    r: Whole = Field(default=16, ge=1, le=4096)
    alpha: float = Field(default=32, gt=0, le=65_536)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: Union[Literal["all-linear"], Names] = "all-linear"


class Ia3Spec(StrictModel):
    target_modules: Union[Literal["auto"], Names] = "auto"  # auto: peft's default for the model type
    feedforward_modules: Union[Literal["auto"], Names] = "auto"


class EvalSpec(StrictModel):
    fraction: float = Field(default=0.0, ge=0, lt=1)  # share of the dataset held out for eval
    every_steps: Whole | None = Field(default=None, ge=1, le=MAX_STEPS)  # None: only at the end
    exact_match: bool = False  # also generate answers for held-out rows and score them, before and after


class TrainingSpec(StrictModel):
    # for /docs and schema-driven clients: exactly one of the two (checked below for everyone else)
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["max_steps"], "properties": {"max_steps": {"type": "integer"}}},
        {"required": ["epochs"], "properties": {"epochs": {"type": "number"}}}]})

    max_steps: Whole | None = Field(default=None, ge=1, le=MAX_STEPS)  # optimizer steps; give this or epochs
    epochs: float | None = Field(default=None, gt=0, le=1000)
    effective_batch_size: Whole = Field(default=16, ge=1, le=MAX_BATCH)  # samples per optimizer step, over all GPUs
    learning_rate: float = Field(default=2.0e-4, gt=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup: float = Field(default=0.03, ge=0, le=MAX_STEPS)  # < 1: a share of the steps; >= 1: a number of steps
    weight_decay: float = Field(default=0.0, ge=0, le=10)
    max_grad_norm: float = Field(default=1.0, ge=0, le=1_000_000)
    seed: Whole = Field(default=42, ge=0, le=2**32 - 1)  # numpy seeds are 32-bit
    eval: EvalSpec = EvalSpec()
    checkpoint_every_steps: AutoInt() = "auto"  # auto: about every 10 minutes of predicted step time

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainingSpec:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of training.max_steps and training.epochs")
        if self.warmup >= 1 and self.warmup != int(self.warmup):
            raise ValueError("training.warmup >= 1 counts steps and must be a whole number")
        return self


class ResourcesSpec(StrictModel):
    gpus: AutoInt(1, 4096) = "auto"  # auto: every GPU of the chosen type that the cluster has
    gpu_type: Text(64, 1) | None = None  # e.g. "A100-80GB"; None: the type with the most memory
    max_memory_fraction: float = Field(default=0.9, gt=0, le=1)  # share of each GPU the plan may fill
    exclusive: bool = False  # whole GPUs even when the job's predicted memory leaves room for others


class OutputSpec(StrictModel):
    dir: Text(MAX_PATH_CHARS, 1) | None = None  # where the adapter or model is written; None: the service decides
    merge_adapter: bool = False  # also write the base model with the adapter merged in


class JobSpec(StrictModel):
    """A fine-tuning job. README documents every field."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelSource
    dataset: DatasetSpec
    seq_len: AutoInt(8, MAX_TOKENS) = "auto"
    packing: AutoBool = "auto"
    method: Literal["auto", "full", "lora", "qlora", "ia3"] = "auto"
    lora: LoraSpec = LoraSpec()
    ia3: Ia3Spec = Ia3Spec()
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    precision_recipe: Literal["auto", "amp", "pure"] = "auto"
    optimizer: Literal["auto", "adamw", "adamw_8bit", "paged_adamw_8bit"] = "auto"
    micro_batch_size: AutoInt(1, 65_536) = "auto"
    gradient_checkpointing: AutoBool = "auto"
    attention: Literal["auto", "sdpa", "flash_attention_2", "eager"] = "auto"
    training: TrainingSpec
    resources: ResourcesSpec = ResourcesSpec()
    # throughput: give up < 10 % of this job's tokens/s for a smaller memory share (more jobs packed per GPU);
    # auto: throughput while more jobs wait than GPUs are free (the scheduler says), else fastest
    objective: Literal["auto", "fastest", "least_memory", "throughput"] = "auto"
    # auto: replicate (DDP) where a replica fits, else FSDP; ddp / fsdp need resources.gpus >= 2; none: one GPU
    sharding: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    output: OutputSpec = OutputSpec()

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        # `model: org/name` and `dataset: file.jsonl` are shorthands for {path: ...}
        if isinstance(data, dict):
            data = dict(data)
            for key in ("model", "dataset"):
                if isinstance(data.get(key), str):
                    data[key] = {"path": data[key]}
        return data


def _cross_field_problems(spec: JobSpec) -> list[FieldProblem]:
    """Rules that span fields; pydantic has already checked each field alone."""
    problems = []
    if spec.precision_recipe == "pure" and spec.precision == "fp32":
        problems.append(FieldProblem("precision_recipe", "pure", "pure needs precision bf16 or fp16; "
                                     "use precision: bf16, or precision_recipe: auto"))
    if spec.precision_recipe == "pure" and spec.precision == "fp16":
        problems.append(FieldProblem("precision_recipe", "pure", "pure fp16 has no fp32 master weights for "
                                     "loss scaling and diverges; use precision_recipe: amp with fp16, or bf16"))
    if spec.method == "qlora" and spec.precision == "fp32":
        problems.append(FieldProblem("precision", "fp32",
                                     "QLoRA computes in 16-bit; use precision: auto, bf16 or fp16"))
    if isinstance(spec.micro_batch_size, int) and spec.micro_batch_size > spec.training.effective_batch_size:
        problems.append(FieldProblem("micro_batch_size", spec.micro_batch_size,
                                     f"larger than training.effective_batch_size "
                                     f"({spec.training.effective_batch_size}); lower it or raise the effective batch"))
    return problems


def _problem_from_pydantic(error: dict, root_keys: dict[str, Any]) -> FieldProblem:
    loc = [str(part) for part in error["loc"] if not str(part).startswith(("function-", "literal["))]
    field = ".".join(loc) or "<root>"
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        message = f"unknown key; allowed here: {', '.join(allowed)}"
    elif error["type"] == "missing":
        value = None
        message = "required; add it to the job spec"
    return FieldProblem(field, value, message)


def _allowed_keys(parent: list[str]) -> list[str]:
    model: type[BaseModel] = JobSpec
    for part in parent:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return sorted(model.model_fields)


def parse_job(data: Any) -> JobSpec:
    """Validate a mapping into a JobSpec, or raise SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError([FieldProblem("<root>", type(data).__name__, "a job spec must be a mapping of keys")])
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError([_problem_from_pydantic(e, data) for e in error.errors()]) from None
    problems = _cross_field_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec


def load_job(path: str | Path) -> JobSpec:
    """Read a job.yaml (safely, within the document limits) and validate it."""
    from planner.document import load_document

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SpecError([FieldProblem("<file>", str(path), f"cannot read the job file: {error.strerror}")]) from None
    return parse_job(load_document(raw, "<file>"))


def resolve_relative_paths(spec: JobSpec, base: Path) -> JobSpec:
    """Local model / dataset paths in a job file are relative to the file's folder when they exist there."""
    updates = {}
    for key in ("model", "dataset"):
        source = getattr(spec, key)
        candidate = (base / source.path).absolute()  # the server takes absolute paths only
        if not Path(source.path).is_absolute() and not Path(source.path).exists() and candidate.exists():
            updates[key] = source.model_copy(update={"path": str(candidate)})
    return spec.model_copy(update=updates) if updates else spec
