"""The service's calibration history: the store's jobs that reported a summary, and only those."""

from __future__ import annotations

from service.calibration import observations_from_runs, table_from_store
from tests.planner.test_decisions import plan

SPEC = {"name": "job", "model": "org/model", "dataset": {"path": "org/data"}}


def planned_job(store) -> str:
    job, _ = store.submit("alice", SPEC)
    store.set_plan(job.id, plan("7B", "A10G", seq_len=1024).to_dict())
    return job.id


def test_a_planned_job_that_has_not_reported_is_no_observation(store):
    # its summary column holds JSON null: it must not reach the fit (it failed every later plan, `system`)
    planned_job(store)
    assert store.measured_runs() == [] and observations_from_runs(store.measured_runs()) == []
    table_from_store(store)  # plans the next job without raising


def test_a_job_that_reported_its_summary_is_one_observation(store):
    planned_job(store)
    reported = planned_job(store)
    store.save_records(reported, [], {"kind": "summary", "memory_peak_bytes": 10 * 2**30,
                                      "tokens_per_second": 1000.0}, None)
    assert len(observations_from_runs(store.measured_runs())) == 1
