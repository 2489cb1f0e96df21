"""Metric files: one reader with one rule for a line still being written, and a sink that never leaves
damage in the middle of a file."""

from __future__ import annotations

import json
import math
import threading

import pytest

from service.progress import tail_records
from worker.jsonl import START, JsonlError, Position, finite, position_at, read_jsonl, read_records
from worker.shipper import Shipper
from worker.sinks import JsonlSink

A, B, C = {"kind": "step", "step": 1}, {"kind": "step", "step": 2}, {"kind": "summary", "step": 2}


def lines(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_a_torn_last_line_is_not_written_yet_and_is_read_once_it_is(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(lines(A) + '{"kind": "st')
    records, position = read_records(path)
    assert records == [A] and position == Position(len(lines(A)), 1)
    path.write_text(lines(A, B))  # the writer finished the line
    assert read_records(path, position) == ([B], Position(len(lines(A, B)), 2))


def test_a_bad_line_in_the_middle_is_an_error_naming_the_file_and_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(lines(A) + "\n" + "not json\n" + lines(B))
    with pytest.raises(JsonlError, match=rf"{path} line 3 is not JSON"):
        read_records(path)
    path.write_text(lines(A) + "[1, 2]\n")
    with pytest.raises(JsonlError, match=rf"{path} line 2 is a JSON list"):
        read_jsonl(path)


def test_reading_from_a_position_counts_lines_from_the_start_of_the_file(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(lines(A, B) + "oops\n")
    start = position_at(path, len(lines(A)))
    assert start == Position(len(lines(A)), 1)
    with pytest.raises(JsonlError, match="line 3"):
        read_records(path, start)
    assert read_records(path, start, limit=1) == ([B], Position(len(lines(A, B)), 2))


def test_the_position_at_the_end_stops_before_a_torn_line(tmp_path):
    path = tmp_path / "m.jsonl"
    assert position_at(path) == START  # no file yet
    path.write_text(lines(A, B) + '{"kind"')
    assert position_at(path) == Position(len(lines(A, B)), 2)


def test_a_new_writer_cuts_off_the_line_a_dead_writer_tore(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(lines(A) + '{"kind": "st')  # a writer killed mid-line
    sink = JsonlSink(path)
    sink.write(B)
    sink.close()
    assert path.read_text() == lines(A, B) and read_jsonl(path) == [A, B]


def test_writers_in_turn_append_whole_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    sinks = [JsonlSink(path), JsonlSink(path)]
    for step in range(20):
        sinks[step % 2].write({"kind": "step", "step": step, "text": "x" * 10_000})
    assert [r["step"] for r in read_jsonl(path)] == list(range(20))


def test_non_finite_numbers_become_null_at_any_depth():
    record = {"loss": math.nan, "terms": {"a": math.inf, "b": [1.0, -math.inf]}, "step": 3}
    assert finite(record) == {"loss": None, "terms": {"a": None, "b": [1.0, None]}, "step": 3}


def test_the_run_view_waits_for_a_torn_line_instead_of_failing(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(lines(A) + '{"kind": "st')
    finish = threading.Event()
    records = tail_records(path, done=finish.is_set, poll_seconds=0.01)
    assert next(records) == A
    path.write_text(lines(A, B, C))
    finish.set()
    assert list(records) == [B, C]


def test_the_shipper_sends_complete_lines_only_and_resumes_from_its_offset(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(lines(A) + '{"kind": "st')
    sent: list[list[dict]] = []
    shipper = Shipper(path, "http://unused", "j1", "token")
    shipper._post = lambda records: sent.append(records) or True
    assert shipper.ship_once() and sent == [[A]]
    path.write_text(lines(A, B))
    again = Shipper(path, "http://unused", "j1", "token")  # a driver that restarted: the offset file says where
    again._post = lambda records: sent.append(records) or True
    assert again.position == Position(len(lines(A)), 1)
    assert again.ship_once() and sent == [[A], [B]]
