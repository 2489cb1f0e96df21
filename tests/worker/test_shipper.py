"""The shipper moves a spool file's records to the service: every complete line, in order, none lost while the
service is down or failing, none sent again once stored (the offset survives a restart), all of it on drain."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import free_port
from worker.shipper import BATCH_LINES, Shipper

JOB, TOKEN = "j0123456789abcdef", "worker-token"


class FakeService:
    """POST /v1/jobs/{id}/records on loopback: answers the scripted codes first, then 200; keeps what it stored."""

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.stored: list[list[dict]] = []  # the batches answered 2xx, in arrival order
        self.requests: list[tuple[str, str]] = []  # (path, Authorization)
        self.lock = threading.Lock()

    def handler(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with service.lock:
                    service.requests.append((self.path, self.headers.get("Authorization")))
                    code = service.answers.pop(0) if service.answers else 200
                    if code < 300:
                        service.stored.append(body["records"])
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        return Handler

    def records(self) -> list[dict]:
        return [record for batch in self.stored for record in batch]


@contextmanager
def serving(service: FakeService, port: int):
    server = ThreadingHTTPServer(("127.0.0.1", port), service.handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()


def step(n: int) -> dict:
    return {"kind": "step", "step": n, "loss": 1.0 / n}


def append(spool, records) -> None:
    with spool.open("a", encoding="utf-8") as file:
        file.writelines(json.dumps(r) + "\n" for r in records)


def shipped_offset(spool) -> int:
    """How far the shipper has marked the spool stored (the file a restarted driver resumes from)."""
    marker = spool.with_suffix(".shipped")
    return int(marker.read_text()) if marker.exists() else 0


def shipper(spool, port: int) -> Shipper:
    return Shipper(spool, f"http://127.0.0.1:{port}/", JOB, TOKEN, poll_seconds=0.02)


def test_ships_every_record_in_order_in_batches_with_the_jobs_token(tmp_path):
    spool, port = tmp_path / "metrics.jsonl", free_port()
    records = [step(n) for n in range(1, 2 * BATCH_LINES + 51)]
    append(spool, records)
    with serving(FakeService(), port) as service:
        assert shipper(spool, port).start().drain(timeout_seconds=30)
    assert service.records() == records
    assert [len(batch) for batch in service.stored] == [BATCH_LINES, BATCH_LINES, 50]
    assert set(service.requests) == {(f"/v1/jobs/{JOB}/records", f"Bearer {TOKEN}")}


def test_a_line_still_being_written_waits_until_it_is_complete(tmp_path):
    spool, port = tmp_path / "metrics.jsonl", free_port()
    append(spool, [step(1), step(2)])
    with spool.open("a") as file:
        file.write('{"kind": "step", "st')  # the worker is mid-write
    with serving(FakeService(), port) as service:
        sender = shipper(spool, port)
        assert sender.ship_once()
        assert service.records() == [step(1), step(2)]
        with spool.open("a") as file:
            file.write('ep": 3, "loss": 0.5}\n')
        assert sender.ship_once()
    assert service.records() == [step(1), step(2), {"kind": "step", "step": 3, "loss": 0.5}]


def test_a_service_that_is_down_gets_everything_once_it_is_back(tmp_path):
    spool, port = tmp_path / "metrics.jsonl", free_port()
    sender = shipper(spool, port).start()
    append(spool, [step(n) for n in range(1, 6)])
    time.sleep(0.5)  # nothing listens: every pass fails and nothing is marked shipped
    assert shipped_offset(spool) == 0
    append(spool, [step(n) for n in range(6, 11)])
    with serving(FakeService(), port) as service:
        assert sender.drain(timeout_seconds=30)
    assert service.records() == [step(n) for n in range(1, 11)]


def test_a_restarted_driver_resumes_after_what_was_stored(tmp_path):
    spool, port = tmp_path / "metrics.jsonl", free_port()
    append(spool, [step(1), step(2)])
    with serving(FakeService(), port) as service:
        assert shipper(spool, port).ship_once()
        append(spool, [step(3)])
        again = shipper(spool, port)  # a new process: the offset comes from the file beside the spool
        assert again.ship_once()
    assert service.records() == [step(1), step(2), step(3)]


def test_a_5xx_is_sent_again_and_a_4xx_is_skipped_for_good(tmp_path):
    spool, port = tmp_path / "metrics.jsonl", free_port()
    append(spool, [step(1)])
    with serving(FakeService(answers=[503, 502]), port) as service:
        sender = shipper(spool, port)
        assert not sender.ship_once() and not sender.ship_once()  # the service is in trouble: keep the batch
        assert sender.ship_once()
        assert service.records() == [step(1)]
        service.answers = [400]  # refused for good (a bad record): resending cannot help, ship the rest
        append(spool, [step(2)])
        assert sender.ship_once()
        append(spool, [step(3)])
        assert sender.ship_once()
    assert service.records() == [step(1), step(3)]


def test_drain_gives_up_after_its_timeout_while_the_service_stays_away(tmp_path):
    spool, port = tmp_path / "metrics.jsonl", free_port()
    append(spool, [step(1)])
    sender = shipper(spool, port).start()
    started = time.monotonic()
    assert not sender.drain(timeout_seconds=1)
    assert time.monotonic() - started < 10 and shipped_offset(spool) == 0


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(chunks=st.lists(st.integers(1, 3 * BATCH_LINES // 2), min_size=1, max_size=4),
       answers=st.lists(st.sampled_from([200, 500, 503]), max_size=6))
def test_no_record_is_lost_or_reordered_whatever_the_service_answers(tmp_path_factory, chunks, answers):
    # records appended in chunks while the service answers errors at random: the service ends up with the
    # spool's records in order; a batch is sent again only when it was not stored
    spool, port = tmp_path_factory.mktemp("spool") / "metrics.jsonl", free_port()
    written = []
    with serving(FakeService(answers), port) as service:
        sender = shipper(spool, port)
        for size in chunks:
            records = [step(n) for n in range(len(written) + 1, len(written) + size + 1)]
            append(spool, records)
            written += records
            sender.ship_once()
        sender.start()
        assert sender.drain(timeout_seconds=30)
    assert service.records() == written
