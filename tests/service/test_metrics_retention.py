"""How long step metrics stay visible: Prometheus' per-job series cover running jobs and jobs that ended within
EFFFT_METRICS_JOB_RETENTION_HOURS; the store keeps every step, and GET /v1/jobs/{id}/metrics answers at most
10,000 of them by default (`limit` up to 100,000; `since_step` reads on)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session

from service.db import Job, utcnow
from service.states import State
from tests.service.api_helpers import make_running, submitted
from tests.service.conftest import ADMIN, ALICE, auth

SERIES = "effft_job_step{"


def job_with_steps(client, store, spec, name: str, steps: int = 1) -> str:
    job_id = submitted(client, {**spec, "name": name})
    make_running(store, job_id)
    token = store.issue_worker_token(job_id)
    records = [{"kind": "step", "step": n, "loss": 1.0} for n in range(1, steps + 1)]
    response = client.post(f"/v1/jobs/{job_id}/records", json={"records": records}, headers=auth(token))
    assert response.status_code == 200, response.text
    return job_id


def ended_hours_ago(store, job_id: str, hours: float) -> None:
    assert store.transition(job_id, State.RUNNING, State.SUCCEEDED)
    with Session(store.engine) as session:  # move its end back in time
        session.exec(update(Job).where(Job.id == job_id).values(finished_at=utcnow() - timedelta(hours=hours)))
        session.commit()


def series_job_ids(client) -> set[str]:
    text = client.get("/metrics", headers=ADMIN).text
    return {line.split('job_id="')[1].split('"')[0] for line in text.splitlines() if line.startswith(SERIES)}


def test_per_job_series_cover_running_jobs_and_jobs_ended_within_the_retention(client, store, spec, settings):
    running = job_with_steps(client, store, spec, "running")
    recent = job_with_steps(client, store, spec, "recent")
    old = job_with_steps(client, store, spec, "old")
    ended_hours_ago(store, recent, 23)
    ended_hours_ago(store, old, 25)
    assert settings.metrics_job_retention_hours == 24  # the documented default
    assert series_job_ids(client) == {running, recent}
    settings.metrics_job_retention_hours = 26  # read at each scrape
    assert series_job_ids(client) == {running, recent, old}
    settings.metrics_job_retention_hours = 1
    assert series_job_ids(client) == {running}
    # an ended job's steps stay in the store past the window
    assert [m["step"] for m in client.get(f"/v1/jobs/{old}/metrics", headers=ALICE).json()["items"]] == [1]


def test_an_answer_holds_at_most_10000_steps_and_since_step_reads_the_rest(client, store, spec):
    job_id = job_with_steps(client, store, spec, "long", steps=10_003)

    def steps(**params):
        response = client.get(f"/v1/jobs/{job_id}/metrics", params=params, headers=ALICE)
        assert response.status_code == 200, response.text
        return [m["step"] for m in response.json()["items"]]

    assert steps() == list(range(1, 10_001))
    assert steps(since_step=10_000) == [10_001, 10_002, 10_003]
    assert steps(limit=100_000) == list(range(1, 10_004))
    assert client.get(f"/v1/jobs/{job_id}/metrics", params={"limit": 100_001}, headers=ALICE).status_code == 422
