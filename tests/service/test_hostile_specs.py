"""Hostile job specs (issue 9, findings 1, 6 and 8): every one answers 4xx naming the field, stores nothing, and
a job stored before the spec was strict can never take down a listing. SQLite and Postgres."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.db import Job, JobEvent
from service.states import State
from service.store import new_job_id
from tests.service.api_helpers import problem_fields, submit, total_jobs
from tests.service.conftest import ADMIN, ALICE, BOB

# every numeric field of the spec, as (path, a valid value)
NUMERIC_FIELDS = [
    (("seq_len",), 64), (("micro_batch_size",), 1), (("lora", "r"), 8), (("lora", "alpha"), 16.0),
    (("lora", "dropout"), 0.1), (("training", "max_steps"), 4), (("training", "epochs"), 1.0),
    (("training", "effective_batch_size"), 4), (("training", "learning_rate"), 1e-4), (("training", "warmup"), 0.1),
    (("training", "weight_decay"), 0.01), (("training", "max_grad_norm"), 1.0), (("training", "seed"), 1),
    (("training", "checkpoint_every_steps"), 2), (("training", "eval", "fraction"), 0.1),
    (("training", "eval", "every_steps"), 2), (("resources", "gpus"), 1),
    (("resources", "max_memory_fraction"), 0.5), (("dataset", "max_samples"), 10)]
BAD_NUMBERS = [float("nan"), float("inf"), float("-inf"), 2**64, 10**30, 1e30, -1, True, "1", [1], {"a": 1}]


def with_value(spec: dict, path: tuple[str, ...], value) -> dict:
    body = json.loads(json.dumps(spec))
    if path == ("training", "epochs"):
        body["training"].pop("max_steps")
    node = body
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return body


def post_raw(client, text: str, headers=ALICE):
    return client.post("/v1/jobs", content=text.encode("utf-8", "surrogatepass"), headers=headers)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(NUMERIC_FIELDS), bad=st.sampled_from(BAD_NUMBERS))
def test_a_non_finite_out_of_range_or_mistyped_number_is_422_naming_its_field(client, store, spec, field, bad):
    path, _ = field  # every value in BAD_NUMBERS is wrong for every numeric field: its type, range or finiteness
    body = json.dumps(with_value(spec, path, bad))  # Python's json writes NaN and Infinity
    response = post_raw(client, body)
    assert response.status_code == 422, (path, bad, response.text)
    assert ".".join(path) in problem_fields(response)
    assert total_jobs(store) == 0


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", "9" * 5000, "18446744073709551616", "true", "1e30"])
def test_yaml_numbers_that_are_not_finite_bounded_integers_are_refused(client, store, spec, text):
    body = json.dumps(spec).replace('"max_steps": 4', f'"max_steps": {text}')  # JSON, or YAML's flow style
    response = client.post("/v1/jobs", content=body, headers=ALICE)
    yaml_body = f"name: x\nmodel: org/model\ndataset: {spec['dataset']['path']}\ntraining: {{max_steps: {text}}}\n"
    for answer in (response, post_raw(client, yaml_body)):
        assert answer.status_code == 422, answer.text
        assert problem_fields(answer) & {"training.max_steps", "<body>"}
    assert total_jobs(store) == 0


def test_the_valid_values_of_every_numeric_field_are_accepted(client, spec):
    for path, good in NUMERIC_FIELDS:
        response = submit(client, with_value(spec, path, good))
        assert response.status_code == 201, (path, response.text)


def test_a_surrogate_pair_is_the_character_and_a_lone_surrogate_is_422(client, store, spec):
    spec["dataset"]["split"] = "\ud83d\ude00"
    body = json.dumps(spec)  # ensure_ascii: the emoji travels as the pair \ud83d\ude00
    assert "\\ud83d\\ude00" in body
    created = post_raw(client, body)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["dataset"]["split"] == "\U0001f600"
    yaml_body = (f"name: test\nmodel: org/model\ndataset: {{path: {spec['dataset']['path']}, "
                 'split: "\\ud83d\\ude00"}\ntraining: {max_steps: 4}\n')
    from_yaml = post_raw(client, yaml_body)  # YAML's escapes give the two halves; they are joined the same way
    assert from_yaml.status_code == 201, from_yaml.text
    assert from_yaml.json()["spec"]["dataset"]["split"] == "\U0001f600"
    before = total_jobs(store)
    lone = json.dumps({**spec, "dataset": {**spec["dataset"], "split": "\ud800"}})
    response = post_raw(client, lone)
    assert problem_fields(response) == {"dataset.split"}
    assert response.json()["detail"][0]["value"] == "\\ud800"  # shown escaped, never as a lone surrogate
    assert total_jobs(store) == before
    key_response = post_raw(client, json.dumps({**spec, "\udcff": 1}))
    assert key_response.status_code == 422 and total_jobs(store) == before


@pytest.mark.parametrize("text", ["a\x00b", "a\nb"])
def test_control_characters_in_paths_are_422(client, store, spec, text):
    spec["output"] = {"dir": text}
    assert problem_fields(submit(client, spec)) == {"output.dir"}
    assert total_jobs(store) == 0


def alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join([*lines, f"name: *a{levels - 1}", "model: org/model", "dataset: org/data",
                      f"training: {{max_steps: 1, eval: {{every_steps: *a{levels - 1}}}}}"])


@pytest.mark.parametrize("body", [alias_bomb(9), alias_bomb(6), "[" * 10_000 + "]" * 10_000,
                                  '{"a":' * 10_000 + "1" + "}" * 10_000, "a: &a [*a]", "x: 2024-13-45"],
                         ids=["bomb-9", "bomb-6", "deep-yaml", "deep-json", "recursive", "bad-date"])
def test_documents_over_the_limits_are_422_with_a_short_answer(client, store, body):
    response = client.post("/v1/jobs", content=body, headers=ALICE)
    assert response.status_code == 422
    assert problem_fields(response) == {"<body>"}
    assert len(response.content) < 2_000
    assert total_jobs(store) == 0


def test_a_body_larger_than_the_limit_is_refused_declared_or_streamed(client, store):
    response = client.post("/v1/jobs", content=b"x" * 50_000_000, headers=ALICE)
    assert response.status_code == 413 and total_jobs(store) == 0
    streamed = client.post("/v1/jobs", content=(b"x" * 1_000_000 for _ in range(50)), headers=ALICE)  # chunked
    assert streamed.status_code == 413 and total_jobs(store) == 0


def test_a_long_bad_value_is_shown_shortened(client, spec):
    spec["method"] = "m" * 5000
    problem = submit(client, spec).json()["detail"][0]
    assert problem["field"] == "method" and len(problem["value"]) < 200


def store_legacy_job(store, owner: str, spec: dict) -> str:
    """A job as an earlier, lenient version stored it: infinities and a lone surrogate in its spec."""
    job = Job(id=new_job_id(), owner=owner, name="legacy", state=State.QUEUED, spec=spec)
    with store.session() as session:
        session.add(job)
        session.add(JobEvent(job_id=job.id, to_state=State.QUEUED, reason="submitted"))
        session.commit()
    return job.id


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # Postgres' JSON refuses Infinity outright
def test_a_stored_job_that_breaks_json_never_takes_down_the_listing(client, store, spec):
    legacy = {**spec, "training": {"max_steps": 4, "epochs": float("inf"), "weight_decay": float("nan")},
              "dataset": {"path": spec["dataset"]["path"], "split": "\ud800"}}
    job_id = store_legacy_job(store, "alice", legacy)
    for headers in (ALICE, ADMIN):
        listing = client.get("/v1/jobs", headers=headers)
        assert listing.status_code == 200, listing.text
        assert [j["id"] for j in listing.json()["items"]] == [job_id]
    shown = client.get(f"/v1/jobs/{job_id}", headers=ALICE).json()["spec"]
    assert shown["training"]["epochs"] == "inf" and shown["dataset"]["split"] == "\\ud800"
    assert client.get(f"/v1/jobs/{job_id}/plan", headers=ALICE).status_code == 409
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=ALICE).status_code == 202
    assert client.get("/v1/jobs", headers=BOB).json()["items"] == []


# -- found in review: each was a 500, a read outside the roots, or a stalled server --------------------------------


def test_a_revision_cannot_climb_out_of_the_hub_cache(client, store, spec):
    spec["model"] = {"path": "org/model", "revision": "../../../home/bob/private-model"}
    assert problem_fields(submit(client, spec)) == {"model.revision"}
    assert total_jobs(store) == 0


@pytest.mark.parametrize("job_id", ["%00", "j%00", "jx", "j" + "0" * 15 + "%00"])
def test_a_job_id_that_no_job_can_have_is_404_even_on_postgres(client, job_id):
    for method, path in (("get", ""), ("get", "/events"), ("post", "/cancel"), ("get", "/plan")):
        assert getattr(client, method)(f"/v1/jobs/{job_id}{path}", headers=ALICE).status_code == 404
    assert client.post(f"/v1/jobs/{job_id}/records", json={"records": []}).status_code == 404
    assert problem_fields(client.get("/v1/jobs", params={"cursor": "2026-01-01T00:00:00+00:00|j\x00"},
                                     headers=ALICE)) == {"cursor"}


def test_a_long_flat_list_is_refused_before_it_is_parsed_whole(client, store):
    # the broken end is never reached: values are counted while the document is read, not after
    response = client.post("/v1/jobs", content="x: [" + "1," * 30_000 + "1]]] broken: [", headers=ALICE)
    assert problem_fields(response) == {"<body>"} and total_jobs(store) == 0
    assert "more than 20,000 values" in response.json()["detail"][0]["message"]


def test_thousands_of_unknown_keys_get_a_short_answer(client, store, spec):
    body = {**spec, **{f"k{i}": 1 for i in range(3000)}}
    response = submit(client, body)
    assert response.status_code == 422 and len(response.json()["detail"]) == 51
    assert "more problems" in response.json()["detail"][-1]["message"]


@pytest.mark.parametrize("late_by", [0.3, 1.0])
def test_a_spec_checked_too_late_is_422_and_never_stored_even_when_its_check_ends_afterwards(
        client, store, spec, monkeypatch, late_by):
    """Submit checks the spec and stores the job on one thread; a check that outlasts PARSE_SECONDS is answered
    with an error, and the store must then never run, even once the check ends."""
    import time

    import service.body

    checked = service.body.checked_spec

    def slow_check(*args):
        time.sleep(late_by)
        return checked(*args)

    monkeypatch.setattr(service.body, "PARSE_SECONDS", 0.1)
    monkeypatch.setattr(service.body, "checked_spec", slow_check)
    response = submit(client, spec, key="late-1")
    assert response.status_code == 422 and "took longer than" in response.text
    time.sleep(late_by + 0.5)  # the check has ended by now; its job must not have been stored
    assert total_jobs(store) == 0
    monkeypatch.setattr(service.body, "checked_spec", checked)
    assert submit(client, spec, key="late-1").status_code == 201  # the key was never used
    assert total_jobs(store) == 1


def test_a_submit_that_finds_no_free_thread_in_time_is_503_and_never_stored(client, store, spec, monkeypatch):
    """Every checking thread busy (hostile bodies, or a store that does not answer): the submit is answered 503,
    not a 422 blaming its spec, and the job is not stored when a thread frees up later."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import service.body

    busy, release = ThreadPoolExecutor(max_workers=1), threading.Event()
    busy.submit(release.wait, 10)
    monkeypatch.setattr(service.body, "PARSERS", busy)
    monkeypatch.setattr(service.body, "PARSE_SECONDS", 0.2)
    response = submit(client, spec, key="busy-1")
    assert response.status_code == 503 and "no free thread" in response.text
    release.set()
    time.sleep(0.5)  # the queued check has had its thread by now
    busy.shutdown(wait=True)
    assert total_jobs(store) == 0
