"""Taking in the worker's metric records: step rows upserted by (job, step), the summary kept on the job.

The worker's shipper may send a batch again when it cannot tell whether the service stored it
(a restart mid-request); upserts make that harmless, so every step is stored exactly once.
"""

from __future__ import annotations

from planner.plan import load_plan
from service.db import Job, utcnow
from service.store import JobStore
from worker.jsonl import finite

STEP_COLUMNS = ("loss", "tokens_per_second", "mfu", "memory_peak_bytes", "memory_predicted_bytes")


def checked_record(record: dict, index: int) -> dict:
    """A record fit to store: a step record needs an integer step; non-finite numbers become null."""
    if record.get("kind") == "step":
        step = record.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"records[{index}].step = {step!r}: a step record needs a whole step number >= 0")
    return finite(record)


def step_row(job_id: str, record: dict) -> dict:
    return {"job_id": job_id, "step": int(record["step"]), "at": utcnow(), "record": record,
            **{name: record.get(name) for name in STEP_COLUMNS}}


def memory_check(job: Job, summary: dict) -> dict | None:
    if not job.plan or not summary.get("memory_predicted_bytes") or not summary.get("memory_peak_bytes"):
        return None
    plan = load_plan(job.plan)
    measured, predicted = summary["memory_peak_bytes"], summary["memory_predicted_bytes"]
    return {"job_id": job.id, "model": plan.model, "gpu": plan.gpu,
            "method": plan.settings.method, "predicted_bytes": predicted,
            "measured_bytes": measured, "ratio": measured / predicted,
            "predicted_terms": summary.get("predicted_terms", {}), "measured_terms": summary.get("measured_terms", {}),
            "at": utcnow()}


def store_records(store: JobStore, job: Job, records: list[dict]) -> int:
    """Store a batch of records; returns how many step records it held."""
    steps = {int(r["step"]): r for r in records if r.get("kind") == "step" and r.get("step") is not None}
    summaries = [r for r in records if r.get("kind") == "summary"]
    summary = summaries[-1] if summaries else None
    store.save_records(job.id, [step_row(job.id, r) for r in steps.values()], summary,
                       memory_check(job, summary) if summary is not None else None)
    return len(steps)
