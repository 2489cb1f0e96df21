"""/metrics shows each caller only the per-job series it may see (issue 9, finding 7): no token gets fleet series
only, a user its own jobs, an admin or a metrics token (Prometheus) every job."""

from __future__ import annotations

from tests.service.api_helpers import make_running, submitted
from tests.service.conftest import ADMIN, ALICE, BOB, auth, job_spec

SERIES = "effft_job_tokens_per_second{"


def running_with_a_step(client, store, spec, headers, name: str) -> str:
    job_id = submitted(client, {**spec, "name": name}, headers)
    make_running(store, job_id)
    token = store.issue_worker_token(job_id)
    record = {"kind": "step", "step": 1, "loss": 1.0, "tokens_per_second": 10.0}
    assert client.post(f"/v1/jobs/{job_id}/records", json={"records": [record]}, headers=auth(token)).status_code == 200
    return job_id


def job_ids_in(text: str) -> set[str]:
    return {line.split('job_id="')[1].split('"')[0] for line in text.splitlines() if line.startswith(SERIES)}


def test_each_caller_sees_only_the_jobs_it_may(client, store, spec, settings):
    alices = running_with_a_step(client, store, spec, ALICE, "alice-secret-project")
    bobs = running_with_a_step(client, store, job_spec("org/model", "org/data"), BOB, "bob-secret-project")
    settings.metrics_tokens = ["tok-prometheus"]
    anonymous = client.get("/metrics").text
    assert job_ids_in(anonymous) == set() and "secret-project" not in anonymous
    assert 'effft_jobs{state="running"} 2.0' in anonymous  # fleet series stay public
    assert job_ids_in(client.get("/metrics", headers=ALICE).text) == {alices}
    assert job_ids_in(client.get("/metrics", headers=BOB).text) == {bobs}
    for headers in (ADMIN, auth("tok-prometheus")):
        assert job_ids_in(client.get("/metrics", headers=headers).text) == {alices, bobs}
    assert job_ids_in(client.get("/metrics", headers=auth("wrong")).text) == set()


def test_a_metrics_token_reads_nothing_else(client, settings):
    settings.metrics_tokens = ["tok-prometheus"]
    for path in ("/v1/jobs", "/v1/inventory"):
        assert client.get(path, headers=auth("tok-prometheus")).status_code == 401
