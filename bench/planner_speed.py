"""Plans per second over a set of jobs (goal: <= 20 ms a plan). Prints one line per job and a summary.

    .venv/bin/python bench/planner_speed.py
"""

from __future__ import annotations

import statistics
import time

from planner import Inventory, cpu_with_memory, load_profile, make_plan, parse_gpu_name, parse_job

JOBS = [
    ("meta-llama/Llama-3.2-1B", "A100-80GB", 1, {}),
    ("meta-llama/Llama-2-7b-hf", "RTX4090", 1, {}),
    ("meta-llama/Llama-2-13b-hf", "A10G", 1, {}),
    ("meta-llama/Llama-2-70b-hf", "H100-80GB", 8, {}),
    ("Qwen/Qwen2.5-7B", "L40S", 2, {"method": "lora"}),
    ("meta-llama/Llama-3.1-8B", "T4", 1, {"seq_len": 512}),  # at 1024 it no longer fits a T4 (13.4 > 13.3 GB)
    ("gpt2", "cpu", 1, {"method": "full"}),
]


def main(repeats: int = 20) -> None:
    timings = []
    for model, gpu, count, extra in JOBS:
        spec = parse_job({"name": "bench", "model": model, "dataset": "d.jsonl", "seq_len": 1024,
                          "training": {"max_steps": 100, "effective_batch_size": 16}, **extra})
        profile = load_profile(model)
        gpu_spec = parse_gpu_name(gpu) if gpu != "cpu" else cpu_with_memory(24 * 2**30)
        inventory = Inventory.single(gpu_spec, count)
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            plan = make_plan(spec, profile, inventory)
            samples.append(time.perf_counter() - started)
        median = statistics.median(samples)
        timings.append(median)
        print(f"{model:32s} {count} x {gpu:10s} -> {plan.settings.method:5s} mb {plan.settings.micro_batch_size}"
              f"  {median * 1000:6.2f} ms/plan")
    worst = max(timings)
    verdict = "met" if worst <= 0.02 else "MISSED"
    print(f"median over jobs {statistics.median(timings) * 1000:.2f} ms, worst {worst * 1000:.2f} ms, "
          f"{1 / statistics.median(timings):.0f} plans/s (goal: <= 20 ms a plan: {verdict})")


if __name__ == "__main__":
    main()
