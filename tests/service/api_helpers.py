"""Helpers shared by the API tests (test_api.py, test_api_jobs.py)."""

from __future__ import annotations

import json

from service.states import State
from tests.service.conftest import ALICE, CPU_INVENTORY

CPU = CPU_INVENTORY.groups[0].gpu.name


def submit(client, body: dict, headers=ALICE, key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/jobs", content=json.dumps(body), headers={**headers, **extra})


def submitted(client, body: dict, headers=ALICE) -> str:
    response = submit(client, body, headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def total_jobs(store) -> int:
    return sum(store.counts_by_state().values())


def problem_fields(response) -> set[str]:
    assert response.status_code == 422, response.text
    return {p["field"] for p in response.json()["detail"]}


def make_running(store, job_id: str) -> None:
    assert store.claim_next_queued().id == job_id
    assert store.transition(job_id, State.PLANNING, State.RUNNING, ray_job_id=f"ray-{job_id}", gpus=1,
                            gpu_type=CPU)
