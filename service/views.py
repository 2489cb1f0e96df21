"""JSON views of stored rows: what the API returns, always renderable.

A row stored before the spec was strict (an infinite number, a lone surrogate) or a record a worker
sent must never take down a listing: every response goes through json_safe.
"""

from __future__ import annotations

import json
import logging
import math

from fastapi.responses import JSONResponse

from planner.errors import preview
from service.db import Job, JobEvent, StepMetric

log = logging.getLogger("effft.api")


def strict_json(value) -> bytes:
    """`value` as strict JSON in UTF-8; ValueError (or TypeError, UnicodeEncodeError) when it is not one."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def json_safe(value):
    """`value` with non-finite numbers as strings ('inf', 'nan') and text re-encodable as UTF-8."""
    try:  # nearly always: what was stored is strict JSON already, checked at C speed; the walk is the slow part
        strict_json(value)
        return value
    except (ValueError, TypeError, UnicodeEncodeError):
        return _made_safe(value)


def _made_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_made_safe(str(k)): _made_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_made_safe(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """Every response of the API: strict JSON (no NaN), whatever was stored."""

    def render(self, content) -> bytes:
        try:
            return strict_json(content)
        except (ValueError, TypeError, UnicodeEncodeError):
            return strict_json(_made_safe(content))


def _time(value):
    return value.isoformat() if value is not None else None


def _identity(job: Job) -> dict:
    return {"id": job.id, "name": job.name, "owner": job.owner, "state": job.state, "cause": job.cause,
            "planned": job.plan is not None}


NON_FINITE = ("inf", "-inf", "nan")  # how json_safe writes a non-finite number stored before records were checked
PROGRESS_KEYS = ("step", "total_steps", "loss", "tokens_per_second", "mfu", "memory_peak_bytes",
                 "memory_predicted_bytes", "eta_seconds")


def number_or_none(value):
    """A number from a step record, or None: a value a worker sent that is not a number is left out, never a 500
    for the whole view."""
    if isinstance(value, bool) or not (isinstance(value, int | float) or value in NON_FINITE):
        return None
    return value


def _job_view(job: Job, latest_record: dict | None) -> dict:
    progress = None
    if latest_record is not None:
        progress = {key: number_or_none(latest_record.get(key)) for key in PROGRESS_KEYS}
    return {**_identity(job), "message": job.message, "created_at": _time(job.created_at),
            "updated_at": _time(job.updated_at), "started_at": _time(job.started_at),
            "finished_at": _time(job.finished_at), "ray_job_id": job.ray_job_id, "gpus": job.gpus,
            "gpu_type": job.gpu_type, "placement": job.placement, "progress": progress, "summary": job.summary,
            "spec": job.spec}


def _shown_job(job: Job, latest_record: dict | None) -> dict:
    try:
        return _job_view(job, latest_record)
    except Exception:  # a row we cannot render is shown by its identity, never fails the whole listing
        log.exception("rendering job %s", job.id)
        return {**_identity(job), "message": "this job's stored record cannot be shown", "progress": None,
                "summary": None, "spec": None}


def job_view(job: Job) -> dict:
    """A job as JSON-safe values, for a route that answers several (FastAPI checks them against JobPublic)."""
    return json_safe(_shown_job(job, None))


def job_answer(job: Job, latest_record: dict | None = None, status_code: int = 200) -> SafeJSONResponse:
    """A job as a route's whole answer, rendered once. FastAPI passes a returned Response through as it is: no
    check against JobPublic (the view is that shape by construction, and tests/service/test_fuzz.py checks
    every answer against the schema) and no second encoding. Submit and a job's page, the routes clients call
    most, answer this way."""
    return SafeJSONResponse(_shown_job(job, latest_record), status_code=status_code)


def event_view(event: JobEvent) -> dict:
    return {"at": _time(event.at), "from": event.from_state, "to": event.to_state, "reason": event.reason}


def metric_view(metric: StepMetric) -> dict:
    return {**metric.record, "step": metric.step, "stored_at": _time(metric.at)}


def _shown(value):
    """A value for an error body: short plain scalars as they are, anything else as a bounded preview."""
    if value is None or isinstance(value, bool) or (isinstance(value, int | float) and len(preview(value)) < 40):
        return value
    if isinstance(value, str) and len(value) <= 200:
        return value
    return preview(value)


MAX_PROBLEMS = 50  # a body with 90,000 unknown keys gets 50 of them named, not a 24 MB answer


def problems_view(problems) -> list[dict]:
    shown = [{"field": str(p.field)[:200], "value": _shown(p.value), "message": str(p.message)[:2000]}
             for p in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        shown.append({"field": "<body>", "value": None, "message": f"and {len(problems) - MAX_PROBLEMS:,} more "
                                                                   "problems; fix these first"})
    return shown
