"""Two submits with one Idempotency-Key at the same moment (a client's retry racing its first try): one job,
and both answers name it; on SQLite and on Postgres (the `store` fixture runs each test on both)."""

from __future__ import annotations

import threading

import pytest

from service.store import IdempotencyConflict

SPEC = {"name": "job", "model": "org/model", "dataset": {"path": "org/data"}}


def race(store, monkeypatch, bodies):
    """Submit `bodies` at once with one key, each racer's first key lookup held until every racer has made
    it: all of them find no job and go on to insert, the race the unique (owner, key) constraint must settle.
    Returns each submit's outcome ((job, created) or the exception it raised) and what the first lookups saw."""
    lookup, first_seen = store._by_key, []
    all_looked = threading.Barrier(len(bodies), timeout=20)
    racer = threading.local()

    def held_lookup(owner, key):
        found = lookup(owner, key)
        if getattr(racer, "first_lookup", False):
            racer.first_lookup = False
            first_seen.append(found)
            all_looked.wait()
        return found

    monkeypatch.setattr(store, "_by_key", held_lookup)
    outcomes = [None] * len(bodies)

    def submit(index, body):
        racer.first_lookup = True
        try:
            outcomes[index] = store.submit("alice", body, idempotency_key="retry-1")
        except Exception as error:  # the outcome under test
            outcomes[index] = error

    threads = [threading.Thread(target=submit, args=(i, body)) for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes, first_seen


@pytest.mark.parametrize("racers", [2, 6])
def test_concurrent_submits_with_one_key_make_one_job_and_all_get_its_id(store, monkeypatch, racers):
    outcomes, first_seen = race(store, monkeypatch, [dict(SPEC)] * racers)
    assert first_seen == [None] * racers  # every submit passed the lookup before any job existed
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert len({job.id for job, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False] * (racers - 1) + [True]
    assert store.counts_by_state() == {"queued": 1}
    job_id = outcomes[0][0].id
    assert [(e.from_state, e.to_state) for e in store.events(job_id)] == [(None, "queued")]  # the loser's event too
    # and a later retry with the key still answers the same job
    assert store.submit("alice", dict(SPEC), idempotency_key="retry-1")[0].id == job_id


def test_a_concurrent_submit_with_the_same_key_and_another_body_is_a_conflict(store, monkeypatch):
    outcomes, _ = race(store, monkeypatch, [dict(SPEC), {**SPEC, "name": "other"}])
    stored = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(stored) == 1 and stored[0][1] is True
    assert len(refused) == 1 and isinstance(refused[0], IdempotencyConflict)
    assert store.counts_by_state() == {"queued": 1}
