"""The job store: idempotent submits, compare-and-set state changes, exactly-once claims, pagination, upserts."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from service.records import store_records
from service.states import TRANSITIONS, Cause, State, TransitionError
from service.store import IdempotencyConflict, JobStore
from tests.planner.test_decisions import plan

SPEC = {"name": "job", "model": "org/model", "dataset": {"path": "org/data"}}


def spec(name: str = "job", **fields) -> dict:
    return {**SPEC, "name": name, **fields}


def test_submit_stores_a_queued_job_with_a_submitted_event(store):
    job, created = store.submit("alice", spec())
    assert created and job.state == State.QUEUED and job.owner == "alice"
    assert [(e.from_state, e.to_state, e.reason) for e in store.events(job.id)] == [(None, "queued", "submitted")]


def test_submit_with_the_same_key_and_body_returns_the_first_job(store):
    first, created = store.submit("alice", spec(), idempotency_key="k1")
    again, created_again = store.submit("alice", spec(), idempotency_key="k1")
    assert created and not created_again
    assert again.id == first.id
    assert store.counts_by_state() == {"queued": 1}


def test_submit_with_the_same_key_and_another_body_is_a_conflict(store):
    store.submit("alice", spec(), idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        store.submit("alice", spec("other"), idempotency_key="k1")
    assert store.counts_by_state() == {"queued": 1}


def test_idempotency_keys_belong_to_their_owner(store):
    first, _ = store.submit("alice", spec(), idempotency_key="k1")
    other, created = store.submit("bob", spec("other"), idempotency_key="k1")
    assert created and other.id != first.id


def test_submit_without_a_key_always_makes_a_new_job(store):
    a, _ = store.submit("alice", spec())
    b, _ = store.submit("alice", spec())
    assert a.id != b.id


def test_get_hides_other_owners_jobs(store):
    job, _ = store.submit("alice", spec())
    assert store.get(job.id, "alice").id == job.id
    assert store.get(job.id, "bob") is None
    assert store.get(job.id).id == job.id  # no owner: any
    assert store.get("jmissing") is None


def test_transition_is_a_compare_and_set_with_an_event(store):
    job, _ = store.submit("alice", spec())
    assert store.transition(job.id, State.QUEUED, State.CANCELLED, "by alice")
    assert not store.transition(job.id, State.QUEUED, State.CANCELLED, "by alice")  # no longer queued
    stored = store.get(job.id)
    assert stored.state == State.CANCELLED and stored.finished_at is not None
    events = store.events(job.id)
    assert [(e.from_state, e.to_state) for e in events] == [(None, "queued"), ("queued", "cancelled")]
    assert events[-1].reason == "by alice"


def test_transition_from_the_wrong_state_changes_nothing(store):
    job, _ = store.submit("alice", spec())
    assert not store.transition(job.id, State.PLANNING, State.RUNNING)
    assert store.get(job.id).state == State.QUEUED
    assert len(store.events(job.id)) == 1


def snapshot(store, job_id: str) -> tuple[dict, list]:
    """Everything the store holds of one job: its row and its events."""
    return store.get(job_id).model_dump(), [e.model_dump() for e in store.events(job_id)]


FORBIDDEN_FROM_QUEUED = [s for s in State if (State.QUEUED, s) not in TRANSITIONS]


@pytest.mark.parametrize("target", FORBIDDEN_FROM_QUEUED, ids=str)
def test_a_move_the_table_forbids_is_refused_and_changes_nothing(store, target):
    job, _ = store.submit("alice", spec())
    before = snapshot(store, job.id)
    with pytest.raises(TransitionError):
        store.transition(job.id, State.QUEUED, target, **({"cause": Cause.SYSTEM} if target == State.FAILED else {}))
    assert snapshot(store, job.id) == before


def test_an_ended_job_cannot_move_again(store):
    job, _ = store.submit("alice", spec())
    assert store.transition(job.id, State.QUEUED, State.CANCELLED)
    before = snapshot(store, job.id)
    for target in State:
        with pytest.raises(TransitionError):
            store.transition(job.id, State.CANCELLED, target)
    assert snapshot(store, job.id) == before


def test_a_move_from_a_state_the_job_has_left_changes_nothing(store):
    job, _ = store.submit("alice", spec())
    assert store.transition(job.id, State.QUEUED, State.CANCELLED)  # a second writer read it as queued too:
    before = snapshot(store, job.id)
    assert not store.transition(job.id, State.QUEUED, State.PLANNING)
    assert snapshot(store, job.id) == before


def test_a_move_cannot_set_the_state_or_its_columns_through_fields(store):
    job, _ = store.submit("alice", spec())
    before = snapshot(store, job.id)
    for fields in ({"state": State.RUNNING}, {"finished_at": None}, {"cause": Cause.OOM}):
        with pytest.raises((ValueError, TypeError)):
            store.transition(job.id, State.QUEUED, State.CANCELLED, **fields)
    with pytest.raises(ValueError, match="cause"):  # a failed job always says why
        store.transition(job.id, State.QUEUED, State.CANCELLED, cause=Cause.OOM)
    assert snapshot(store, job.id) == before


def test_a_failure_stores_its_cause_as_the_plain_string(store):
    job, _ = store.submit("alice", spec())
    store.claim_next_queued()
    with pytest.raises(ValueError, match="cause"):
        store.transition(job.id, State.PLANNING, State.FAILED, message="no cause")
    assert store.transition(job.id, State.PLANNING, State.FAILED, "oom: boom", cause=Cause.OOM, message="boom")
    stored = store.get(job.id)
    assert (stored.state, stored.cause, stored.message) == ("failed", "oom", "boom")
    assert type(stored.cause) is str and stored.finished_at is not None
    assert store.events(job.id)[-1].reason == "oom: boom"


def test_transition_to_running_sets_fields_and_started_at(store):
    job, _ = store.submit("alice", spec())
    store.claim_next_queued()
    assert store.transition(job.id, State.PLANNING, State.RUNNING, ray_job_id="ray-1", gpus=2, gpu_type="CPU")
    stored = store.get(job.id)
    assert (stored.ray_job_id, stored.gpus, stored.gpu_type) == ("ray-1", 2, "CPU")
    assert stored.started_at is not None and stored.finished_at is None
    assert store.events(job.id)[-1].reason == "planned and submitted to Ray"  # the table's reason by default


def test_claim_next_queued_takes_the_oldest_and_each_job_once(store):
    ids = [store.submit("alice", spec(f"j{i}"))[0].id for i in range(3)]
    claimed = [store.claim_next_queued() for _ in range(4)]
    assert [j.id for j in claimed[:3]] == ids
    assert claimed[3] is None
    assert all(j.state == State.PLANNING for j in claimed[:3])
    assert [e.to_state for e in store.events(ids[0])] == ["queued", "planning"]


def test_concurrent_claimers_claim_every_job_exactly_once(store):
    ids = {store.submit("alice", spec(f"j{i}"))[0].id for i in range(20)}
    claimed: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claimer():
        try:
            start.wait()
            while store.counts_by_state().get("queued"):
                job = store.claim_next_queued()
                if job is not None:
                    with lock:
                        claimed.append(job.id)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert Counter(claimed) == Counter(ids)  # each once, none missed
    for job_id in ids:
        assert [e.to_state for e in store.events(job_id)] == ["queued", "planning"]


def test_two_claims_of_one_queued_job_exactly_one_wins(store, monkeypatch):
    """A rival claims in the window between our read of the queued job and our move: on SQLite the read takes no
    lock, so only the compare-and-set stops the second move; on Postgres the rival skips the row we locked."""
    job, _ = store.submit("alice", spec())
    move, rival = JobStore._move, []

    def rival_first(session, *args):
        if not rival:
            rival.append(None)
            rival[0] = store.claim_next_queued()  # its own session and transaction
        return move(session, *args)

    monkeypatch.setattr(JobStore, "_move", staticmethod(rival_first))
    mine = store.claim_next_queued()
    assert [j.id for j in (mine, rival[0]) if j is not None] == [job.id]
    assert [e.to_state for e in store.events(job.id)] == ["queued", "planning"]
    assert store.get(job.id).state == State.PLANNING


def race_for_claims(store, claimers: int) -> list:
    """What each of `claimers` threads, released at once, got from one claim."""
    start, won = threading.Barrier(claimers), []

    def claim():
        start.wait()
        won.append(store.claim_next_queued())

    threads = [threading.Thread(target=claim) for _ in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return won


def test_claims_racing_for_one_queued_job_one_wins(store):
    for _ in range(3):
        job, _ = store.submit("alice", spec())
        won = race_for_claims(store, 6)
        assert len(won) == 6 and [j.id for j in won if j is not None] == [job.id]
        assert [e.to_state for e in store.events(job.id)] == ["queued", "planning"]


def walk_pages(store, owner, limit, state=None) -> list[str]:
    seen, cursor = [], None
    while True:
        page = store.list(owner, state, limit, cursor)
        seen += [j.id for j in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_pages_cover_every_job_once_newest_first(store):
    ids = [store.submit("alice", spec(f"j{i}"))[0].id for i in range(11)]
    assert walk_pages(store, "alice", limit=3) == ids[::-1]
    assert walk_pages(store, "alice", limit=11) == ids[::-1]
    assert store.list("alice", limit=11).next_cursor is None


def test_list_filters_by_owner_and_state(store):
    mine = [store.submit("alice", spec(f"a{i}"))[0].id for i in range(3)]
    theirs = store.submit("bob", spec("b"))[0].id
    store.transition(mine[0], State.QUEUED, State.CANCELLED)
    assert set(walk_pages(store, "alice", 2)) == set(mine)
    assert set(walk_pages(store, None, 2)) == {*mine, theirs}
    assert walk_pages(store, "alice", 2, state="cancelled") == [mine[0]]
    assert walk_pages(store, "alice", 2, state="queued") == [mine[2], mine[1]]


def test_a_cursor_that_is_not_one_is_a_value_error(store):
    with pytest.raises(ValueError):
        store.list("alice", cursor="not-a-cursor")


def test_counts_by_state(store):
    a, _ = store.submit("alice", spec("a"))
    store.submit("alice", spec("b"))
    store.transition(a.id, State.QUEUED, State.CANCELLED)
    assert store.counts_by_state() == {"queued": 1, "cancelled": 1}


def step(n: int, loss: float = 1.0) -> dict:
    return {"kind": "step", "step": n, "loss": loss, "tokens_per_second": 100.0, "mfu": 0.1,
            "memory_peak_bytes": 2**30, "memory_predicted_bytes": 2**31}


def test_records_sent_twice_store_each_step_once(store):
    job, _ = store.submit("alice", spec())
    batch = [step(1), step(2), step(3)]
    assert store_records(store, job, batch) == 3
    assert store_records(store, job, batch) == 3
    assert [m.step for m in store.metrics(job.id)] == [1, 2, 3]


def test_a_later_record_for_a_step_wins(store):
    job, _ = store.submit("alice", spec())
    store_records(store, job, [step(1, loss=2.0), step(2, loss=1.5)])
    store_records(store, job, [step(2, loss=0.5), step(3, loss=0.4)])
    assert [(m.step, m.loss) for m in store.metrics(job.id)] == [(1, 2.0), (2, 0.5), (3, 0.4)]
    assert store.latest_metric(job.id).step == 3
    assert [m.step for m in store.metrics(job.id, since_step=1)] == [2, 3]


def test_a_summary_is_kept_on_the_job_and_makes_a_memory_check(store):
    job, _ = store.submit("alice", spec())
    planned = plan("7B", "A10G", seq_len=1024, method="lora")
    store.set_plan(job.id, planned.to_dict())
    job = store.get(job.id)
    summary = {"kind": "summary", "memory_peak_bytes": 3 * 2**30, "memory_predicted_bytes": 4 * 2**30,
               "predicted_terms": {"weights": 1}, "measured_terms": {"weights": 2}}
    assert store_records(store, job, [step(1), summary]) == 1
    assert store_records(store, job, [summary]) == 0  # again: still one check
    assert store.get(job.id).summary == summary
    [check] = store.memory_checks()
    assert (check.job_id, check.model, check.gpu, check.method) == (job.id, planned.model, "A10G", "lora")
    assert check.ratio == pytest.approx(0.75)
    assert (check.predicted_bytes, check.measured_bytes) == (4 * 2**30, 3 * 2**30)


def test_a_summary_without_a_plan_makes_no_memory_check(store):
    job, _ = store.submit("alice", spec())
    store_records(store, job, [{"kind": "summary", "memory_peak_bytes": 1, "memory_predicted_bytes": 2}])
    assert store.get(job.id).summary is not None
    assert store.memory_checks() == []
