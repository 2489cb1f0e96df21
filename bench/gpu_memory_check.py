"""Measured vs predicted GPU memory and speed over a grid of real training runs (needs a CUDA GPU).

Each config runs a few steps of the worker's own training code (worker.train.train, without
Ray) on a model built from a known config with random weights, in its own process so that every
peak starts clean and an OOM costs one row. Recorded per config: torch.cuda.max_memory_reserved
(what the planner predicts) and max_memory_allocated, tokens/s, the planner's terms and total,
and the terms that can be counted tensor by tensor. Printed as a table; written as JSON.

    python bench/gpu_memory_check.py [--quick] [--steps 3] [--out bench/results/gpu_memory.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

MODELS = ["Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.1-8B"]
METHODS = ["full", "lora", "qlora"]
SHAPES = [  # (gradient checkpointing, seq_len, micro-batch)
    (False, 512, 4), (True, 2048, 2), (True, 4096, 1), (False, 1024, 8),
]
QUICK_SHAPES = [(False, 512, 4), (True, 2048, 2)]


def grid(quick: bool) -> list[dict]:
    configs = []
    for model, method, (checkpointing, seq_len, micro) in itertools.product(MODELS, METHODS,
                                                                           QUICK_SHAPES if quick else SHAPES):
        configs.append({"model": model, "method": method, "gradient_checkpointing": checkpointing,
                        "seq_len": seq_len, "micro_batch_size": micro})
    return configs


def model_folder(model: str, root: Path) -> Path:
    """A random-weight copy of the model (bf16) with a locally trained tokenizer; made once, reused."""
    folder = root / model.replace("/", "--")
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from planner.known_models import KNOWN_CONFIGS
    from worker.synthetic import WORDS
    from worker.tiny import train_tokenizer

    config = dict(KNOWN_CONFIGS[model])
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    network = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    network.save_pretrained(folder)
    train_tokenizer([" ".join(WORDS)] * 50, vocab_size=1024).save_pretrained(folder)
    return folder


def dataset(root: Path, tokens: int) -> Path:
    """Plain text long enough for every step's blocks to be full (packing)."""
    import random

    from worker.synthetic import WORDS

    path = root / "text.jsonl"
    rng = random.Random(0)
    rows = [{"text": " ".join(rng.choice(WORDS) for _ in range(200))} for _ in range(max(50, tokens // 200))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_one(config: dict, root: Path, steps: int) -> dict:
    import torch

    from planner import Inventory, cpu_with_memory, parse_gpu_name, plan_job
    from planner.spec import parse_job
    from worker.sinks import ListSink
    from worker.train import WorkerJob, train

    folder = model_folder(config["model"], root / "models")
    data = dataset(root, steps * config["micro_batch_size"] * config["seq_len"] * 2)
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        gpu = parse_gpu_name(properties.name, properties.total_memory)
    else:  # a smoke run of one config on the CPU (`--one`): the same code path, CPU numbers
        gpu = cpu_with_memory(16 * 2**30)
    spec = parse_job({"name": "memcheck", "model": str(folder), "dataset": str(data), "seq_len": config["seq_len"],
                      "method": config["method"], "micro_batch_size": config["micro_batch_size"],
                      "gradient_checkpointing": config["gradient_checkpointing"], "packing": True,
                      "training": {"max_steps": steps, "effective_batch_size": config["micro_batch_size"],
                                   "checkpoint_every_steps": 10**6}})
    plan = plan_job(spec, Inventory.single(gpu, 1))
    summary = train(WorkerJob(plan, str(root / "out"), str(root / "work")), ListSink())
    return {**config, "gpu": gpu.name, "settings": {k: plan.settings[k] for k in
                                                    ("precision", "precision_recipe", "optimizer", "attention")},
            "predicted": summary["predicted_terms"], "measured_reserved": summary["memory_peak_bytes"],
            "measured_allocated": summary["memory_peak_allocated_bytes"], "counted": summary["measured_terms"],
            "tokens_per_second": summary["tokens_per_second"],
            "predicted_tokens_per_second": summary["predicted_tokens_per_second"], "mfu": summary["mfu"]}


def run_isolated(config: dict, root: Path, steps: int, timeout: int) -> dict:
    command = [sys.executable, __file__, "--one", json.dumps(config), "--root", str(root), "--steps", str(steps)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**config, "error": f"timeout after {timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
    return {**config, "error": "OOM" if "OutOfMemoryError" in done.stderr else tail[0][:200]}


def table(rows: list[dict]) -> str:
    gib = 2**30
    lines = [f"{'model':<26}{'method':<7}{'gc':<4}{'seq':>6}{'mb':>4}{'pred GiB':>10}{'reserved':>10}{'alloc':>9}"
             f"{'res/pred':>9}{'tok/s':>9}{'pred tok/s':>11}"]
    for r in rows:
        head = f"{r['model']:<26}{r['method']:<7}{'y' if r['gradient_checkpointing'] else 'n':<4}" \
               f"{r['seq_len']:>6}{r['micro_batch_size']:>4}"
        if "error" in r:
            lines.append(f"{head}  {r['error']}")
            continue
        predicted = r["predicted"]["total"]
        lines.append(f"{head}{predicted / gib:>10.2f}{r['measured_reserved'] / gib:>10.2f}"
                     f"{r['measured_allocated'] / gib:>9.2f}{r['measured_reserved'] / predicted:>9.3f}"
                     f"{r['tokens_per_second']:>9,.0f}{r['predicted_tokens_per_second']:>11,.0f}")
    ratios = [r["measured_reserved"] / r["predicted"]["total"] for r in rows if "error" not in r]
    if ratios:
        ratios.sort()
        lines.append(f"reserved / predicted over {len(ratios)} runs: median {ratios[len(ratios) // 2]:.3f}, "
                     f"min {ratios[0]:.3f}, max {ratios[-1]:.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="24 configs (2 shapes) instead of 48")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--root", default="/tmp/effft-memcheck")
    parser.add_argument("--out", default="bench/results/gpu_memory.json")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    options = parser.parse_args()
    root = Path(options.root)
    if options.one:
        print("RESULT " + json.dumps(run_one(json.loads(options.one), root, options.steps)), flush=True)
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/gpu_memory_check.py needs a CUDA GPU; this machine has none")
    rows, started = [], time.time()
    for config in grid(options.quick):
        rows.append(run_isolated(config, root, options.steps, options.timeout))
        print(json.dumps({k: rows[-1].get(k) for k in ("model", "method", "seq_len", "micro_batch_size",
                                                        "measured_reserved", "error")}), flush=True)
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(rows, indent=2))
    print(table(rows))
    print(f"{len(rows)} configs in {time.time() - started:.0f} s; JSON: {options.out}")


if __name__ == "__main__":
    main()
