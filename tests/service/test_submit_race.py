"""Two submits with one Idempotency-Key at the same moment (a client's retry racing its first try): one job,
and both answers name it; on SQLite and on Postgres (the `store` fixture runs each test on both)."""

from __future__ import annotations

import threading

import pytest

from service.store import IdempotencyConflict

SPEC = {"name": "job", "model": "org/model", "dataset": {"path": "org/data"}}


def race(store, monkeypatch, bodies):
    """Submit `bodies` at once with one key, each racer held before its insert until every racer is there: all
    of them insert, the race the unique (owner, key) constraint must settle. Returns each submit's outcome
    ((job, created) or the exception it raised) and what the losers' look-ups found."""
    opened, found = store.connect, []
    all_there = threading.Barrier(len(bodies), timeout=20)
    racer = threading.local()

    def held_connection(**options):
        if getattr(racer, "first_connection", False):  # the insert's connection: opened first in a submit
            racer.first_connection = False
            all_there.wait()
        return opened(**options)

    lookup = store._by_key

    def seen_lookup(owner, key):
        found.append(lookup(owner, key))
        return found[-1]

    monkeypatch.setattr(store, "connect", held_connection)
    monkeypatch.setattr(store, "_by_key", seen_lookup)
    outcomes = [None] * len(bodies)

    def submit(index, body):
        racer.first_connection = True
        try:
            outcomes[index] = store.submit("alice", body, idempotency_key="retry-1")
        except Exception as error:  # the outcome under test
            outcomes[index] = error

    threads = [threading.Thread(target=submit, args=(i, body)) for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes, found


@pytest.mark.parametrize("racers", [2, 6])
def test_concurrent_submits_with_one_key_make_one_job_and_all_get_its_id(store, monkeypatch, racers):
    outcomes, found = race(store, monkeypatch, [dict(SPEC)] * racers)
    assert len(found) == racers - 1 and None not in found  # every loser's insert failed, and it found the winner
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
