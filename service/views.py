"""JSON views of stored rows: what the API returns."""

from __future__ import annotations

from service.db import Job, JobEvent, StepMetric


def _time(value):
    return value.isoformat() if value is not None else None


def job_view(job: Job, latest: StepMetric | None = None) -> dict:
    progress = None
    if latest is not None:
        record = latest.record
        progress = {key: record.get(key) for key in ("step", "total_steps", "loss", "tokens_per_second", "mfu",
                                                      "memory_peak_bytes", "memory_predicted_bytes", "eta_seconds")}
    return {"id": job.id, "name": job.name, "owner": job.owner, "state": job.state, "cause": job.cause,
            "message": job.message, "created_at": _time(job.created_at), "updated_at": _time(job.updated_at),
            "started_at": _time(job.started_at), "finished_at": _time(job.finished_at),
            "ray_job_id": job.ray_job_id, "gpus": job.gpus, "gpu_type": job.gpu_type, "planned": job.plan is not None,
            "progress": progress, "summary": job.summary, "spec": job.spec}


def event_view(event: JobEvent) -> dict:
    return {"at": _time(event.at), "from": event.from_state, "to": event.to_state, "reason": event.reason}


def metric_view(metric: StepMetric) -> dict:
    return {**metric.record, "step": metric.step, "stored_at": _time(metric.at)}


def problems_view(problems) -> list[dict]:
    return [{"field": p.field, "value": p.value if isinstance(p.value, str | int | float | bool | None)
             else repr(p.value), "message": p.message} for p in problems]
