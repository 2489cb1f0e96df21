"""A full disk (found by the chaos drill: every job on a full run folder failed as cause `worker`): the driver
waits for room and resumes, and the shipper's drain survives its offset file's ENOSPC."""

from __future__ import annotations

import errno
import threading
from types import SimpleNamespace

import pytest

from worker import recovery
from worker.disk import is_disk_full, room_needed, wait_for_room
from worker.shipper import Shipper
from worker.sinks import ListSink

RAY_TEXT = ("ray.train.TrainingFailedError: Training failed due to worker errors:\n"
            "OSError: [Errno 28] No space left on device: '/data/runs/j1/work/checkpoint-10'")


def test_disk_full_is_found_as_an_oserror_in_a_chain_or_in_rays_text():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError as inner:
            raise RuntimeError("the run failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert is_disk_full(RuntimeError(RAY_TEXT))
    assert not is_disk_full(RuntimeError("KeyError: 'labels'")) and not is_disk_full(OSError(errno.EACCES, "no"))


def test_waiting_for_room_polls_until_there_is_enough_or_gives_up(tmp_path):
    free = iter([0, 10, 100])
    slept = []
    assert wait_for_room(tmp_path, 50, 60, free=lambda _: next(free), sleep=slept.append) == 4.0
    assert wait_for_room(tmp_path, 50, 5, free=lambda _: 0, sleep=lambda _: None) is None
    checkpoint = tmp_path / "run" / "checkpoint_1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.bin").write_bytes(b"\0" * (20 * 2**20))
    assert room_needed(tmp_path) == 2 * 20 * 2**20  # two of the largest checkpoint, at least 16 MiB


@pytest.fixture
def fake_ray(monkeypatch, tmp_path):
    """run_on_ray that fails on a full disk `failures` times, then returns; the room check sees what the test sets."""
    state = SimpleNamespace(failures=1, calls=0, free=0)

    def run_on_ray(run, sink):
        state.calls += 1
        if state.calls <= state.failures:
            raise RuntimeError(RAY_TEXT)
        return "result"

    monkeypatch.setattr(recovery, "run_on_ray", run_on_ray)
    monkeypatch.setattr(recovery, "memory_evidence", lambda run: None)
    monkeypatch.setattr(recovery, "wait_for_room", lambda folder, needed, wait: None if state.free < needed else 6.0)
    state.run = SimpleNamespace(storage_path=str(tmp_path / "ray"), job=SimpleNamespace(plan="the plan"))
    return state


def test_a_run_that_filled_its_disk_resumes_once_there_is_room_and_says_so(fake_ray):
    fake_ray.free = 10**12
    sink = ListSink()
    assert recovery.run_with_recovery(fake_ray.run, sink, None) == ("result", "the plan")
    assert fake_ray.calls == 2  # the same run again: Ray resumes it from its last checkpoint
    (note,) = sink.records
    assert note["kind"] == "disk_full" and "room again after 6 s: resuming" in note["text"]
    assert "[Errno 28] No space left on device" in note["text"]


def test_a_disk_that_stays_full_fails_the_run_with_the_disk_error(fake_ray):
    with pytest.raises(RuntimeError, match="No space left on device"):
        recovery.run_with_recovery(fake_ray.run, ListSink(), None)
    assert fake_ray.calls == 1


def test_disk_resumes_stop_at_their_limit(fake_ray):
    fake_ray.free, fake_ray.failures = 10**12, 100
    with pytest.raises(RuntimeError, match="No space left"):
        recovery.run_with_recovery(fake_ray.run, ListSink(), None)
    assert fake_ray.calls == 1 + recovery.MAX_DISK_RESUMES


def test_other_failures_are_not_resumed(fake_ray, monkeypatch):
    monkeypatch.setattr(recovery, "run_on_ray", lambda run, sink: (_ for _ in ()).throw(KeyError("labels")))
    with pytest.raises(KeyError):
        recovery.run_with_recovery(fake_ray.run, ListSink(), None)


def test_drain_retries_a_batch_whose_offset_could_not_be_written(tmp_path, monkeypatch):
    spool = tmp_path / "metrics.jsonl"
    spool.write_text('{"kind": "step", "step": 1}\n')
    shipper = Shipper(spool, "http://127.0.0.1:9", "j1", "token", poll_seconds=0.01)
    posted, outcomes = [], iter([OSError(errno.ENOSPC, "No space left on device"), True])

    def ship_once():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        posted.append(True)
        shipper.position = shipper._pending()[1]
        return True

    monkeypatch.setattr(shipper, "ship_once", ship_once)
    shipper._thread = threading.Thread(target=lambda: None)  # the shipping thread has stopped: drain ships the rest
    shipper._thread.start()
    assert shipper.drain(timeout_seconds=30) and posted == [True]
