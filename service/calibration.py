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


def _ratio_histogram(name: str, text: str, ratios: dict[tuple[str, str], list[float]]):
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, text, labels=["quantity", "prediction"])
    for (quantity, prediction), values in sorted(ratios.items()):
        buckets = [(str(edge), sum(v <= edge for v in values)) for edge in RATIO_BUCKETS]
        family.add_metric([quantity, prediction], [*buckets, ("+Inf", len(values))], sum_value=sum(values))
    return family


RATIO_BUCKETS = (0.5, 0.75, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0)


def calibration_families(store) -> list:
    """/metrics: the fitted factors, and measured / predicted of finished runs before and after calibration."""
    from prometheus_client.core import GaugeMetricFamily

    runs = store.measured_runs()
    factors = GaugeMetricFamily("effft_calibration_factor", "Correction factor fitted from measured runs",
                                labels=["device", "family", "method", "recipe", "quantity"])
    for row in CalibrationTable.from_observations(observations_from_runs(runs)).rows():
        for quantity in ("memory", "tokens_per_second"):
            factors.add_metric([row["device"], row["family"], row["method"], row["recipe"], quantity], row[quantity])
    ratios: dict[tuple[str, str], list[float]] = {}
    for plan, summary in runs:
        try:
            plan = load_plan(plan)
        except PlanVersionError:
            continue
        for quantity, predicted, factor, measured in (
                ("memory", plan.memory.total, plan.memory.calibration, summary.get("memory_peak_bytes")),
                ("tokens_per_second", plan.throughput.tokens_per_second, plan.throughput.calibration,
                 summary.get("tokens_per_second"))):
            if measured and predicted:
                ratios.setdefault((quantity, "calibrated"), []).append(measured / predicted)
                ratios.setdefault((quantity, "raw"), []).append(measured * factor / predicted)
    return [factors, _ratio_histogram("effft_planner_error_ratio", "Measured / predicted of finished runs, with the "
                                      "plan's calibration (calibrated) and without it (raw)", ratios)]
