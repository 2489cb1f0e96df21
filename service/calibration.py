"""Calibration's history: every run a summary came back for, read from the store or the local file.

The service keeps it in the store (each job's plan and summary); `effft run` keeps a JSON-lines file
in the data folder. Both become planner.calibration Observations, and the planner fits the factors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from planner.calibration import CalibrationTable, Observation
from planner.plan import Plan, PlanVersionError, load_plan
from worker.jsonl import read_jsonl

HISTORY_FILE = "calibration-history.jsonl"


def observation_of(plan: Plan, summary: dict) -> Observation | None:
    return plan.observation(summary.get("memory_peak_bytes"), summary.get("tokens_per_second"))


def observations_from_runs(runs: Iterable[tuple[dict, dict]]) -> list[Observation]:
    """Plans this version cannot read are skipped: their numbers mean what an older planner meant."""
    found = []
    for plan, summary in runs:
        try:
            observation = observation_of(load_plan(plan), summary)
        except PlanVersionError:
            continue
        if observation is not None:
            found.append(observation)
    return found


def table_from_store(store) -> CalibrationTable:
    return CalibrationTable.from_observations(observations_from_runs(store.measured_runs()))


def record_local_run(data_dir: Path, plan: Plan, summary: dict) -> None:
    """`effft run` appends each finished run to the local history (one JSON line)."""
    observation = observation_of(plan, summary)
    if observation is None:
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / HISTORY_FILE).open("a") as history:
        history.write(json.dumps(asdict(observation)) + "\n")


def table_from_local(data_dir: Path) -> CalibrationTable:
    path = data_dir / HISTORY_FILE
    if not path.exists():
        return CalibrationTable({})
    return CalibrationTable.from_observations(Observation(**row) for row in read_jsonl(path))
