"""`python -m bench.chaos [--db both|sqlite|postgres] [--jobs 4] [--steps 40] [--api-kills 10] [--out DIR]`

Root is needed for the tmpfs that is filled (mount); without it the disk fault is skipped and the table says
so. Writes the tables to OUT/chaos_<db>.txt (default bench/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.chaos.drill import Drill, job_specs, reference, run_drill
from bench.chaos.env import Server, can_mount_tmpfs
from bench.chaos.report import collect, table

ROOT = Path(__file__).resolve().parents[2]


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_example(folder: Path) -> Path:
    """The tiny model and data set, made once offline (init-example) and shared by the reference and every drill."""
    example = folder / "example"
    Server(folder, "sqlite://", 0).cli("init-example", str(example))
    return example


def run(database: str, folder: Path, example: Path, specs: list[dict], references: dict, options) -> dict:
    drill = Drill(folder / database, example, database, seed=options.seed, say=say)
    disk_mb = options.disk_mb if can_mount_tmpfs() else None
    drill.start(disk_mb)
    try:
        ids = run_drill(drill, specs, options.api_kills, (options.kill_gap_min, options.kill_gap_max),
                        options.disk_hold, options.pg_down)
        result = collect(drill, specs, ids, references)
    finally:
        drill.close()
    if disk_mb is None:
        result["faults"].append({"fault": "run disk full", "at_s": 0.0, "target": "-", "recovery_s": None,
                                 "judged_by": "skipped:", "note": "mounting a tmpfs needs root"})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("both", "sqlite", "postgres"), default="both")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--api-kills", type=int, default=10)
    parser.add_argument("--kill-gap-min", type=float, default=3.0)
    parser.add_argument("--kill-gap-max", type=float, default=15.0)
    parser.add_argument("--disk-mb", type=int, default=128, help="the tmpfs the run folders live on")
    parser.add_argument("--disk-hold", type=float, default=10.0, help="seconds the disk stays full")
    parser.add_argument("--pg-down", type=float, default=5.0, help="seconds Postgres stays stopped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped drill still unmounts and stops its server
    folder = Path(tempfile.mkdtemp(prefix="effft-chaos-"))
    example = build_example(folder)
    specs = job_specs(example, options.jobs, options.steps)
    say(f"reference: {len(specs)} jobs, no faults")
    references = reference(folder / "reference", example, specs, say)
    ok = True
    for database in ("sqlite", "postgres") if options.db == "both" else (options.db,):
        say(f"drill on {database}")
        result = run(database, folder, example, specs, references, options)
        header = (f"effft chaos drill ({database}): {options.jobs} LoRA jobs x {options.steps} steps, "
                  f"{options.api_kills} API kills; {os.cpu_count()} cores; "
                  f"`python -m bench.chaos --db {database} --jobs {options.jobs} --steps {options.steps}`")
        report = table(result, header)
        print(report, flush=True)
        options.out.mkdir(parents=True, exist_ok=True)
        (options.out / f"chaos_{database}.txt").write_text(report + "\n")
        (options.out / f"chaos_{database}.json").write_text(json.dumps(result, indent=1) + "\n")
        ok = ok and result["ok"] and not result["lost"] and not result["duplicated"] and not result["steps_twice"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
