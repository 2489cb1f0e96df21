"""Calibration replayed: runs of several shapes, each planned raw and then calibrated from the runs before it.

For each shape (a tiny model of a family, a method, a micro-batch and sequence length), the worker's
own `train` runs the plan twice on this CPU. The first run of a shape is planned with the table fitted
from every earlier run (none of its own kind yet); the second with that table plus the first run. The
table prints, per run, the raw model's error and the calibrated plan's error against what the run
measured (peak memory in the planner's unit and tokens/s of the steady steps), then the median |error|
before and after calibration.

    .venv/bin/python bench/calibration.py [--steps 8]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner import Inventory, cpu_with_memory, plan_job  # noqa: E402
from planner.calibration import CalibrationTable  # noqa: E402
from planner.spec import parse_job  # noqa: E402
from worker.example import write_datasets  # noqa: E402
from worker.sinks import ListSink  # noqa: E402
from worker.tiny import build_tiny_model, train_tokenizer  # noqa: E402
from worker.train import WorkerJob, train  # noqa: E402

CPU = cpu_with_memory(16 * 2**30)
SHAPES = [  # (name, model shape, method, micro-batch, seq_len)
    ("llama h64 lora", {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2}, "lora", 1, 64),
    ("llama h128 lora", {"hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2}, "lora", 2, 128),
    ("llama h64 full", {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2}, "full", 2, 64),
    ("llama h128 full", {"hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 3}, "full", 1, 128),
]


def job_spec(model: Path, data: Path, method: str, micro_batch: int, seq_len: int, steps: int):
    return parse_job({"name": "calibration", "model": str(model), "dataset": {"path": str(data)}, "seq_len": seq_len,
                      "method": method, "micro_batch_size": micro_batch, "precision": "fp32",
                      "training": {"max_steps": steps, "effective_batch_size": micro_batch * 2,
                                   "learning_rate": 1e-3}})


def error(predicted: float, measured: float) -> float:
    return predicted / measured - 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    observations, rows = [], []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "data").mkdir()
        data = write_datasets(root / "data", 400)["chat"]
        tokenizer = train_tokenizer([line for line in data.read_text().splitlines()], vocab_size=512)
        for name, shape, method, micro_batch, seq_len in SHAPES:
            model = build_tiny_model(root / name.replace(" ", "-"), tokenizer,
                                     {**shape, "num_attention_heads": 4, "num_key_value_heads": 2})
            spec = job_spec(model, data, method, micro_batch, seq_len, args.steps)
            for attempt in (1, 2):
                table = CalibrationTable.from_observations(observations)
                raw = plan_job(spec, Inventory.single(CPU))
                calibrated = plan_job(spec, Inventory.single(CPU), calibration=table)
                summary = train(WorkerJob(calibrated, str(root / "out" / name / str(attempt)),
                                          str(root / "work" / name / str(attempt))), ListSink())
                measured_bytes, measured_speed = summary["memory_peak_bytes"], summary["tokens_per_second"]
                rows.append((f"{name} #{attempt}", error(raw.memory.total, measured_bytes),
                             error(calibrated.memory.total, measured_bytes),
                             error(raw.throughput.tokens_per_second, measured_speed),
                             error(calibrated.throughput.tokens_per_second, measured_speed)))
                print(f"{rows[-1][0]:22s} memory {100 * rows[-1][1]:+7.2f} % -> {100 * rows[-1][2]:+7.2f} %   "
                      f"tokens/s {100 * rows[-1][3]:+7.2f} % -> {100 * rows[-1][4]:+7.2f} %", flush=True)
                observations.append(calibrated.observation(measured_bytes, measured_speed))
    second = [row for row in rows if row[0].endswith("#2")]
    for label, chosen in (("all runs", rows), ("second runs of a shape", second)):
        medians = [statistics.median(abs(row[i]) for row in chosen) for i in (1, 2, 3, 4)]
        print(f"\n{label}: median |error| memory {100 * medians[0]:.2f} % raw -> {100 * medians[1]:.2f} % "
              f"calibrated; tokens/s {100 * medians[2]:.2f} % raw -> {100 * medians[3]:.2f} % calibrated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
