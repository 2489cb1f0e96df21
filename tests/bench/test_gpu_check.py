"""bench/gpu_check.sh --dry-run: the GPU proof's whole pipeline on the CPU (tiny configs, seq 64), so that a
session with a device runs it once, and it works.

Every table must be written with real rows: each memory config the planner accepts measured next to its
prediction, the one it rejects confirmed out of memory under its budget, three speed variants with tokens/s
and MFU, the planner's micro-batch among the sweep, a summary that reads them, and calibration observations.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check.configs import DRY_SUITE
from bench.gpu_check.launch import Task
from bench.gpu_check.planning import naive_retry, sweep_points
from bench.gpu_check.schedule import Admission, _may_start

ROOT = Path(__file__).resolve().parents[2]
TABLES = ["anchor.csv", "auto_choice.csv", "log.txt", "memory.csv", "rows.jsonl", "speed.csv", "summary.md"]


def run_check(out: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--out", str(out), *options],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu-check")
    done = run_check(out, "--dry-run")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out


def read_csv(path: Path) -> list[dict]:
    with path.open() as file:
        return list(csv.DictReader(file))


def test_every_table_is_written(dry_run):
    assert sorted(p.name for p in dry_run.iterdir()) == TABLES  # at most 8 files come back from the device


def test_each_accepted_config_is_measured_beside_its_prediction(dry_run):
    rows = read_csv(dry_run / "memory.csv")
    assert len(rows) == len(DRY_SUITE.memory)
    accepted = [r for r in rows if r["planner_fits"] == "True"]
    assert len(accepted) == 3
    for row in accepted:
        assert row["outcome"] == "ok", row["note"]
        predicted, measured = int(row["predicted_bytes"]), int(row["measured_peak"])
        # the planner is within ~3 % on the CPU (bench/planner_truth.py): 10 % off means the pipeline broke
        assert abs(measured / predicted - 1) < 0.10, row
        assert float(row["peak_error"]) == pytest.approx(measured / predicted - 1, abs=1e-5)
        assert row["metric"] == "cpu tensor bytes" and row["measured_allocated"] == "n/a on CPU"
        for term in ("weights", "optimizer"):  # the stored tensors, counted one by one, are what the planner says
            assert int(row[f"measured_{term}"]) == pytest.approx(int(row[f"stored_{term}"]), rel=0.01), term


def test_the_rejected_config_runs_under_its_budget_and_runs_out(dry_run):
    rejected = [r for r in read_csv(dry_run / "memory.csv") if r["planner_fits"] == "False"]
    assert len(rejected) == 1
    row = rejected[0]
    assert row["outcome"] == "OOM" and row["ran_alone"] == "True"
    assert int(row["cap_bytes"]) == int(row["budget"]) < int(row["predicted_bytes"])
    assert "OOM in train" in row["note"]


def test_speed_is_measured_three_ways(dry_run):
    rows = read_csv(dry_run / "speed.csv")
    assert [r["variant"] for r in rows] == ["effft", "plain", "naive"]
    for row in rows:
        assert row["outcome"] == "ok", row["note"]
        assert float(row["tokens_per_second"]) > 0 and int(row["timed_steps"]) == 1
        assert 0 < float(row["mfu"]) <= 1
    effft, plain, naive = rows
    assert (effft["micro_batch"], effft["accumulation"]) == (plain["micro_batch"], plain["accumulation"])
    assert (naive["packing"], naive["attention"], naive["checkpointing"]) == ("False", "eager", "False")
    assert int(effft["measured_peak"]) > 0 and plain["measured_peak"] == "n/a on CPU"


def test_the_planners_micro_batch_is_among_the_sweep(dry_run):
    rows = read_csv(dry_run / "auto_choice.csv")
    assert len(rows) == DRY_SUITE.auto[0].max_points
    assert [r["is_choice"] for r in rows] == ["True", "False"]  # the choice runs first
    assert all(r["outcome"] == "ok" and float(r["tokens_per_second"]) > 0 for r in rows)
    assert all(int(r["micro_batch"]) <= int(r["largest_fitting_micro_batch"]) for r in rows)


def test_the_summary_reads_every_section(dry_run):
    text = (dry_run / "summary.md").read_text()
    for line in ("DRY RUN on a CPU", "## Anchors", "## Memory", "peak vs predicted: median |error|",
                 "rejected by the planner and run under its budget: 1, out of memory as predicted: 1",
                 "## Speed", "effft / plain", "effft / naive", "## The planner's own micro-batch", "goal >= 95.0 %",
                 "## Multi-GPU (FSDP / NCCL)", "## Folding into the planner", "cpu llama full (fp32): memory x"):
        assert line in text, line


def test_fold_writes_a_calibration_history_the_planner_reads(dry_run, tmp_path):
    from bench.gpu_check.fold import main
    from service.calibration import HISTORY_FILE, table_from_local

    assert main([str(dry_run), "--history", str(tmp_path / HISTORY_FILE)]) == 0
    rows = table_from_local(tmp_path).rows()
    assert {(r["device"], r["method"]) for r in rows} >= {("cpu", "full"), ("cpu", "lora")}
    assert all(0.9 < r["memory"] < 1.1 for r in rows)


def test_a_fresh_interpreter_runs_a_child_too(tmp_path):
    """The launcher's fallback when a forked child cannot use CUDA: one run, the anchor, through it."""
    done = run_check(tmp_path, "--dry-run", "--launch", "exec", "--sections", "")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    anchor = read_csv(tmp_path / "anchor.csv")
    assert anchor[0]["outcome"] == "ok" and float(anchor[0]["matmul_flops"]) > 0


