"""The HTTP API, one job's life: who sees it, its views, cancel, worker records, /metrics, dry runs.

Over SQLite and Postgres, with a fake cluster and no scheduler (helpers shared with test_api.py).
"""

from __future__ import annotations

import json
import shutil

import pytest

from service.records import store_records
from service.states import State
from tests.planner.test_decisions import plan
from tests.service.api_helpers import CPU, make_running, problem_fields, submitted, total_jobs
from tests.service.conftest import ADMIN, ALICE, BOB, auth, job_spec

# -- who sees what ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "suffix"), [("get", ""), ("get", "/plan"), ("get", "/events"),
                                                 ("get", "/metrics"), ("get", "/logs"), ("post", "/cancel")])
def test_another_users_job_looks_missing(client, store, spec, method, suffix):
    job_id = submitted(client, spec)
    response = getattr(client, method)(f"/v1/jobs/{job_id}{suffix}", headers=BOB)
    assert response.status_code == 404
    assert store.get(job_id).state == State.QUEUED  # bob's cancel changed nothing


def test_a_missing_job_is_404(client):
    assert client.get("/v1/jobs/jnothere", headers=ALICE).status_code == 404


def test_list_shows_only_the_callers_jobs_and_the_admin_sees_all(client, spec):
    mine, theirs = submitted(client, spec, ALICE), submitted(client, spec, BOB)
    assert [j["id"] for j in client.get("/v1/jobs", headers=ALICE).json()["items"]] == [mine]
    assert [j["id"] for j in client.get("/v1/jobs", headers=BOB).json()["items"]] == [theirs]
    assert {j["id"] for j in client.get("/v1/jobs", headers=ADMIN).json()["items"]} == {mine, theirs}


def test_the_admin_reads_and_cancels_anyones_job(client, spec):
    job_id = submitted(client, spec)
    assert client.get(f"/v1/jobs/{job_id}", headers=ADMIN).json()["owner"] == "alice"
    assert client.get(f"/v1/jobs/{job_id}/events", headers=ADMIN).status_code == 200
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=ADMIN)
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
    assert client.get(f"/v1/jobs/{job_id}/events", headers=ALICE).json()["items"][-1]["reason"] == "cancelled by admin"


# -- one job's views -------------------------------------------------------------------------------------------


def test_the_plan_is_409_until_the_job_is_planned(client, store, spec):
    job_id = submitted(client, spec)
    response = client.get(f"/v1/jobs/{job_id}/plan", headers=ALICE)
    assert response.status_code == 409 and "queued" in response.json()["detail"]
    stored = plan("7B", "A10G", seq_len=1024).to_dict()
    store.set_plan(job_id, stored)
    assert client.get(f"/v1/jobs/{job_id}/plan", headers=ALICE).json() == stored
    assert client.get(f"/v1/jobs/{job_id}", headers=ALICE).json()["planned"] is True


def test_a_plan_stored_by_another_version_is_409_naming_it(client, store, spec):
    job_id = submitted(client, spec)
    store.set_plan(job_id, {**plan("7B", "A10G", seq_len=1024).to_dict(), "schema_version": 99})
    response = client.get(f"/v1/jobs/{job_id}/plan", headers=ALICE)
    assert response.status_code == 409 and "version 99" in response.json()["detail"]


def test_events_list_each_state_change(client, store, spec):
    job_id = submitted(client, spec)
    make_running(store, job_id)
    events = client.get(f"/v1/jobs/{job_id}/events", headers=ALICE).json()["items"]
    assert [(e["from"], e["to"]) for e in events] == [(None, "queued"), ("queued", "planning"),
                                                      ("planning", "running")]
    assert all(e["at"] and e["reason"] for e in events)


def test_logs_come_from_the_cluster(client, store, cluster, spec):
    job_id = submitted(client, spec)
    assert client.get(f"/v1/jobs/{job_id}/logs", headers=ALICE).text == ""  # not on Ray yet
    make_running(store, job_id)
    cluster.log_text[f"ray-{job_id}"] = "step 1\nstep 2\n"
    response = client.get(f"/v1/jobs/{job_id}/logs", headers=ALICE)
    assert response.status_code == 200 and response.text == "step 1\nstep 2\n"


