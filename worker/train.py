"""One training run of a Plan with the HF Trainer: plain Python, the same on a Ray worker or alone.

Ray sets RANK / WORLD_SIZE / LOCAL_RANK and the process group; the Trainer (through accelerate)
picks them up and wraps the model in DDP or FSDP. Without them it is a single-process run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from planner.plan import Plan, RunSettings
from worker.budget import CapCallback, CappedTrainer, held_to_budget
from worker.data import TokenizedData, build_blocks, pad_token_id, tokenize_dataset
from worker.evaluate import exact_match
from worker.hardware import device_for_rank, mark_cpu_baseline, peak_flops_per_device, reset_peak_memory
from worker.memory_cap import MemoryCap, StepPosition
from worker.metrics import MetricsCallback, RunMeter
from worker.model import load_tokenizer, precision_of, prepare_model
from worker.ranks import fsdp_on_cpu
from worker.retention import DEFAULT_CHECKPOINTS_TO_KEEP, checkpoint_step
from worker.sinks import MetricsSink
from worker.summary import build_summary

OPTIMIZERS = {"adamw": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit"}


@dataclass(frozen=True)
class WorkerJob:
    plan: Plan  # the worker reads its settings and the predictions it reports beside what it measures
    output_dir: str  # the final adapter or model
    work_dir: str  # the Trainer's checkpoints on this node
    fresh_optimizer: bool = False  # a re-plan changed the optimizer: resume the weights, not its old state
    memory_safety: float | None = 0.95  # a steady step above this share of the budget re-plans; None: never
    memory_cap_bytes: int | None = None  # a packed job's share of its device; None: the plan's whole budget
    checkpoints_to_keep: int = DEFAULT_CHECKPOINTS_TO_KEEP  # the last N; the one resumed from is kept apart

    @property
    def settings(self) -> RunSettings:
        return self.plan.settings


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int
    local: int

    @classmethod
    def from_env(cls) -> Ranks:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def prepare_data(settings: RunSettings, tokenizer) -> tuple[TokenizedData, list[dict], list[dict]]:
    """Read, check, tokenize and block the dataset: every data error surfaces here, before the model loads."""
    training = settings.training
    data = tokenize_dataset(settings.dataset, tokenizer, training.eval.fraction,
                            training.seed)
    pad = pad_token_id(tokenizer)
    train = build_blocks(data.train, settings.seq_len, settings.packing, pad, "seq_len")
    held = build_blocks(data.eval, settings.seq_len, settings.packing, pad, "seq_len") if data.eval else []
    return data, train, held


def samples_per_step(settings: RunSettings, world: int) -> int:
    return settings.micro_batch_size * settings.gradient_accumulation_steps * world


def total_steps(settings: RunSettings, blocks: int, world: int) -> int:
    training = settings.training
    if training.max_steps is not None:
        return training.max_steps
    return max(1, math.ceil(training.epochs * blocks / samples_per_step(settings, world)))


def warmup_steps(warmup: float, steps: int) -> int:
    return int(warmup) if warmup >= 1 else math.ceil(warmup * steps)


def training_arguments(job: WorkerJob, steps: int, device: torch.device, evaluate: bool):
    from transformers import TrainingArguments

    settings, training = job.settings, job.settings.training
    amp = precision_of(settings).amp
    optimizer = OPTIMIZERS[settings.optimizer]
    if optimizer == "adamw_torch" and device.type == "cuda":
        optimizer = "adamw_torch_fused"  # one kernel for all parameters; what the planner assumes on GPUs
    every = training.eval.every_steps
    return TrainingArguments(
        output_dir=job.work_dir, max_steps=steps, per_device_train_batch_size=settings.micro_batch_size,
        per_device_eval_batch_size=settings.micro_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=training.learning_rate, lr_scheduler_type=training.scheduler,
        warmup_steps=warmup_steps(training.warmup, steps), weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm, seed=training.seed, data_seed=training.seed,
        bf16=amp == "bf16", fp16=amp == "fp16", optim=optimizer, use_cpu=device.type != "cuda",
        logging_steps=max(1, steps // 500), save_strategy="steps", save_steps=training.checkpoint_every_steps,
        save_total_limit=job.checkpoints_to_keep, eval_strategy="steps" if evaluate and every else "no",
        eval_steps=every,
        include_num_input_tokens_seen="non_padding", report_to="none", disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0, ddp_find_unused_parameters=False,
        **fsdp_arguments(settings))


def fsdp_arguments(settings: RunSettings) -> dict:
    if settings.sharding != "fsdp":
        return {}
    # wrap each decoder layer; use_orig_params keeps frozen and trainable weights in one flat group
    return {"fsdp": "full_shard auto_wrap",
            "fsdp_config": {"use_orig_params": True, "activation_checkpointing": False}}


@dataclass(frozen=True)
class Blocks:
    """What the Trainer reads: training and held-out blocks, and the dataset format they came from."""

    train: list[dict]
    eval: list[dict]
    format: str


def train(job: WorkerJob, sink: MetricsSink, callbacks: Sequence = (), resume_from: str | None = None,
          attempt: int = 0, wrap_trainer: Callable = lambda trainer: trainer, plan_attempt: int = 0) -> dict:
    """Run the plan to its last step; returns (and, on rank 0, writes) the summary record.

    The worker is held to the plan's memory budget (worker/memory_cap.py): running out raises
    `OutOfMemory` with the evidence, after rank 0 wrote it to the sink."""
    settings, ranks = job.settings, Ranks.from_env()
    device = device_for_rank(ranks.local)
    tokenizer = load_tokenizer(settings.model)
    data, train_blocks, eval_blocks = prepare_data(settings, tokenizer)
    mark_cpu_baseline()
    torch.manual_seed(settings.training.seed)  # the same adapter init on every rank
    model = prepare_model(settings, device)
    scoring = settings.training.eval.exact_match and ranks.rank == 0
    before = exact_match(model, tokenizer, data.eval_rows, data.format) if scoring and not resume_from else None
    trainer, meter, eval_loss = fit(job, sink, model, Blocks(train_blocks, eval_blocks, data.format), callbacks,
                                    resume_from, attempt, wrap_trainer, plan_attempt)
    trainer.save_model(job.output_dir)
    # a sharded model computes only with every rank: each one generates the same answers, rank 0 reports them
    sharded = settings.sharding == "fsdp" and ranks.world > 1 and settings.training.eval.exact_match
    after = exact_match(trainer.model, tokenizer, data.eval_rows, data.format) if scoring or sharded else None
    summary = build_summary(job, trainer, meter, eval_loss, before, after)
    if ranks.rank == 0:
        tokenizer.save_pretrained(job.output_dir)
        summary.update(_merge_if_asked(settings, Path(job.output_dir)))
        sink.write(summary)
    return summary


def fit(job: WorkerJob, sink: MetricsSink, model, blocks: Blocks, callbacks: Sequence = (),
        resume_from: str | None = None, attempt: int = 0, wrap_trainer: Callable = lambda trainer: trainer,
        plan_attempt: int = 0) -> tuple:
    """Train a prepared model on prepared blocks under the plan's budget, measured as every run is;
    returns (trainer, meter, eval loss). bench/gpu_check calls it with a model built from a config."""
    from transformers import default_data_collator

    settings, ranks = job.settings, Ranks.from_env()
    device = device_for_rank(ranks.local)
    steps = total_steps(settings, len(blocks.train), ranks.world)
    meter = RunMeter(total_steps=steps, samples_per_step=samples_per_step(settings, ranks.world),
                     model_flops_per_token=job.plan.throughput.model_flops_per_token,
                     peak_flops=peak_flops_per_device(device, settings.precision) * ranks.world,
                     predicted_peak_bytes=job.plan.memory.total,
                     predicted_tokens_per_second=job.plan.throughput.tokens_per_second,
                     device=device, attempt=attempt, plan_attempt=plan_attempt)
    if ranks.rank == 0:
        sink.write({"kind": "start", "total_steps": steps, "train_blocks": len(blocks.train),
                    "eval_blocks": len(blocks.eval), "format": blocks.format, "world_size": ranks.world,
                    "resumed_from": resume_from, "resumed_step": checkpoint_step(resume_from), "attempt": attempt,
                    "plan_attempt": plan_attempt, "device": str(device),
                    "micro_batch_size": settings.micro_batch_size,
                    "gradient_accumulation_steps": settings.gradient_accumulation_steps})
    position = StepPosition()
    cap = MemoryCap(job.memory_cap_bytes or job.plan.memory.budget, device, position, job.memory_safety)
    trainer = wrap_trainer(CappedTrainer(
        position, sink, model=model, args=training_arguments(job, steps, device, bool(blocks.eval)),
        train_dataset=blocks.train, eval_dataset=blocks.eval or None, data_collator=default_data_collator,
        callbacks=[MetricsCallback(sink, meter), *_tensor_peak(device, meter),
                   CapCallback(cap, meter, job.plan.memory.budgeted), *callbacks]))
    if ranks.world == 1:
        _no_ddp_for_one_process(trainer)
    else:
        fsdp_on_cpu(trainer)
    reset_peak_memory(device)
    with held_to_budget(cap, job.plan, model, sink if ranks.rank == 0 else None):
        trainer.train(resume_from_checkpoint=resume_from)
        # past the safety line the run saved and stopped: leaving the block raises for a re-plan, no eval first
        eval_loss = trainer.evaluate()["eval_loss"] if blocks.eval and cap.pressure is None else None
    return trainer, meter, eval_loss


def _no_ddp_for_one_process(trainer) -> None:
    """A single Ray worker on a CPU has a process group, and accelerate's MULTI_CPU path wraps any model in DDP
    then: a one-rank all-reduce, and gradient buckets alive through the whole step that a one-device plan does
    not count. One process is no data parallelism: train it as a plain model (on a GPU accelerate already does)."""
    from accelerate.utils import DistributedType

    if trainer.accelerator.distributed_type == DistributedType.MULTI_CPU:
        trainer.accelerator.state.distributed_type = DistributedType.NO


def _tensor_peak(device: torch.device, meter: RunMeter) -> list:
    """The CPU's measured peak comes from tracking one step (worker/tensor_peak.py); CUDA counts its own."""
    if device.type == "cuda":
        return []
    from worker.tensor_peak import TensorPeakCallback

    return [TensorPeakCallback(meter)]


def _merge_if_asked(settings: RunSettings, output_dir: Path) -> dict:
    if not settings.output.merge_adapter or settings.method == "full":
        return {}
    from worker.artifacts import merge_adapter

    return {"merged_dir": str(merge_adapter(settings, output_dir, output_dir / "merged"))}
