"""The job spec (job.yaml): one pydantic model, the same class in the CLI, the API and the worker.

Every `auto` is the planner's to decide; every concrete value is a pin the planner respects.
Unknown keys are rejected and every problem is reported at once, each with its field path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from planner.errors import FieldProblem, SpecError

Auto = Literal["auto"]


def _auto_or_positive_int(value: Any) -> Any:
    if value == "auto" or value is None:
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be 'auto' or a whole number >= 1")
    return value


def _auto_or_bool(value: Any) -> Any:
    if value == "auto" or value is None:
        return "auto"
    if not isinstance(value, bool):
        raise ValueError("must be 'auto', true or false")
    return value


AutoInt = Annotated[Union[Auto, int], BeforeValidator(_auto_or_positive_int)]
AutoBool = Annotated[Union[Auto, bool], BeforeValidator(_auto_or_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    """Where the base model comes from."""

    path: str = Field(min_length=1)  # a Hugging Face id ("org/name") or a local folder
    revision: str | None = None  # a hub branch, tag or commit
    trust_remote_code: bool = False  # run the model's own Python code; operators may forbid it


class DatasetSpec(_Strict):
    """The training data: JSONL, Parquet, text files, or a `datasets` id."""

    path: str = Field(min_length=1)
    format: Literal["auto", "text", "alpaca", "chat"] = "auto"
    text_field: str = "text"  # the column read by the text format
    split: str = "train"  # the split of a `datasets` id
    max_samples: int | None = Field(default=None, ge=1)


class LoraSpec(_Strict):
    r: int = Field(default=16, ge=1, le=4096)
    alpha: float = Field(default=32, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: Union[Literal["all-linear"], list[str]] = "all-linear"


class Ia3Spec(_Strict):
    target_modules: Union[Literal["auto"], list[str]] = "auto"  # auto: peft's default for the model type
    feedforward_modules: Union[Literal["auto"], list[str]] = "auto"


class EvalSpec(_Strict):
    fraction: float = Field(default=0.0, ge=0, lt=1)  # share of the dataset held out for eval
    every_steps: int | None = Field(default=None, ge=1)  # None: only at the end
    exact_match: bool = False  # also generate answers for held-out rows and score them, before and after


class TrainingSpec(_Strict):
    max_steps: int | None = Field(default=None, ge=1)  # optimizer steps; give this or epochs
    epochs: float | None = Field(default=None, gt=0)
    effective_batch_size: int = Field(default=16, ge=1)  # samples per optimizer step, over all GPUs
    learning_rate: float = Field(default=2.0e-4, gt=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup: float = Field(default=0.03, ge=0)  # < 1: a share of the steps; >= 1: a number of steps
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0)
    seed: int = 42
    eval: EvalSpec = EvalSpec()
    checkpoint_every_steps: AutoInt = "auto"  # auto: about every 10 minutes of predicted step time

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainingSpec:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of training.max_steps and training.epochs")
        if self.warmup >= 1 and self.warmup != int(self.warmup):
            raise ValueError("training.warmup >= 1 counts steps and must be a whole number")
        return self


class ResourcesSpec(_Strict):
    gpus: AutoInt = "auto"  # auto: every GPU of the chosen type that the cluster has
    gpu_type: str | None = None  # e.g. "A100-80GB"; None: the type with the most memory
    max_memory_fraction: float = Field(default=0.9, gt=0, le=1)  # share of each GPU the plan may fill


class OutputSpec(_Strict):
    dir: str | None = None  # where the adapter or model is written; None: the service decides
    merge_adapter: bool = False  # also write the base model with the adapter merged in


class JobSpec(_Strict):
    """A fine-tuning job. README documents every field."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelSource
    dataset: DatasetSpec
    seq_len: AutoInt = "auto"
    packing: AutoBool = "auto"
    method: Literal["auto", "full", "lora", "qlora", "ia3"] = "auto"
    lora: LoraSpec = LoraSpec()
    ia3: Ia3Spec = Ia3Spec()
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    precision_recipe: Literal["auto", "amp", "pure"] = "auto"
    optimizer: Literal["auto", "adamw", "adamw_8bit", "paged_adamw_8bit"] = "auto"
    micro_batch_size: AutoInt = "auto"
    gradient_checkpointing: AutoBool = "auto"
    attention: Literal["auto", "sdpa", "flash_attention_2", "eager"] = "auto"
    training: TrainingSpec
    resources: ResourcesSpec = ResourcesSpec()
    objective: Literal["fastest", "least_memory"] = "fastest"
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
    if isinstance(spec.seq_len, int) and spec.seq_len < 8:
        problems.append(FieldProblem("seq_len", spec.seq_len, "must be at least 8 tokens, or 'auto'"))
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
    """Read a job.yaml (safely) and validate it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError([FieldProblem("<file>", str(path), f"cannot read the job file: {error.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError([FieldProblem("<file>", str(path), f"not valid YAML: {error}")]) from None
    return parse_job(data)


def resolve_relative_paths(spec: JobSpec, base: Path) -> JobSpec:
    """Local model / dataset paths in a job file are relative to the file's folder when they exist there."""
    updates = {}
    for key in ("model", "dataset"):
        source = getattr(spec, key)
        candidate = base / source.path
        if not Path(source.path).is_absolute() and not Path(source.path).exists() and candidate.exists():
            updates[key] = source.model_copy(update={"path": str(candidate)})
    return spec.model_copy(update=updates) if updates else spec