def test_sweep_points_are_the_fitting_ones_nearest_the_choice_first():
    points, largest = sweep_points(8, 32, 4, fits=lambda m: m <= 16)
    assert points == [8, 16, 4, 2] and largest == 16
    assert sweep_points(3, 12, 2, fits=lambda m: True)[0] == [3, 4]  # the choice is kept when no power of two


def test_shared_runs_fill_the_device_and_timed_runs_go_alone():
    def task(name, reserve, alone=False):
        return Task(name, "memory", {}, {}, alone=alone, reserve_bytes=reserve)

    class Busy:
        def __init__(self, t):
            self.task = t

    admission = Admission(concurrency=3, capacity_bytes=100)
    big, small, solo = task("big", 70), task("small", 40), task("solo", 10, alone=True)
    assert _may_start(big, [], [small, solo], admission)
    assert not _may_start(small, [Busy(big)], [solo], admission)  # 70 + 40 > 100
    assert _may_start(task("tiny", 30), [Busy(big)], [solo], admission)
    assert not _may_start(solo, [], [small, solo], admission)  # after every shared run
    assert _may_start(solo, [], [solo], admission) and not _may_start(small, [Busy(solo)], [], admission)


def test_a_naive_run_out_of_memory_goes_again_at_half_the_micro_batch():
    naive = Task("speed-0-naive", "speed", {"kind": "naive", "micro_batch": 8, "accumulation": 2}, {}, alone=True)
    again = naive_retry(naive, {"outcome": "OOM"})
    assert (again.job["micro_batch"], again.job["accumulation"], again.alone) == (4, 4, True)
    assert naive_retry(naive, {"outcome": "ok"}) is None
    assert naive_retry(Task("x", "speed", {"kind": "naive", "micro_batch": 1, "accumulation": 16}, {}),
                       {"outcome": "OOM"}) is None


def test_the_h200_suite_plans_here():
    """What the device run will measure, planned now (pure): a failure here would cost device time there."""
    from bench.gpu_check.configs import GPU_SUITE
    from bench.gpu_check.planning import auto_tasks, memory_tasks, speed_tasks
    from planner import parse_gpu_name

    h200 = parse_gpu_name("NVIDIA H200", 150 * 10**9)
    memory = memory_tasks(GPU_SUITE, h200, 150 * 10**9)
    assert len(memory) >= 24
    covered = {(t.row["model"], t.row["method"], t.row["checkpointing"]) for t in memory}
    assert len(covered) >= 20 and {t.row["seq_len"] for t in memory} == {512, 1024, 2048, 4096}
    assert {t.row["micro_batch"] for t in memory} == {1, 2, 4, 8}
    rejected = [t for t in memory if not t.row["planner_fits"]]
    assert rejected and all(t.alone and t.job["worker_overrides"]["memory_cap_bytes"] < t.row["predicted_bytes"]
                            for t in rejected)
    speed = speed_tasks(GPU_SUITE, h200)
    assert [t.row["variant"] for t in speed] == ["effft", "plain", "naive"] * 2
    assert all(t.row["recipe"] in ("bf16/amp", "fp32 weights, bf16 autocast") for t in speed)
    auto = auto_tasks(GPU_SUITE, h200)
    for job in {t.row["job"] for t in auto}:
        points = [t for t in auto if t.row["job"] == job]
        assert points[0].row["is_choice"] and len(points) >= 3
