"""Taking in the worker's metric records: step rows upserted by (job, step), the summary kept on the job.

The worker's shipper may send a batch again when it cannot tell whether the service stored it
(a restart mid-request); upserts make that harmless, so every step is stored exactly once.
"""

from __future__ import annotations

from planner.plan import load_plan
from planner.recovery import MemoryEvidence
from service.db import Job, utcnow
from service.store import JobStore
from worker.jsonl import finite

STEP_COLUMNS = ("loss", "tokens_per_second", "mfu", "memory_peak_bytes", "memory_predicted_bytes")


def checked_record(record: dict, index: int) -> dict:
    """A record fit to store: a step record needs an integer step; non-finite numbers become null."""
    if record.get("kind") in ATTEMPT_KINDS:
        check_attempt(record, index)
    if record.get("kind") == "step":
        step = record.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"records[{index}].step = {step!r}: a step record needs a whole step number >= 0")
    return finite(record)


def check_attempt(record: dict, index: int) -> None:
    attempt = record.get("attempt")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"records[{index}].attempt = {attempt!r}: a {record['kind']} record names the attempt "
                         "it starts (1 or more)")
    try:
        MemoryEvidence.from_dict(record.get("evidence") or {})
    except (KeyError, TypeError):
        raise ValueError(f"records[{index}].evidence: a {record['kind']} record carries the out-of-memory "
                         f"evidence ({', '.join(MemoryEvidence.__dataclass_fields__)})") from None


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


def store_attempt(store: JobStore, job: Job, record: dict) -> None:
    """A `replan` (or `replan_refused`) record from the job's driver: the attempt that ran out of memory."""
    new_plan = record.get("plan") if record["kind"] == "replan" else None
    if new_plan is not None:
        load_plan(new_plan)  # a plan this service cannot read is refused before it replaces the job's
    store.record_attempt(job.id, int(record["attempt"]) - 1, record.get("failed_plan") or job.plan or {},
                         record["evidence"], new_plan, str(record.get("text", ""))[:2000])


ATTEMPT_KINDS = ("replan", "replan_refused")
# records that become a note in the job's events (a placement: where each rank of an attempt runs)
NOTE_KINDS = ("eval_batch", "replan_skipped", "checkpoints_removed", "disk_full", "placement")


def store_records(store: JobStore, job: Job, records: list[dict]) -> int:
    """Store a batch of records; returns how many step records it held."""
    for record in records:
        if record.get("kind") in ATTEMPT_KINDS:
            store_attempt(store, job, record)
        elif record.get("kind") in NOTE_KINDS and record.get("text"):
            store.note(job.id, str(record["text"])[:2000])
    steps = {int(r["step"]): r for r in records if r.get("kind") == "step" and r.get("step") is not None}
    summaries = [r for r in records if r.get("kind") == "summary"]
    summary = summaries[-1] if summaries else None
    store.save_records(job.id, [step_row(job.id, r) for r in steps.values()], summary,
                       memory_check(job, summary) if summary is not None else None)
    return len(steps)