class RayDown:
    """The services when Ray's dashboard does not answer."""

    def logs(self, job):
        raise ConnectionError("the dashboard does not answer")


def test_a_log_ray_cannot_give_is_503_and_the_job_is_unharmed(app, client, store, spec):
    from service.api.deps import get_services

    job_id = submitted(client, spec)
    app.dependency_overrides[get_services] = RayDown
    response = client.get(f"/v1/jobs/{job_id}/logs", headers=ALICE)
    assert response.status_code == 503 and "not available now" in response.json()["detail"]
    assert store.get(job_id).state == State.QUEUED


# -- cancel -----------------------------------------------------------------------------------------------------


def test_cancel_a_queued_job_ends_it(client, spec):
    job_id = submitted(client, spec)
    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=ALICE)
    assert response.status_code == 202
    assert response.json()["state"] == "cancelled" and response.json()["finished_at"]


def test_cancel_a_running_job_asks_it_to_stop_and_again_is_harmless(client, store, spec):
    job_id = submitted(client, spec)
    make_running(store, job_id)
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=ALICE).json()["state"] == "cancelling"
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=ALICE).json()["state"] == "cancelling"
    assert [e.to_state for e in store.events(job_id)].count("cancelling") == 1


def test_cancel_an_ended_job_is_409(client, store, spec):
    job_id = submitted(client, spec)
    client.post(f"/v1/jobs/{job_id}/cancel", headers=ALICE)
    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=ALICE)
    assert response.status_code == 409 and "cancelled" in response.json()["detail"]
    assert len(store.events(job_id)) == 2


# -- worker records and metrics ---------------------------------------------------------------------------------


def step(n: int, loss: float = 1.0) -> dict:
    return {"kind": "step", "step": n, "total_steps": 10, "loss": loss, "tokens_per_second": 1234.5, "mfu": 0.25,
            "memory_peak_bytes": 3 * 2**30, "memory_predicted_bytes": 4 * 2**30}


def post_records(client, job_id: str, token: str, records: list[dict]):
    return client.post(f"/v1/jobs/{job_id}/records", json={"records": records}, headers=auth(token))


def test_records_need_the_jobs_worker_token(client, store, spec):
    job_id = submitted(client, spec)
    assert post_records(client, job_id, "anything", [step(1)]).status_code == 404  # no token issued yet
    store.issue_worker_token(job_id)
    for token in ("wrong", "tok-alice", "tok-admin"):
        assert post_records(client, job_id, token, [step(1)]).status_code == 404
    assert post_records(client, "jnothere", "wrong", [step(1)]).status_code == 404
    assert store.metrics(job_id) == []


def test_records_posted_twice_are_stored_once(client, store, spec):
    job_id = submitted(client, spec)
    token = store.issue_worker_token(job_id)
    batch = [step(1), step(2), {"kind": "log", "message": "ignored"}]
    for _ in range(2):
        response = post_records(client, job_id, token, batch)
        assert response.status_code == 200 and response.json() == {"stored_steps": 2}
    metrics = client.get(f"/v1/jobs/{job_id}/metrics", headers=ALICE).json()["items"]
    assert [m["step"] for m in metrics] == [1, 2]
    assert metrics[0]["loss"] == 1.0 and metrics[0]["stored_at"]
    since = client.get(f"/v1/jobs/{job_id}/metrics", params={"since_step": 1}, headers=ALICE).json()["items"]
    assert [m["step"] for m in since] == [2]
    progress = client.get(f"/v1/jobs/{job_id}", headers=ALICE).json()["progress"]
    assert (progress["step"], progress["total_steps"], progress["mfu"]) == (2, 10, 0.25)


