"""Folding a GPU proof's measurements into the planner: its worker runs as calibration observations.

Each finished worker run (memory, speed and auto sections) carries the planner's raw prediction and
what it measured, in `planner.calibration.Observation`'s fields (tokens/s only where the run had the
device alone). Written as JSON lines, they are the calibration history `effft run` keeps
(`DATA_DIR/calibration-history.jsonl`), so `effft calibration --local` and every later plan on that
data dir apply them; the fitted factors are printed per (device, family, method, recipe).

    python -m bench.gpu_check.fold OUT [--history FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from planner.calibration import CalibrationTable, Observation


def read_observations(rows_file: Path) -> list[Observation]:
    observations = []
    for line in rows_file.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("observation"):
            observations.append(Observation(**row["observation"]))
    return observations


def factor_lines(observations: list[Observation]) -> list[str]:
    rows = CalibrationTable.from_observations(observations).rows()
    if not rows:
        return ["no finished worker run to fit a factor from"]
    return [f"{r['device']} {r['family']} {r['method']} ({r['recipe']}): memory x{r['memory']:.3f}, "
            f"tokens/s x{r['tokens_per_second']:.3f} from {r['runs']} run{'s' if r['runs'] > 1 else ''}" for r in rows]


def write_history(observations: list[Observation], path: Path) -> None:
    """Appended: the history keeps every run, as `effft run` does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as history:
        for observation in observations:
            history.write(json.dumps(asdict(observation)) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the GPU proof's OUT folder (its rows.jsonl)")
    parser.add_argument("--history", type=Path, help="append the observations to this calibration history file")
    args = parser.parse_args(argv)
    observations = read_observations(args.out / "rows.jsonl")
    print(f"{len(observations)} observations")
    for line in factor_lines(observations):
        print(f"  {line}")
    if args.history:
        write_history(observations, args.history)
        print(f"appended to {args.history}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
