"""effft's training run vs a plain HF Trainer with identical settings, side by side in one process.

Both train the same tiny Llama (random weights) on the same packed blocks with the same seed, so
they see identical batches; effft adds its metrics (a record per step, token counting, memory and
MFU) and its sink. Printed: tokens/s of each, the ratio (goal >= 0.97) and the share of effft's
training time spent building and writing records (goal <= 1 %). Runs alternate to spread noise.

    .venv/bin/python bench/worker_overhead.py [--steps 40] [--repeats 6]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from planner import Inventory, cpu_with_memory, plan_job
from planner.spec import parse_job
from worker.example import write_datasets
from worker.model import load_tokenizer, prepare_model
from worker.sinks import JsonlSink
from worker.tiny import build_tiny_model, train_tokenizer
from worker.train import WorkerJob, prepare_data, train, training_arguments


def make_job(folder: Path, steps: int):
    paths = write_datasets(folder, rows=2000)
    texts = paths["chat"].read_text().splitlines()
    model_dir = build_tiny_model(folder / "model", train_tokenizer(texts, vocab_size=1024))
    spec = parse_job({"name": "bench", "model": str(model_dir), "dataset": str(paths["chat"]), "seq_len": 256,
                      "method": "lora", "micro_batch_size": 4,
                      "training": {"max_steps": steps, "effective_batch_size": 8, "checkpoint_every_steps": steps}})
    plan = plan_job(spec, Inventory.single(cpu_with_memory(16 * 2**30)))
    return WorkerJob(plan, str(folder / "out"), str(folder / "work"))


def effft_run(job: WorkerJob, folder: Path) -> tuple[float, float]:
    summary = train(job, JsonlSink(folder / "metrics.jsonl"))
    return summary["train_seconds"] / summary["step"], summary["report_share"]


def plain_run(job: WorkerJob) -> float:
    """The HF Trainer as its docs show it: default logging, no callbacks of ours, same arguments otherwise."""
    import torch
    from transformers import PrinterCallback, Trainer, default_data_collator

    settings = job.settings
    tokenizer = load_tokenizer(settings.model)
    _, blocks, _ = prepare_data(settings, tokenizer)
    torch.manual_seed(settings.training.seed)
    model = prepare_model(settings, torch.device("cpu"))
    args = training_arguments(job, settings.training.max_steps, torch.device("cpu"), evaluate=False)
    args.logging_steps, args.include_num_input_tokens_seen, args.disable_tqdm = 500, "no", True
    clock = _Clock()
    trainer = Trainer(model=model, args=args, train_dataset=blocks, data_collator=default_data_collator,
                      callbacks=[clock])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return clock.seconds / settings.training.max_steps


class _Clock(TrainerCallback):
    """Times what effft's summary times: from the Trainer's train-begin to its train-end event."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=6)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        job = make_job(folder, options.steps)
        tokens_per_step = job.settings.micro_batch_size * job.settings.gradient_accumulation_steps \
            * job.settings.seq_len
        effft_steps, plain_steps, shares = [], [], []
        plain_run(job)  # warm-up: first-touch costs land on neither side
        for repeat in range(options.repeats):
            if repeat % 2:  # alternate which side goes first: drift in machine speed then hits both
                plain_steps.append(plain_run(job))
            seconds, share = effft_run(job, folder)
            effft_steps.append(seconds)
            shares.append(share)
            if not repeat % 2:
                plain_steps.append(plain_run(job))
    effft_tps = tokens_per_step / statistics.median(effft_steps)
    plain_tps = tokens_per_step / statistics.median(plain_steps)
    print(f"steps {options.steps} x {options.repeats} repeats, {tokens_per_step} tokens a step (tiny Llama, LoRA, CPU)")
    print(f"plain HF Trainer : {plain_tps:10,.0f} tokens/s  (per run: "
          f"{', '.join(f'{tokens_per_step / s:,.0f}' for s in plain_steps)})")
    print(f"effft worker     : {effft_tps:10,.0f} tokens/s  (per run: "
          f"{', '.join(f'{tokens_per_step / s:,.0f}' for s in effft_steps)})")
    pairs = [p / e for p, e in zip(plain_steps, effft_steps, strict=True)]
    print(f"ratio effft/plain: {statistics.median(pairs):.3f} median of pairs "
          f"({', '.join(f'{r:.3f}' for r in pairs)}); of medians {effft_tps / plain_tps:.3f}   (goal >= 0.97)")
    print(f"reporting share  : {statistics.median(shares):.3%} of training time   (goal <= 1 %)")


if __name__ == "__main__":
    main()
