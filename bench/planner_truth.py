"""Planner truth: predicted vs measured peak memory on hundreds of random architectures (CPU).

Each case: a random small model of a family, a random method and knobs, planned by `make_plan`
with every knob pinned and trained one steady-state step by the worker's own code (MemTracker
over forward, backward, clipping, AdamW, zero_grad). Prints every case, then per family x method
the median and worst |error| and the share under-predicted, and the totals against the targets
(median |error| <= 3 %, worst <= 8 %, none under by more than 3 %).

    python bench/planner_truth.py --cases 200 --seed 1 [--families llama,gpt2] [--methods full,lora]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from tests.planner.truth_grid import FAMILIES, METHODS, Chooser, draw_case, predict_and_measure  # noqa: E402


def summarize(rows: list[tuple[str, float]]) -> str:
    errors = [error for _, error in rows]
    absolute = [abs(error) for error in errors]
    under = sum(error < -0.03 for error in errors)
    return (f"{len(errors):4d} cases  median |err| {100 * statistics.median(absolute):5.2f} %  "
            f"worst |err| {100 * max(absolute):5.2f} %  under >3 %: {under} ({100 * under / len(errors):.1f} %)  "
            f"most under {100 * min(errors):+.2f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, help="also write every outcome as JSON lines here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import random

    rng = random.Random(args.seed)
    families, methods = args.families.split(","), args.methods.split(",")
    groups: dict[str, list[tuple[str, float]]] = defaultdict(list)
    over_budget = 0  # cases whose measured peak exceeds the plan's estimate + stated margin
    out = args.out.open("w") if args.out else None
    started = time.time()
    for index in range(args.cases):
        case = draw_case(Chooser.from_random(rng), families, methods)
        outcome = predict_and_measure(case)
        groups[f"{case.family} x {case.method}"].append((case.describe(), outcome.error))
        over_budget += outcome.predicted * (1 + outcome.margin) < outcome.measured
        print(f"{index + 1:4d} {100 * outcome.error:+6.2f} %  {case.describe()}  predicted "
              f"{outcome.predicted / 2**20:8.2f} MiB ({outcome.predicted_phase})  measured "
              f"{outcome.measured / 2**20:8.2f} MiB ({outcome.measured_phase})", flush=True)
        if out:
            out.write(outcome.to_json() + "\n")
    print(f"\n{args.cases} cases in {time.time() - started:.0f} s\n\nper family x method:")
    for group in sorted(groups):
        print(f"  {group:24s} {summarize(groups[group])}")
    every = [row for rows in groups.values() for row in rows]
    print(f"\nall: {summarize(every)}")
    print(f"measured above estimate + stated margin: {over_budget} of {len(every)}")
    errors = [error for _, error in every]
    met = (statistics.median(abs(e) for e in errors) <= 0.03 and max(abs(e) for e in errors) <= 0.08
           and min(errors) >= -0.03)
    print("targets (median <= 3 %, worst <= 8 %, none under > 3 %):", "met" if met else "NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
