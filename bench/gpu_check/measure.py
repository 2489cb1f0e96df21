"""What a child process runs: one measured training run, three ways.

- `worker`: effft's own path: `prepare_model` from the plan, `worker.train.fit` (the HF Trainer with
  effft's callbacks, held to a memory cap) and the worker's end-of-run summary.
- `plain`: the same prepared model and `training_arguments`, in a plain HF Trainer (no effft callbacks,
  no cap): what effft's worker costs over it.
- `naive`: an HF Trainer's defaults as a first attempt writes them: fp32 weights under bf16 autocast,
  eager attention, no checkpointing, no packing (each example padded), peft's adapter on it.

Each returns a flat dict of measurements; an out-of-memory ends the run as a row, not a crash.
"""

from __future__ import annotations

import tempfile

import torch

from bench.gpu_check.build import packed_blocks, padded_blocks, random_base_model, random_model, release_build_memory
from bench.gpu_check.clock import NoSave, StepClock
from planner.plan import load_plan
from worker.hardware import device_for_rank, mark_cpu_baseline, peak_memory, reset_peak_memory
from worker.model import adapter_config, prepare_model

CPU_N_A = "n/a on CPU"  # what a CUDA-only reading says on a CPU run


def _device_memory(device: torch.device) -> dict:
    """The allocator's peaks on a GPU; on a CPU the RSS growth (the tensor-byte peak comes from the worker)."""
    readings = peak_memory(device)
    if device.type == "cuda":
        return {"measured_reserved": readings["memory_peak_bytes"],
                "measured_allocated": readings["memory_peak_allocated_bytes"], "metric": "cuda max_memory_reserved"}
    return {"measured_reserved": CPU_N_A, "measured_allocated": CPU_N_A,
            "rss_growth": readings["memory_rss_growth_bytes"], "metric": "cpu tensor bytes"}


def _built_model(job: dict, settings, device: torch.device):
    """The job's model from its config with random weights, prepared as the worker does; its OOM row if the
    build runs out."""
    try:
        model = prepare_model(settings, device, base=random_base_model(settings, job["config"], device))
    except torch.OutOfMemoryError as error:
        return _oom_row(error, device, "build")
    release_build_memory(device)
    return model


def _oom_row(error: BaseException, device: torch.device, where: str) -> dict:
    """Out of memory (the allocator or the worker's cap refused), or `pressure`: a steady step passed the
    worker's safety line, so it stopped to be re-planned."""
    evidence = getattr(error, "evidence", None)
    outcome = "pressure" if evidence and evidence.get("kind") == "pressure" else "OOM"
    return {"outcome": outcome, "oom_where": where, "oom_evidence": evidence, "error": str(error)[:300],
            **_device_memory(device)}


def quant_state_bytes(model) -> int:
    """4-bit weights keep their scales and code tables outside the parameters; the plan counts them as weights.
    Each is reached twice (through peft's wrapper and its base layer): counted once per storage."""
    from worker.memprobe import quant_state_tensors

    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in quant_state_tensors(model)}
    return sum(storages.values())


def _blocks_for(job: dict, plan, packed: bool, micro_batch: int, accumulation: int) -> list[dict]:
    """Enough random blocks for every step's micro-batches."""
    settings = plan.settings
    make = packed_blocks if packed else padded_blocks
    return make(job["steps"] * micro_batch * accumulation, settings.seq_len, job["config"]["vocab_size"],
                seed=settings.training.seed)