def test_a_batch_past_postgres_bind_parameter_limit_is_stored_whole(client, store, spec):
    # 8,000 step rows x 9 columns is past Postgres' 65,535 parameters a statement (was a 500 there)
    job_id = submitted(client, spec)
    token = store.issue_worker_token(job_id)
    response = post_records(client, job_id, token, [step(n) for n in range(1, 8_001)])
    assert response.status_code == 200 and response.json() == {"stored_steps": 8_000}
    assert [m.step for m in store.metrics(job_id, limit=100_000)] == list(range(1, 8_001))


def test_prometheus_exposes_job_counts_by_state(client, spec):
    submitted(client, spec)
    submitted(client, spec)
    text = client.get("/metrics").text
    assert 'effft_jobs{state="queued"} 2.0' in text
    assert 'effft_jobs{state="running"} 0.0' in text
    assert "effft_planner_memory_error_ratio" in text
    assert f'effft_gpu_memory_bytes{{gpu="{CPU}",kind="total",node="local"}} 1.7179869184e+10' in text


def test_prometheus_exposes_a_running_jobs_latest_step(client, store, spec):
    job_id = submitted(client, spec)
    make_running(store, job_id)
    token = store.issue_worker_token(job_id)
    post_records(client, job_id, token, [step(1), step(2, loss=0.5)])
    text = client.get("/metrics", headers=ADMIN).text
    for name, value in [("effft_job_tokens_per_second", 1234.5), ("effft_job_mfu", 0.25),
                        ("effft_job_memory_peak_bytes", float(3 * 2**30)),
                        ("effft_job_memory_predicted_bytes", float(4 * 2**30)), ("effft_job_step", 2.0),
                        ("effft_job_loss", 0.5)]:
        line = next((x for x in text.splitlines() if x.startswith(f'{name}{{job_id="{job_id}"')), None)
        assert line is not None, name
        assert float(line.rsplit(" ", 1)[1]) == value, line
    assert 'effft_jobs{state="running"} 1.0' in text
    assert f'effft_gpu_memory_bytes{{gpu="{CPU}",kind="held",node="local"}} 1.7179869184e+10' in text


def test_prometheus_leaves_out_jobs_without_records(client, store, spec):
    job_id = submitted(client, spec)
    make_running(store, job_id)
    assert f'job_id="{job_id}"' not in client.get("/metrics", headers=ADMIN).text


# -- dry run, inventory, health, docs -----------------------------------------------------------------------------


@pytest.fixture
def model_in_roots(roots, tiny_model):
    """The tiny model copied under the dataset root: local model folders are confined like datasets."""
    return shutil.copytree(tiny_model, roots["datasets"] / "model")


def test_a_local_model_outside_the_roots_is_refused(client, store, roots, tiny_model):
    body = job_spec(tiny_model, roots["datasets"] / "train.jsonl")
    assert problem_fields(client.post("/v1/plan", content=json.dumps(body), headers=ALICE)) == {"model.path"}
    assert problem_fields(client.post("/v1/jobs", content=json.dumps(body), headers=ALICE)) == {"model.path"}
    assert total_jobs(store) == 0


def test_a_dry_run_plan_returns_a_plan_and_stores_nothing(client, store, roots, model_in_roots):
    body = job_spec(model_in_roots, roots["datasets"] / "train.jsonl")
    response = client.post("/v1/plan", content=json.dumps(body), headers=ALICE)
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["gpu"] == CPU and plan["gpus"] == 1
    assert total_jobs(store) == 0


def test_a_dry_run_that_cannot_fit_is_422_with_the_numbers(client, store, roots, model_in_roots):
    body = job_spec(model_in_roots, roots["datasets"] / "train.jsonl",
                    resources={"gpus": 1, "max_memory_fraction": 1e-4})
    response = client.post("/v1/plan", content=json.dumps(body), headers=ALICE)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["infeasible"] and detail["needed_bytes"] > detail["budget_bytes"]
    assert total_jobs(store) == 0


