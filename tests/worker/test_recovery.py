"""Out-of-memory recovery on a real local Ray: a plan wrong by design runs into the worker's real memory cap,
is re-planned from the evidence, resumes from its checkpoint and trains on exactly as an uninterrupted run."""

from __future__ import annotations

import pytest

from planner import Inventory, plan_job
from planner.calibration import Calibration, CalibrationTable
from planner.spec import parse_job
from tests.worker.conftest import CPU
from worker.jsonl import read_jsonl
from worker.ray_run import RayRun
from worker.recovery import run_with_recovery, spec_replanner
from worker.sinks import JsonlSink, ListSink, last_per_step
from worker.train import WorkerJob, train

pytestmark = pytest.mark.usefixtures("ray_cluster")

STEPS = 6
# between the first step's peak (no AdamW state yet) and a steady step's at micro-batch 4 (measured on this
# tiny full fine-tune: 5.2 MB and 6.5 MB): the first step fits, the second does not
BUDGET = 5_900_000
# calibration from runs that "measured" half of the truth: the planner believes micro-batch 4 needs 3.3 MB
UNDER = CalibrationTable({("cpu", "llama", "full", "fp32"): Calibration(memory=0.5, runs=3,
                                                                         key=("cpu", "llama", "full", "fp32"))})


def job_spec(model, data, budget: int | None):
    fraction = (CPU.context_bytes + budget) / CPU.memory_bytes if budget else 0.9
    return parse_job({"name": "oom", "model": str(model), "dataset": {"path": str(data)}, "seq_len": 64,
                      "method": "full", "resources": {"max_memory_fraction": fraction},
                      "training": {"max_steps": STEPS, "effective_batch_size": 4, "learning_rate": 1e-2,
                                   "checkpoint_every_steps": 1}})


def test_a_plan_that_runs_out_of_memory_is_replanned_and_trains_on_as_if_uninterrupted(tiny_model, datasets,
                                                                                        tmp_path):
    inventory = Inventory.single(CPU, 1)
    spec = job_spec(tiny_model, datasets["chat"], BUDGET)
    plan = plan_job(spec, inventory, calibration=UNDER)
    assert plan.settings.micro_batch_size == 4 and plan.memory.budget == BUDGET  # wrong by design

    job = WorkerJob(plan, str(tmp_path / "out"), str(tmp_path / "work"))
    result, final = run_with_recovery(RayRun(job, storage_path=str(tmp_path / "ray"), name="oom"),
                                      JsonlSink(tmp_path / "metrics.jsonl"), spec_replanner(spec, inventory, UNDER))
    assert result.error is None
    records = read_jsonl(tmp_path / "metrics.jsonl")

    # the cap refused a real allocation at step 2, the first with AdamW's state alive, and said what it knew
    oom = next(r for r in records if r["kind"] == "oom")
    assert oom["step"] == 2 and oom["limit_bytes"] == BUDGET
    assert oom["in_use_bytes"] + oom["requested_bytes"] > BUDGET and oom["phase"] in ("forward", "backward")
    replan = next(r for r in records if r["kind"] == "replan")
    assert "micro-batch 4 -> 2" in replan["text"] and "effective batch 4 unchanged" in replan["text"]
    assert "out of memory at step 2" in replan["text"]

    # the new plan keeps the training: same effective batch, same steps; it resumed from the step-1 checkpoint
    settings = final.settings
    assert settings.micro_batch_size * settings.gradient_accumulation_steps == 4
    assert settings.micro_batch_size < 4 and final.memory.budget == BUDGET
    starts = [r for r in records if r["kind"] == "start"]
    assert [s["plan_attempt"] for s in starts] == [0, 1] and starts[1]["resumed_step"] == 1
    steps = last_per_step(records)
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    assert all(r["memory_step_peak_bytes"] <= BUDGET for r in steps)
    summary = next(r for r in records if r["kind"] == "summary")
    assert summary["step"] == STEPS

    # ... and its loss curve is the uninterrupted run's (micro-batch 4, a budget that fits), step for step
    straight_sink = ListSink()
    straight_plan = plan_job(job_spec(tiny_model, datasets["chat"], None), inventory)
    assert straight_plan.settings.micro_batch_size == 4
    straight = train(WorkerJob(straight_plan, str(tmp_path / "out2"), str(tmp_path / "work2")), straight_sink)
    expected = [r["loss"] for r in straight_sink.records if r["kind"] == "step"]
    assert [r["loss"] for r in steps] == pytest.approx(expected, rel=1e-4)
    assert summary["weights_checksum"] == pytest.approx(straight["weights_checksum"], rel=1e-4)