def worker_run(job: dict) -> dict:
    from worker.budget import OutOfMemory
    from worker.sinks import ListSink
    from worker.summary import build_summary
    from worker.train import Blocks, WorkerJob, fit

    plan, device = load_plan(job["plan"]), device_for_rank(0)
    settings = plan.settings
    mark_cpu_baseline()
    torch.manual_seed(settings.training.seed)
    model = _built_model(job, settings, device)
    if isinstance(model, dict):  # the build itself ran out: its row
        return model
    blocks = Blocks(_blocks_for(job, plan, True, settings.micro_batch_size, settings.gradient_accumulation_steps),
                    [], "random token ids")
    clock = StepClock(device, job["warmup"])
    with tempfile.TemporaryDirectory() as folder:
        # memory rows: the cap and safety line the task names; speed and auto: the worker's own (the plan's budget)
        run = WorkerJob(plan, folder, folder, **job.get("worker_overrides", {}))
        try:
            trainer, meter, _ = fit(run, ListSink(), model, blocks, callbacks=[clock, NoSave()])
        except OutOfMemory as error:
            return _oom_row(error, device, "train")
        summary = build_summary(run, trainer, meter, None, None, None)
    memory = _device_memory(device)
    measured = summary["memory_peak_bytes"]  # CUDA max reserved, or the CPU's tensor-byte peak: what was planned
    terms = {**summary["measured_terms"]}
    terms["weights"] += quant_state_bytes(trainer.model)
    return {"outcome": "ok", **memory, "measured_peak": measured, "measured_terms": terms,
            "tokens_per_second": clock.tokens_per_second(), "timed_steps": clock.timed_steps,
            "worker_tokens_per_second": summary["tokens_per_second"], "steps": summary["step"]}


def plain_run(job: dict) -> dict:
    """The prepared model in a plain HF Trainer with effft's TrainingArguments."""
    from transformers import Trainer, default_data_collator

    from worker.train import WorkerJob, training_arguments

    plan, device = load_plan(job["plan"]), device_for_rank(0)
    settings = plan.settings
    torch.manual_seed(settings.training.seed)
    model = _built_model(job, settings, device)
    if isinstance(model, dict):  # the build itself ran out: its row
        return model
    blocks = _blocks_for(job, plan, True, settings.micro_batch_size, settings.gradient_accumulation_steps)
    clock = StepClock(device, job["warmup"])
    with tempfile.TemporaryDirectory() as folder:
        args = training_arguments(WorkerJob(plan, folder, folder), job["steps"], device, False)
        trainer = Trainer(model=model, args=args, train_dataset=blocks, data_collator=default_data_collator,
                          callbacks=[clock, NoSave()])
        return _timed_train(trainer, clock, device)


def naive_run(job: dict) -> dict:
    """What a first attempt with the HF Trainer's defaults does with the same model, batch and steps."""
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments, default_data_collator

    plan, device = load_plan(job["plan"]), device_for_rank(0)
    settings = plan.settings
    torch.manual_seed(settings.training.seed)
    try:
        model = random_model(job["config"], torch.float32, "eager", device)
        if settings.method != "full":
            model = get_peft_model(model, adapter_config(settings))
    except torch.OutOfMemoryError as error:
        return _oom_row(error, device, "build")
    micro_batch, accumulation = job["micro_batch"], job["accumulation"]
    blocks = _blocks_for(job, plan, False, micro_batch, accumulation)
    clock = StepClock(device, job["warmup"])
    with tempfile.TemporaryDirectory() as folder:
        # defaults but for what a run must say (steps, batch, bf16 where the GPU has it); the token count and
        # keeping the columns only let the clock count real tokens, nothing that changes the speed
        args = TrainingArguments(output_dir=folder, max_steps=job["steps"], per_device_train_batch_size=micro_batch,
                                 gradient_accumulation_steps=accumulation, bf16=device.type == "cuda",
                                 use_cpu=device.type != "cuda", learning_rate=settings.training.learning_rate,
                                 seed=settings.training.seed, report_to="none", save_strategy="no",
                                 include_num_input_tokens_seen="non_padding", remove_unused_columns=False,
                                 disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=blocks, data_collator=default_data_collator,
                          callbacks=[clock])
        row = _timed_train(trainer, clock, device)
    return {**row, "micro_batch": micro_batch, "accumulation": accumulation}


def _timed_train(trainer, clock: StepClock, device: torch.device) -> dict:
    reset_peak_memory(device)
    try:
        trainer.train()
    except torch.OutOfMemoryError as error:
        return _oom_row(error, device, "train")
    return {"outcome": "ok", **_device_memory(device), "tokens_per_second": clock.tokens_per_second(),
            "timed_steps": clock.timed_steps}