def test_a_dry_run_of_a_bad_spec_lists_its_problems(client, store, spec, tmp_path):
    spec.update({"method": "sideways"})
    assert "method" in problem_fields(client.post("/v1/plan", content=json.dumps(spec), headers=ALICE))
    spec.update({"method": "lora", "dataset": {"path": str(tmp_path / "x.jsonl")}})
    assert problem_fields(client.post("/v1/plan", content=json.dumps(spec), headers=ALICE)) == {"dataset.path"}
    assert total_jobs(store) == 0


def test_a_dry_run_for_a_model_that_cannot_be_read_is_422(client, spec, tmp_path):
    spec["model"] = str(tmp_path / "no-model-here")
    response = client.post("/v1/plan", content=json.dumps(spec), headers=ALICE)
    assert response.status_code == 422, response.text


def test_inventory_lists_the_clusters_nodes_with_what_is_free(client, store, spec):
    nodes = client.get("/v1/inventory", headers=ALICE).json()["nodes"]
    assert nodes == [{"node": "local", "gpu": CPU, "count": 1, "memory_bytes": 16 * 2**30, "free": 1,
                      "devices": [{"index": 0, "whole": False, "held_bytes": 0, "used_bytes": 0, "jobs": []}]}]
    job_id = submitted(client, spec)
    make_running(store, job_id)  # placed before packing existed: it holds the device whole
    node = client.get("/v1/inventory", headers=ALICE).json()["nodes"][0]
    assert node["free"] == 0 and node["devices"][0]["whole"] and node["devices"][0]["jobs"][0]["id"] == job_id


def test_healthz_answers_without_a_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True}


def test_the_openapi_schema_and_docs_answer(client):
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert {"/v1/jobs", "/v1/jobs/{job_id}/cancel", "/v1/plan"} <= set(schema.json()["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_records_that_are_not_a_list_of_objects_are_422(client, store, spec):
    job_id = submitted(client, spec)
    token = store.issue_worker_token(job_id)
    for body in ({"records": "x"}, {"records": [1]}, ["not", "an", "object"]):
        response = client.post(f"/v1/jobs/{job_id}/records", json=body, headers=auth(token))
        assert response.status_code == 422 and response.json()["detail"][0]["field"] == "records"
    assert store.metrics(job_id) == []


def test_odd_tokens_cursors_and_step_records_get_4xx_not_500(client, store, spec):
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer t\u00e9".encode()}).status_code == 401
    response = client.get("/v1/jobs", params={"cursor": "2024-01-01T00:00:00|jx"}, headers=ALICE)
    assert response.status_code == 422
    job_id = submitted(client, spec)
    token = store.issue_worker_token(job_id)
    for bad in ("abc", [1], 1.5, -1, True):
        response = client.post(f"/v1/jobs/{job_id}/records", headers=auth(token),
                               json={"records": [{"kind": "step", "step": bad}]})
        assert response.status_code == 422, bad
    nan = '{"records": [{"kind": "step", "step": 1, "loss": NaN}]}'
    response = client.post(f"/v1/jobs/{job_id}/records", headers={**auth(token), "Content-Type": "application/json"},
                           content=nan)
    assert response.status_code == 200
    assert client.get(f"/v1/jobs/{job_id}/metrics", headers=ALICE).json()["items"][0]["loss"] is None


def test_calibration_lists_the_factors_fitted_from_measured_runs(client, store, spec):
    assert client.get("/v1/calibration", headers=ALICE).json() == {"items": []}
    job_id = submitted(client, spec)
    planned = plan("7B", "A10G", seq_len=1024)
    store.set_plan(job_id, planned.to_dict())
    summary = {"kind": "summary", "memory_peak_bytes": int(planned.memory.total * 1.1),
               "memory_predicted_bytes": planned.memory.total, "tokens_per_second": 100.0}
    store_records(store, store.get(job_id), [summary])
    [row] = client.get("/v1/calibration", headers=ALICE).json()["items"]
    assert (row["device"], row["family"], row["method"], row["runs"]) == ("A10G", "llama", planned.settings.method, 1)
    assert row["memory"] == pytest.approx(1.1 ** (1 / 1.02), rel=1e-3)
    assert client.get("/v1/calibration").status_code == 401
