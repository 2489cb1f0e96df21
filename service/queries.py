"""The job store's ids, visibility rule and the statements its hot paths run (Core, not the ORM: a job's page and a
submit are what clients call most, and the ORM's unit of work cost two to three times the CPU)."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import bindparam, insert, literal, null
from sqlalchemy import select as sql_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select

from service.db import Job, JobEvent, StepMetric
from service.states import State

JOB_ID = re.compile(r"^j[0-9a-f]{16}$")


def new_job_id() -> str:
    return "j" + secrets.token_hex(8)


def is_job_id(text: str) -> bool:
    """A job id as this store makes them: anything else (a NUL byte, say, which Postgres refuses) names no job."""
    return bool(JOB_ID.match(text))


def visible(job: Job | None, owner: str | None) -> Job | None:
    """The job if `owner` may see it (owner None: anyone may)."""
    return job if job is not None and (owner is None or job.owner == owner) else None


def latest_step(job_id: str):
    return select(StepMetric).where(StepMetric.job_id == job_id).order_by(StepMetric.step.desc()).limit(1)


JOBS, EVENTS, STEPS = Job.__table__, JobEvent.__table__, StepMetric.__table__
_LATEST_RECORD = (sql_select(STEPS.c.record).where(STEPS.c.job_id == JOBS.c.id).order_by(STEPS.c.step.desc())
                  .limit(1).scalar_subquery())
JOB_WITH_LATEST_RECORD = sql_select(JOBS, _LATEST_RECORD.label("latest_record")).where(
    JOBS.c.id == bindparam("job_id"))
# A submit whose (owner, Idempotency-Key) is stored already inserts nothing, without an error: a retried submit
# cost three times a new one's CPU when it went through a unique violation, its exception and a rollback.
_KEY = [JOBS.c.owner, JOBS.c.idempotency_key]
NEW_JOB_UNLESS_KEY_SEEN = sqlite.insert(JOBS).on_conflict_do_nothing(index_elements=_KEY)
# Postgres: the job and its first event in one statement (a data-modifying CTE), atomic on its own; it returns the
# job's id, or nothing when the key was seen (its event is then not inserted either)
_NEW_JOB = (postgresql.insert(JOBS).values({column.name: bindparam(column.name, type_=column.type)
                                            for column in JOBS.columns})
            .on_conflict_do_nothing(index_elements=_KEY).returning(JOBS.c.id).cte("new_job"))
QUEUED_JOB_WITH_EVENT = insert(EVENTS).from_select(
    ["job_id", "at", "from_state", "to_state", "reason"],
    sql_select(_NEW_JOB.c.id, bindparam("event_at", type_=EVENTS.c.at.type), null(), literal(State.QUEUED.value),
               literal("submitted"))).returning(EVENTS.c.job_id)
JOB_BY_KEY = sql_select(JOBS).where(JOBS.c.owner == bindparam("owner"), JOBS.c.idempotency_key == bindparam("key"))
