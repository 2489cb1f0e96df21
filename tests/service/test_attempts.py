"""An attempt that ran out of memory, as the job's driver reports it: stored once, the job's plan replaced, a note
with the numbers in its events, the evidence in calibration's history and in /metrics' replan counter."""

from __future__ import annotations

import pytest

from planner.calibration import PRIOR_RUNS
from planner.recovery import MemoryEvidence
from planner.units import size_text
from service.calibration import table_from_store
from service.records import checked_record, store_records
from service.states import State
from tests.planner.test_decisions import plan

EVIDENCE = MemoryEvidence(kind="oom", step=37, phase="backward", in_use_bytes=79_100_000_000,
                          requested_bytes=2_000_000_000, limit_bytes=80_000_000_000, peak_bytes=79_100_000_000,
                          predicted_bytes=60_000_000_000, device="cuda")


def running_job(store):
    job, _ = store.submit("alice", {"name": "job", "model": "org/model", "dataset": {"path": "org/data"}})
    store.claim_next_queued()
    store.transition(job.id, State.PLANNING, State.RUNNING, ray_job_id="r", gpus=1, gpu_type="A10G")
    first = plan("7B", "A10G", seq_len=1024)
    store.set_plan(job.id, first.to_dict())
    return store.get(job.id), first


def replan_record(failed, new, attempt: int = 1) -> dict:
    return {"kind": "replan", "attempt": attempt, "evidence": EVIDENCE.to_dict(), "failed_plan": failed.to_dict(),
            "plan": new.to_dict(), "text": f"attempt {attempt + 1}: {EVIDENCE.describe()}; micro-batch 4 -> 2"}


def test_a_replan_replaces_the_plan_and_notes_the_numbers_once(store):
    job, first = running_job(store)
    second = plan("7B", "A10G", seq_len=512)
    record = checked_record(replan_record(first, second), 0)
    store_records(store, job, [record])
    store_records(store, store.get(job.id), [record])  # the shipper sent the batch again
    assert store.get(job.id).plan == second.to_dict() and store.get(job.id).state == State.RUNNING
    notes = [e for e in store.events(job.id) if e.from_state == e.to_state]
    assert len(notes) == 1 and "out of memory at step 37 (backward)" in notes[0].reason
    # the numbers, not just "OOM"
    assert size_text(EVIDENCE.in_use_bytes) in notes[0].reason and size_text(EVIDENCE.limit_bytes) in notes[0].reason
    attempts = store.attempts(job.id)
    assert [(a.attempt, a.replanned, a.plan == first.to_dict()) for a in attempts] == [(0, True, True)]


def test_the_evidence_corrects_calibration_upward_for_the_failed_plans_key(store):
    job, first = running_job(store)
    store_records(store, job, [checked_record(replan_record(first, plan("7B", "A10G", seq_len=512)), 0)])
    factor = table_from_store(store).lookup("A10G", first.family, first.settings.method,
                                            first.settings.precision_recipe).memory
    raw = first.memory.total / first.memory.calibration
    one_run = 1 / (1 + PRIOR_RUNS)  # one observation, shrunk toward 1 as every fitted factor is
    assert factor == pytest.approx((EVIDENCE.needed_bytes / raw) ** one_run, rel=1e-6) and factor > 1


def test_a_refused_replan_is_an_attempt_without_a_new_plan(store):
    job, first = running_job(store)
    refused = {"kind": "replan_refused", "attempt": 4, "evidence": EVIDENCE.to_dict(), "failed_plan": first.to_dict(),
               "text": f"{EVIDENCE.describe()}; no re-plan left (at most 3)"}
    store_records(store, job, [checked_record(refused, 0)])
    assert store.get(job.id).plan == first.to_dict()
    assert [(a.attempt, a.replanned) for a in store.attempts(job.id)] == [(3, False)]


@pytest.mark.parametrize("bad", [{"attempt": 0}, {"attempt": "2"}, {"evidence": {"step": 1}}])
def test_an_attempt_record_without_its_numbers_is_refused_naming_the_field(store, bad):
    job, first = running_job(store)
    with pytest.raises(ValueError, match=r"records\[0\]\.(attempt|evidence)"):
        checked_record({**replan_record(first, first), **bad}, 0)
    assert store.attempts(job.id) == []


def test_an_eval_batch_shrink_is_a_note_once(store):
    job, _ = running_job(store)
    record = {"kind": "eval_batch", "step": 4, "from": 8, "to": 4, "text": "evaluation ran out of memory at batch 8"}
    store_records(store, job, [record, record])
    assert [e.reason for e in store.events(job.id)].count(record["text"]) == 1


def test_checkpoints_removed_are_a_note_in_the_job_events(store):
    job, _ = running_job(store)
    record = {"kind": "checkpoints_removed", "steps": [10], "bytes_freed": 52_100_000, "kept_steps": [5, 20, 30],
              "resumed_from_step": 5, "text": "checkpoints removed: step 10 (52.1 MB freed); kept: the last 2 and "
                                              "step 5 (resumed from), steps 5, 20, 30"}
    store_records(store, job, [record, record])  # a batch the shipper sent twice
    assert [e.reason for e in store.events(job.id)].count(record["text"]) == 1


def test_each_attempts_placement_is_a_note_in_the_job_events(store):
    job, _ = running_job(store)
    record = {"kind": "placement", "attempt": 0, "nodes": 2,
              "ranks": [{"rank": 0, "node": "a" * 56, "node_ip": "10.0.0.1"},
                        {"rank": 1, "node": "b" * 56, "node_ip": "10.0.0.2"}],
              "text": "attempt 0: 2 ranks on 2 node(s): rank 0 on aaaaaaaaaaaa (10.0.0.1), "
                      "rank 1 on bbbbbbbbbbbb (10.0.0.2)"}
    store_records(store, job, [record, record])
    assert [e.reason for e in store.events(job.id)].count(record["text"]) == 1
