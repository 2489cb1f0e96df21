"""/v1/jobs: submit, list, one job and its events, step metrics and Ray log, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from planner.errors import FieldProblem
from service.api.deps import CallerDep, OwnedJobDep, ServicesDep, SettingsDep, StoreDep, no_such_job, owned_job
from service.api.models import EventsPublic, JobPublic, JobsPublic, MetricsPublic
from service.api.openapi import JOB_BODY, errors
from service.body import BadInput, checked_then
from service.states import CANCEL_TARGET, State
from service.store import IdempotencyConflict
from service.views import event_view, job_answer, job_view, metric_view

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=errors(401))

TEXT = {"text/plain": {"schema": {"type": "string"}}}
CANCEL_TRIES = 5


@router.post("", status_code=201, response_model=JobPublic, openapi_extra=JOB_BODY,
             responses={200: {"model": JobPublic, "description": "the job an earlier submit with this "
                                                                 "Idempotency-Key made"}, **errors(409, 413)})
async def submit(request: Request, caller: CallerDep, settings: SettingsDep, store: StoreDep,
                 idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None):
    """Submit a job spec (JSON or YAML); it is queued, then planned and run by the scheduler."""
    def store_it(spec):  # on the thread that checked the spec: the store blocks, the event loop must not
        return store.submit(caller.user, spec.model_dump(mode="json"), idempotency_key)

    try:
        job, created = await checked_then(request, settings, caller.user, store_it)
    except IdempotencyConflict as error:
        raise HTTPException(409, str(error)) from None
    return job_answer(job, status_code=201 if created else 200)


@router.get("", response_model=JobsPublic)
def list_jobs(caller: CallerDep, store: StoreDep, state: State | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None):
    """The caller's jobs (an admin's: everyone's), newest first, a page at a time."""
    try:
        page = store.list(caller.owner_filter, state, limit, cursor)
    except ValueError:
        raise BadInput([FieldProblem("cursor", cursor, "not a cursor this API returned; omit it to "
                                                       "start from the newest job")]) from None
    return {"items": [job_view(j) for j in page.items], "next_cursor": page.next_cursor}


@router.get("/{job_id}", response_model=JobPublic, responses=errors(404))
async def get_job(job_id: str, caller: CallerDep, store: StoreDep):
    """A job with its latest step as `progress`."""
    job, latest = await run_in_threadpool(store.get_with_progress, job_id, caller.owner_filter)
    if job is None:
        raise no_such_job(job_id)
    return job_answer(job, latest)


@router.get("/{job_id}/events", response_model=EventsPublic, responses=errors(404))
def get_events(job: OwnedJobDep, store: StoreDep):
    """Every state change of the job, oldest first."""
    return {"items": [event_view(e) for e in store.events(job.id)]}


@router.get("/{job_id}/metrics", response_model=MetricsPublic, responses=errors(404))
def get_metrics(job: OwnedJobDep, store: StoreDep, since_step: Annotated[int, Query(ge=0)] = 0,
                limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000):
    """The job's step records after `since_step`, in step order."""
    return {"items": [metric_view(m) for m in store.metrics(job.id, since_step, limit)]}


@router.get("/{job_id}/logs", response_class=PlainTextResponse, responses={200: {"content": TEXT}, **errors(404, 503)})
def get_logs(job: OwnedJobDep, services: ServicesDep) -> str:
    """The Ray job's log (empty until the job is on Ray)."""
    try:
        return services.logs(job)
    except Exception as error:  # Ray unreachable or the job gone from it: the job itself is fine
        raise HTTPException(503, f"Ray's log of job {job.id} is not available now: {error}") from None


@router.post("/{job_id}/cancel", status_code=202, response_model=JobPublic, responses=errors(404, 409, 503))
def cancel(job_id: str, caller: CallerDep, store: StoreDep):
    """Cancel a job: a queued or waiting one ends now, a running one is asked to stop (`cancelling`)."""
    for _ in range(CANCEL_TRIES):  # the scheduler may move the job between our read and our write: read again
        job = owned_job(store, job_id, caller)
        target = CANCEL_TARGET.get(State(job.state))
        if target is None:
            raise HTTPException(409, f"job {job_id} has already ended ({job.state}); nothing to cancel")
        if target == job.state or store.transition(job_id, State(job.state), target, f"cancelled by {caller.user}"):
            return job_view(store.get(job_id))
    raise HTTPException(503, "the job kept changing state; try again")
