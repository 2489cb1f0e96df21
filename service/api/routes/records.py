"""/v1/jobs/{job_id}/records: the job's worker ships its step records and summary here, with its own token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from planner.errors import FieldProblem
from service.api.deps import ReportingJobDep, StoreDep
from service.api.models import RecordsStored
from service.api.openapi import errors
from service.body import BadInput, json_body
from service.records import checked_record, store_records

router = APIRouter(tags=["worker"])

MAX_RECORDS_BYTES = 8_000_000  # one shipped batch of step records
# Postgres takes at most 65,535 bind parameters a statement, and a step row has 9: a batch is stored in chunks
RECORDS_PER_INSERT = 5_000


@router.post("/jobs/{job_id}/records", response_model=RecordsStored, responses=errors(404, 413),
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                 "type": "object", "required": ["records"],
                 "properties": {"records": {"type": "array", "items": {"type": "object"}}}}}}}})
async def post_records(job: ReportingJobDep, store: StoreDep, request: Request):
    """Store a batch of the worker's records; a batch sent again is stored once. Only the job's worker token."""
    body = await json_body(request, MAX_RECORDS_BYTES)
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadInput([FieldProblem("records", None, 'send {"records": [{...}, ...]}: a list of objects')])
    try:
        records = [checked_record(r, i) for i, r in enumerate(records)]
    except ValueError as error:
        raise BadInput([FieldProblem("records", None, str(error))]) from None
    stored = 0
    for start in range(0, max(len(records), 1), RECORDS_PER_INSERT):  # a chunk stored twice is stored once
        stored += await run_in_threadpool(store_records, store, job, records[start:start + RECORDS_PER_INSERT])
    return {"stored_steps": stored}
