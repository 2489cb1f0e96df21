"""The HTTP job API (FastAPI; OpenAPI at /docs). Routes under /v1, plus /healthz and /metrics."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from planner import InfeasibleError, PlannerError, SpecError, plan_job
from planner.errors import FieldProblem
from service.auth import Caller, caller_for, metrics_scope
from service.body import BadInput, json_body, spec_from
from service.openapi import JOB_BODY, with_job_schema
from service.records import checked_record, store_records
from service.settings import Settings
from service.states import CANCEL_TARGET, State
from service.store import IdempotencyConflict, JobStore
from service.views import SafeJSONResponse, event_view, job_view, metric_view, problems_view

MAX_RECORDS_BYTES = 8_000_000  # one shipped batch of step records
DRY_RUN_SECONDS = 120.0  # POST /v1/plan waits this long for a hub fetch; the scheduler has its own limit


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers strict JSON in one shape; nothing a client sent can make rendering it fail."""

    @app.exception_handler(BadInput)
    async def _bad_input(_request, error: BadInput):
        return SafeJSONResponse(status_code=error.status, content={"detail": problems_view(error.problems)})

    @app.exception_handler(RequestValidationError)
    async def _bad_parameters(_request, error: RequestValidationError):
        problems = [FieldProblem(".".join(str(part) for part in e["loc"][1:]) or str(e["loc"][0]), e.get("input"),
                                 e["msg"]) for e in error.errors()]
        return SafeJSONResponse(status_code=422, content={"detail": problems_view(problems)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, error: StarletteHTTPException):
        return SafeJSONResponse(status_code=error.status_code, content={"detail": error.detail},
                                headers=getattr(error, "headers", None))


def create_app(settings: Settings, store: JobStore, services) -> FastAPI:
    """`services` gives the cluster: `inventory()`, `inventory_view(store)`, `logs(job)`, `registry_for(scope)`."""
    app = FastAPI(title="effft", version="0.1.0", description="Plan, run and watch LLM fine-tuning jobs.",
                  lifespan=getattr(services, "lifespan", None), default_response_class=SafeJSONResponse)
    _add_error_handlers(app)

    def caller(authorization: str | None = Header(default=None)) -> Caller:
        found = caller_for(settings, authorization)
        if found is None:
            raise HTTPException(401, "missing or unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
        return found

    def owned(job_id: str, who: Caller):
        job = store.get(job_id, who.owner_filter)
        if job is None:  # someone else's job looks exactly like a missing one
            raise HTTPException(404, f"no job {job_id}")
        return job

    v1 = APIRouter(prefix="/v1")

    @v1.post("/jobs", status_code=201, openapi_extra=JOB_BODY)
    async def submit(request: Request, response: Response, who: Caller = Depends(caller),
                     idempotency_key: str | None = Header(default=None, min_length=1, max_length=200)):
        spec = await spec_from(request, settings, who.user)
        try:  # the store blocks: keep it off the event loop
            job, created = await run_in_threadpool(store.submit, who.user, spec.model_dump(mode="json"),
                                                   idempotency_key)
        except IdempotencyConflict as error:
            raise HTTPException(409, str(error)) from None
        response.status_code = 201 if created else 200
        return job_view(job)

    @v1.get("/jobs")
    def list_jobs(who: Caller = Depends(caller), state: State | None = None,
                  limit: int = Query(default=50, ge=1, le=500), cursor: str | None = None):
        try:
            page = store.list(who.owner_filter, state, limit, cursor)
        except ValueError:
            raise BadInput([FieldProblem("cursor", cursor, "not a cursor this API returned; omit it to "
                                                           "start from the newest job")]) from None
        return {"items": [job_view(j) for j in page.items], "next_cursor": page.next_cursor}

    @v1.get("/jobs/{job_id}")
    def get_job(job_id: str, who: Caller = Depends(caller)):
        return job_view(owned(job_id, who), store.latest_metric(job_id))

    @v1.get("/jobs/{job_id}/plan")
    def get_plan(job_id: str, who: Caller = Depends(caller)):
        job = owned(job_id, who)
        if job.plan is None:
            raise HTTPException(409, f"job {job_id} is {job.state} and has no plan yet")
        return job.plan

    @v1.get("/jobs/{job_id}/events")
    def get_events(job_id: str, who: Caller = Depends(caller)):
        owned(job_id, who)
        return {"items": [event_view(e) for e in store.events(job_id)]}

    @v1.get("/jobs/{job_id}/metrics")
    def get_metrics(job_id: str, who: Caller = Depends(caller), since_step: int = Query(default=0, ge=0),
                    limit: int = Query(default=10_000, ge=1, le=100_000)):
        owned(job_id, who)
        return {"items": [metric_view(m) for m in store.metrics(job_id, since_step, limit)]}

    @v1.get("/jobs/{job_id}/logs", response_class=PlainTextResponse)
    def get_logs(job_id: str, who: Caller = Depends(caller)):
        job = owned(job_id, who)
        try:
            return services.logs(job)
        except Exception as error:  # Ray unreachable or the job gone from it: the job itself is fine
            raise HTTPException(503, f"Ray's log of job {job_id} is not available now: {error}") from None

    @v1.post("/jobs/{job_id}/cancel", status_code=202)
    def cancel(job_id: str, who: Caller = Depends(caller)):
        for _ in range(5):  # the scheduler may move the job between our read and our write: read again
            job = owned(job_id, who)
            target = CANCEL_TARGET.get(State(job.state))
            if target is None:
                raise HTTPException(409, f"job {job_id} has already ended ({job.state}); nothing to cancel")
            if target == job.state or store.transition(job_id, State(job.state), target, f"cancelled by {who.user}"):
                return job_view(store.get(job_id))
        raise HTTPException(503, "the job kept changing state; try again")

    @v1.post("/jobs/{job_id}/records")
    async def post_records(job_id: str, request: Request, authorization: str | None = Header(default=None)):
        job = await run_in_threadpool(store.get, job_id)
        token = (authorization or "")[7:].strip()
        if job is None or not job.worker_token or not secrets.compare_digest(token.encode("utf-8", "surrogateescape"),
                                                                             job.worker_token.encode()):
            raise HTTPException(404, f"no job {job_id} takes records with this token")
        body = await json_body(request, MAX_RECORDS_BYTES)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadInput([FieldProblem("records", None, 'send {"records": [{...}, ...]}: a list of objects')])
        try:
            records = [checked_record(r, i) for i, r in enumerate(records)]
        except ValueError as error:
            raise BadInput([FieldProblem("records", None, str(error))]) from None
        return {"stored_steps": await run_in_threadpool(store_records, store, job, records)}

    @v1.post("/plan", openapi_extra=JOB_BODY)
    async def dry_run(request: Request, who: Caller = Depends(caller)):
        spec = await spec_from(request, settings, who.user)
        try:  # the inventory asks Ray, and planning reads the model's config (maybe from the hub): both block
            planning = run_in_threadpool(lambda: plan_job(spec, services.inventory()).to_dict())
            return await asyncio.wait_for(planning, DRY_RUN_SECONDS)
        except TimeoutError:
            raise HTTPException(504, f"planning took longer than {DRY_RUN_SECONDS:.0f} s (fetching the model's "
                                     "config?); try again, or use a local model folder") from None
        except InfeasibleError as error:
            raise HTTPException(422, {"infeasible": str(error), "needed_bytes": error.needed_bytes,
                                      "budget_bytes": error.budget_bytes}) from None
        except SpecError as error:
            raise BadInput(error.problems) from None
        except PlannerError as error:
            raise BadInput([FieldProblem("model.path", spec.model.path, str(error))]) from None

    @v1.get("/inventory")
    def inventory(who: Caller = Depends(caller)):
        return services.inventory_view(store)

    app.include_router(v1)

    @app.get("/healthz")
    def healthz():
        store.counts_by_state()  # the database answers
        return {"ok": True}

    @app.get("/metrics")
    def metrics(authorization: str | None = Header(default=None)):
        """Fleet series for anyone; per-job series for their owner, admins and EFFFT_METRICS_TOKENS (Prometheus)."""
        scope = metrics_scope(settings, authorization)
        return Response(generate_latest(services.registry_for(scope)), media_type=CONTENT_TYPE_LATEST)

    return with_job_schema(app)
