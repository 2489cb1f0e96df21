"""What the routes depend on: the app's settings, job store and cluster services, the bearer token, the caller it
names, and the caller's own job. Tests swap any of them with `app.dependency_overrides[get_store] = ...`."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from planner import Inventory
from service.auth import Caller, caller_for, is_worker_token
from service.db import Job
from service.settings import Settings
from service.store import JobStore


class Services(Protocol):
    """The cluster as the routes use it (service.server.Services on Ray; a fake in tests)."""

    def inventory(self) -> Inventory: ...

    def inventory_view(self, store: JobStore) -> dict: ...

    def logs(self, job: Job) -> str: ...

    def registry_for(self, store: JobStore, scope: str) -> CollectorRegistry: ...


# create_app keeps what it was given on app.state; these hand it to the routes, and are what tests override.
# Whatever does not block is `async def`: FastAPI runs a plain `def` dependency on a worker thread, and each such
# hop (a thread wakeup and a loop wakeup, the GIL passed twice) cost more than the rest of a request's work.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


async def get_services(request: Request) -> Services:
    return request.app.state.services


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
ServicesDep = Annotated[Services, Depends(get_services)]

# auto_error=False: a missing or malformed header is ours to answer (401 in the API's error shape; /metrics and
# the worker's records take no token or another kind). Declaring it puts the bearer scheme in /openapi.json.
bearer = HTTPBearer(auto_error=False, description="a user's or admin's token; /metrics also takes a metrics token, "
                                                  "/v1/jobs/{job_id}/records only the job's worker token")


async def get_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str | None:
    """The bearer token of the request, the only place the Authorization header is read; None without one."""
    if credentials is None:
        return None
    return credentials.credentials.strip() or None


TokenDep = Annotated[str | None, Depends(get_token)]


async def get_caller(settings: SettingsDep, token: TokenDep) -> Caller:
    found = caller_for(settings, token)
    if found is None:
        raise HTTPException(401, "missing or unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
    return found


CallerDep = Annotated[Caller, Depends(get_caller)]


def owned_job(store: JobStore, job_id: str, caller: Caller) -> Job:
    """The job if the caller may see it (its owner, or an admin)."""
    job = store.get(job_id, caller.owner_filter)
    if job is None:
        raise no_such_job(job_id)
    return job


def no_such_job(job_id: str) -> HTTPException:
    """404 for a job the caller may not see: someone else's job looks exactly like a missing one."""
    return HTTPException(404, f"no job {job_id}")


def get_owned_job(job_id: str, caller: CallerDep, store: StoreDep) -> Job:
    return owned_job(store, job_id, caller)


OwnedJobDep = Annotated[Job, Depends(get_owned_job)]


def get_reporting_job(job_id: str, token: TokenDep, store: StoreDep) -> Job:
    """The job whose worker holds this token: the only caller that may post a job's records."""
    job = store.get(job_id)
    if job is None or not is_worker_token(token, job.worker_token):
        raise HTTPException(404, f"no job {job_id} takes records with this token")
    return job


ReportingJobDep = Annotated[Job, Depends(get_reporting_job)]
