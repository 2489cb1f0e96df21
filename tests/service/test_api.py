"""The HTTP API through FastAPI's TestClient, over SQLite and Postgres, with a fake cluster and no scheduler."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.service.api_helpers import problem_fields, submit, submitted, total_jobs
from tests.service.conftest import ALICE, auth

# -- auth ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/v1/jobs"), ("post", "/v1/jobs"), ("get", "/v1/jobs/jx"), ("get", "/v1/jobs/jx/plan"),
    ("get", "/v1/jobs/jx/events"), ("get", "/v1/jobs/jx/metrics"), ("get", "/v1/jobs/jx/logs"),
    ("post", "/v1/jobs/jx/cancel"), ("post", "/v1/plan"), ("get", "/v1/inventory")])
@pytest.mark.parametrize("headers", [{}, auth("unknown"), {"Authorization": "tok-alice"}],
                         ids=["no-token", "unknown-token", "not-bearer"])
def test_every_v1_route_needs_a_known_bearer_token(client, method, path, headers):
    response = getattr(client, method)(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


# -- submit ---------------------------------------------------------------------------------------------------


def test_submit_json_makes_a_queued_job(client, spec):
    response = submit(client, spec)
    assert response.status_code == 201
    job = response.json()
    assert (job["state"], job["owner"], job["name"], job["planned"]) == ("queued", "alice", "test", False)
    assert job["spec"]["dataset"]["path"] == spec["dataset"]["path"]
    assert client.get(f"/v1/jobs/{job['id']}", headers=ALICE).json()["id"] == job["id"]


def test_submit_yaml_makes_a_queued_job(client, spec):
    response = client.post("/v1/jobs", content=yaml.safe_dump(spec), headers={**ALICE,
                                                                               "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["training"]["max_steps"] == 4


def test_a_bad_spec_lists_every_problem_and_stores_nothing(client, store, spec):
    bad = {**spec, "name": "bad name!", "method": "sideways", "bogus": 1,
           "training": {"max_steps": 0, "learning_rate": 5}}
    fields = problem_fields(submit(client, bad))
    assert {"name", "method", "bogus", "training.max_steps", "training.learning_rate"} <= fields
    problem = submit(client, bad).json()["detail"][0]
    assert set(problem) == {"field", "value", "message"}
    assert total_jobs(store) == 0


def test_a_missing_field_is_named(client, spec):
    del spec["training"]
    assert "training" in problem_fields(submit(client, spec))


@pytest.mark.parametrize("body", [b"", b"name: [unclosed", b"- a list\n- not a mapping", b"\xff\xfe"],
                         ids=["empty", "bad-yaml", "list", "not-utf8"])
def test_a_body_that_is_not_a_mapping_is_422(client, store, body):
    response = client.post("/v1/jobs", content=body, headers=ALICE)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] in ("<body>", "<root>")
    assert total_jobs(store) == 0


def test_a_too_large_body_is_413_naming_the_body(client, store, spec):
    spec["padding"] = "x" * 1_000_001
    response = submit(client, spec)
    assert response.status_code == 413
    assert [p["field"] for p in response.json()["detail"]] == ["<body>"]
    assert total_jobs(store) == 0


def test_an_idempotent_retry_returns_the_same_job_with_200(client, store, spec):
    first = submit(client, spec, key="key-1")
    again = submit(client, spec, key="key-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert total_jobs(store) == 1


def test_an_idempotency_key_reused_with_another_body_is_409(client, store, spec):
    submit(client, spec, key="key-1")
    response = submit(client, {**spec, "name": "other"}, key="key-1")
    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["detail"]
    assert total_jobs(store) == 1


# -- path confinement and remote code -----------------------------------------------------------------------


def test_a_dataset_outside_the_roots_is_refused_naming_the_roots(client, store, spec, roots, tmp_path):
    spec["dataset"]["path"] = str(tmp_path / "elsewhere" / "train.jsonl")
    response = submit(client, spec)
    assert problem_fields(response) == {"dataset.path"}
    assert str(roots["datasets"].resolve()) in response.json()["detail"][0]["message"]
    assert total_jobs(store) == 0


def test_a_dataset_escaping_the_roots_with_dotdot_is_refused(client, spec, roots):
    spec["dataset"]["path"] = str(roots["datasets"] / ".." / "secret.jsonl")
    assert problem_fields(submit(client, spec)) == {"dataset.path"}


def test_a_relative_dataset_path_is_refused(client, spec):
    spec["dataset"]["path"] = "data/train.jsonl"
    response = submit(client, spec)
    assert problem_fields(response) == {"dataset.path"}
    assert "absolute" in response.json()["detail"][0]["message"]


def test_a_hub_dataset_id_is_accepted(client, spec):
    spec["dataset"]["path"] = "org/name"
    assert submit(client, spec).status_code == 201


def test_an_output_dir_in_the_owners_area_is_accepted_and_elsewhere_refused(client, spec, roots, tmp_path):
    assert submit(client, {**spec, "output": {"dir": str(roots["outputs"] / "alice" / "run1")}}).status_code == 201
    for elsewhere in (tmp_path / "elsewhere", roots["outputs"] / "run1", roots["outputs"] / "bob" / "run1"):
        response = submit(client, {**spec, "output": {"dir": str(elsewhere)}})
        assert problem_fields(response) == {"output.dir"}
        assert str(roots["outputs"].resolve() / "alice") in response.json()["detail"][0]["message"]


def test_trust_remote_code_is_refused_unless_allowed(client, spec, settings):
    spec["model"] = {"path": "org/model", "trust_remote_code": True}
    assert problem_fields(submit(client, spec)) == {"model.trust_remote_code"}
    settings.allow_trust_remote_code = True  # the app reads the same Settings object
    assert submit(client, spec).status_code == 201


def test_every_policy_problem_is_listed_at_once(client, store, spec, tmp_path):
    spec.update({"dataset": {"path": str(tmp_path / "x.jsonl")}, "output": {"dir": "/tmp/out"},
                 "model": {"path": "org/model", "trust_remote_code": True}})
    assert problem_fields(submit(client, spec)) == {"dataset.path", "output.dir", "model.trust_remote_code"}
    assert total_jobs(store) == 0


# -- listing -----------------------------------------------------------------------------------------------------


def test_list_pages_through_every_job_once_newest_first(client, spec):
    ids = [submitted(client, {**spec, "name": f"j{i}"}) for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params, headers=ALICE).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]


def test_list_filters_by_state(client, spec):
    first, second = submitted(client, spec), submitted(client, spec)
    assert client.post(f"/v1/jobs/{first}/cancel", headers=ALICE).status_code == 202
    cancelled = client.get("/v1/jobs", params={"state": "cancelled"}, headers=ALICE).json()["items"]
    queued = client.get("/v1/jobs", params={"state": "queued"}, headers=ALICE).json()["items"]
    assert [j["id"] for j in cancelled] == [first]
    assert [j["id"] for j in queued] == [second]


@pytest.mark.parametrize("params", [{"cursor": "garbage"}, {"state": "exploded"}, {"limit": 0}, {"limit": 501}])
def test_list_refuses_bad_parameters_with_422(client, params):
    assert client.get("/v1/jobs", params=params, headers=ALICE).status_code == 422


def test_a_bad_cursor_names_the_cursor_field(client):
    assert problem_fields(client.get("/v1/jobs", params={"cursor": "garbage"}, headers=ALICE)) == {"cursor"}


def test_an_empty_idempotency_key_is_422_and_never_a_500(client, store, spec):
    """Found by bench/fuzz_api.py: two submits with `Idempotency-Key: ` collided in the unique index."""
    for _ in range(2):
        response = client.post("/v1/jobs", content=json.dumps(spec), headers={**ALICE, "Idempotency-Key": ""})
        assert problem_fields(response) == {"idempotency-key"}
    assert total_jobs(store) == 0
    for _ in range(2):  # the store treats an empty key as none
        store.submit("alice", {"name": "x"}, "")
    assert total_jobs(store) == 2