@pytest.mark.slow  # another minute of Ray training: `make test-all`
def test_a_run_out_of_replans_fails_with_the_evidence(tiny_model, datasets, tmp_path):
    from worker.budget import OutOfMemory

    inventory = Inventory.single(CPU, 1)
    spec = job_spec(tiny_model, datasets["chat"], BUDGET)
    plan = plan_job(spec, inventory, calibration=UNDER)
    job = WorkerJob(plan, str(tmp_path / "out"), str(tmp_path / "work"))
    with pytest.raises(OutOfMemory, match=r"out of memory at step 2 \(forward\): .* budget 5\.9 MB.*no re-plan left"):
        run_with_recovery(RayRun(job, storage_path=str(tmp_path / "ray"), name="oom"),
                          JsonlSink(tmp_path / "metrics.jsonl"), spec_replanner(spec, inventory, UNDER),
                          max_replans=0)
    refused = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "replan_refused"]
    assert len(refused) == 1 and "no re-plan left (at most 0)" in refused[0]["text"]


@pytest.mark.slow  # another minute of Ray training: `make test-all`
def test_a_steady_step_above_the_safety_line_is_replanned_before_the_allocator_fails(tiny_model, datasets, tmp_path):
    inventory = Inventory.single(CPU, 1)
    budget = 6_800_000  # a steady step at micro-batch 4 peaks at 6.5 MB: under the budget, above 95 % of it
    spec = job_spec(tiny_model, datasets["chat"], budget)
    plan = plan_job(spec, inventory, calibration=UNDER)
    assert plan.settings.micro_batch_size == 4
    job = WorkerJob(plan, str(tmp_path / "out"), str(tmp_path / "work"))
    result, final = run_with_recovery(RayRun(job, storage_path=str(tmp_path / "ray"), name="pressure"),
                                      JsonlSink(tmp_path / "metrics.jsonl"), spec_replanner(spec, inventory, UNDER))
    assert result.error is None
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert not [r for r in records if r["kind"] == "oom"]  # it never ran out
    pressure = next(r for r in records if r["kind"] == "pressure")
    assert pressure["step"] == 2 and pressure["peak_bytes"] > pressure["limit_bytes"] == int(budget * 0.95)
    assert "memory above the safety line at step 2" in next(r for r in records if r["kind"] == "replan")["text"]
    # the step-2 checkpoint was saved before it stopped: nothing is trained twice
    starts = [r for r in records if r["kind"] == "start"]
    assert [s["resumed_step"] for s in starts] == [None, 2]
    assert final.settings.micro_batch_size * final.settings.gradient_accumulation_steps == 4
    assert final.memory.budget == int(budget * 0.95)  # the new plan is made to stay under the line
    steps = last_per_step(records)
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    assert all(r["memory_step_peak_bytes"] <= budget * 0.95 for r in steps if r["plan_attempt"] == 1)
    # a checkpoint a step; Ray keeps the last 2 (5, 6), effft the one the re-plan resumed from (2), and every
    # checkpoint removed is said, step and bytes
    kept = tmp_path / "ray" / "effft-resumed-from" / "pressure"
    assert [folder.name for folder in kept.iterdir()] == ["step-2"]
    assert len([f for f in (tmp_path / "ray" / "pressure").glob("checkpoint_*") if f.is_dir()]) == 2
    removed = [r for r in records if r["kind"] == "checkpoints_removed"]
    assert [r["steps"] for r in removed] == [[1], [2], [3], [4]]
    assert removed[1]["bytes_freed"] == 0 and removed[0]["bytes_freed"] > 0  # step 2 is still held by its copy
    assert removed[-1]["kept_steps"] == [2, 5, 6] and removed[-1]["resumed_from_step"] == 2
