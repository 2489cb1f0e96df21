"""The raw tables under OUT, rewritten as each run ends (a run cut short still leaves every finished row).

At most 8 files come back from the device machine, each at most 2 folders down: anchor.csv,
memory.csv, speed.csv, auto_choice.csv, rows.jsonl (every result in full), summary.md, and the
shell script's log.txt.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from planner.memory import TERMS

N_A = "n/a"  # a reading that does not exist for this row (an OOM has no steady peak; a CPU no allocator)

MEMORY_COLUMNS = (
    "id", "label", "model", "method", "checkpointing", "seq_len", "micro_batch", "recipe", "optimizer", "attention",
    "planner_fits", "outcome", "metric", "predicted_bytes", "measured_peak", "peak_error", "predicted_budgeted",
    "measured_reserved", "measured_allocated", "budget", "cap_bytes",
    "stored_weights", "measured_weights", "stored_optimizer", "measured_optimizer", "measured_gradients",
    *(f"predicted_{term}" for term in TERMS), "predicted_phase",
    "worker_tokens_per_second", "ran_alone", "tries", "seconds", "note",
)
SPEED_COLUMNS = (
    "id", "label", "variant", "recipe", "attention", "packing", "checkpointing", "micro_batch", "accumulation",
    "outcome", "tokens_per_second", "timed_steps", "mfu", "mfu_vs_matmul", "predicted_tokens_per_second",
    "measured_over_predicted", "measured_peak", "measured_reserved", "measured_allocated", "seconds", "note",
)
AUTO_COLUMNS = (
    "id", "label", "chosen_method", "chosen_micro_batch", "checkpointing", "micro_batch", "is_choice",
    "largest_fitting_micro_batch", "outcome", "tokens_per_second", "predicted_tokens_per_second", "mfu",
    "measured_peak", "predicted_bytes", "predicted_budgeted", "seconds", "note",
)
ANCHOR_COLUMNS = ("device_name", "device_total_bytes", "catalog_name", "catalog_memory_bytes", "catalog_peak_flops",
                  "matmul", "matmul_flops", "matmul_over_peak", "planner_matmul_efficiency", "versions", "outcome",
                  "seconds", "note")


def merged_row(task, result: dict, peak_flops: float, matmul_flops: float | None) -> dict:
    """The task's known columns, the child's measurements and what follows from them; the Plan object stays out.

    MFU: the plan's model FLOPs per token x tokens/s, over the device's peak as effft's metrics read it
    (`mfu`: the catalog's on a GPU, the measured matmul on a CPU) and over the matmul measured here."""
    row = {"id": task.id, **{k: v for k, v in task.row.items() if k != "plan"}, **result}
    terms = result.get("measured_terms") or {}
    for term in ("weights", "gradients", "optimizer"):
        row[f"measured_{term}"] = terms.get(term, N_A)
    if "measured_peak" not in row and result.get("outcome") == "ok":
        row["measured_peak"] = row.get("measured_reserved", N_A)  # a plain or naive Trainer: the allocator's peak
    row["peak_error"] = _ratio(row.get("measured_peak"), row.get("predicted_bytes"), minus_one=True)
    speed, flops = row.get("tokens_per_second"), row.get("model_flops_per_token")
    row["mfu"] = _ratio(_product(speed, flops), peak_flops)
    row["mfu_vs_matmul"] = _ratio(_product(speed, flops), matmul_flops)
    row["measured_over_predicted"] = _ratio(speed, row.get("predicted_tokens_per_second"))
    row["note"] = _note(row)
    return row


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _product(a, b):
    return a * b if _number(a) and _number(b) else None


def _ratio(a, b, minus_one: bool = False):
    """a / b (- 1: + means the plan predicted too little); n/a where either is missing."""
    if _number(a) and _number(b) and b > 0:
        return a / b - (1 if minus_one else 0)
    return N_A


def _note(row: dict) -> str:
    parts = [row["note"]] if row.get("note") else []
    if row.get("outcome") in ("OOM", "pressure"):
        evidence = row.get("oom_evidence") or {}
        parts.append(f"{row['outcome']} in {row.get('oom_where')}: peak {evidence.get('peak_bytes', N_A)} "
                     f"of limit {evidence.get('limit_bytes', N_A)} at step {evidence.get('step', N_A)}")
    elif row.get("outcome") not in ("ok", None) and row.get("error"):
        parts.append(str(row["error"]))
    return "; ".join(parts)


def with_observation(row: dict, plan) -> dict:
    """What calibration learns from a finished worker run (bench/gpu_check/fold.py): memory from every run,
    tokens/s only from runs that had the device alone."""
    if row.get("outcome") != "ok" or not isinstance(row.get("measured_peak"), int):
        return row
    speed = row.get("tokens_per_second") if row.get("ran_alone") and row.get("timed_steps") else None
    observation = plan.observation(row["measured_peak"], speed)
    return {**row, "observation": asdict(observation) if observation else None}


class Tables:
    """One CSV per section and rows.jsonl, kept on disk as rows arrive."""

    def __init__(self, out: Path):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, list[dict]] = {"anchor": [], "memory": [], "speed": [], "auto": []}
        (out / "rows.jsonl").write_text("")

    def add(self, section: str, row: dict) -> None:
        self.rows[section].append(row)
        with (self.out / "rows.jsonl").open("a") as lines:
            lines.write(json.dumps({"section": section, **row}, default=str) + "\n")
        self.write_csv(section)

    def write_csv(self, section: str) -> None:
        name, columns = {"anchor": ("anchor.csv", ANCHOR_COLUMNS), "memory": ("memory.csv", MEMORY_COLUMNS),
                         "speed": ("speed.csv", SPEED_COLUMNS), "auto": ("auto_choice.csv", AUTO_COLUMNS)}[section]
        with (self.out / name).open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore", restval=N_A)
            writer.writeheader()
            for row in self.rows[section]:
                writer.writerow({k: _cell(row.get(k, N_A)) for k in columns})


def _cell(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return N_A if value is None else value
