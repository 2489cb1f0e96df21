"""The job store: jobs, their events, per-step metrics and memory checks, over SQLModel.

Every state change is a compare-and-set (UPDATE ... WHERE state = the state it was read in) plus
an event row, in one transaction: two writers can never both move a job, and no change goes
unrecorded. Step metrics are keyed by (job, step), so a record sent twice is stored once.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.db import Job, JobEvent, MemoryCheck, StepMetric, utcnow
from service.states import TERMINAL, State, check_transition


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was used before for a different request body."""


@dataclass(frozen=True)
class Page:
    items: list[Job]
    next_cursor: str | None


JOB_ID = re.compile(r"^j[0-9a-f]{16}$")


def new_job_id() -> str:
    return "j" + secrets.token_hex(8)


def is_job_id(text: str) -> bool:
    """A job id as this store makes them: anything else (a NUL byte, say, which Postgres refuses) names no job."""
    return bool(JOB_ID.match(text))


class JobStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, owner: str, spec: dict, idempotency_key: str | None = None) -> tuple[Job, bool]:
        """Store a queued job; with a key seen before (same owner, same body) return that job instead."""
        idempotency_key = idempotency_key or None  # an empty key is no key (it would collide with every other)
        if idempotency_key:
            earlier = self._by_key(owner, idempotency_key)
            if earlier is not None:
                return self._same_body(earlier, spec), False
        job = Job(id=new_job_id(), owner=owner, name=spec["name"], state=State.QUEUED, spec=spec,
                  idempotency_key=idempotency_key)
        try:
            with self.session() as session:
                session.add(job)
                session.add(JobEvent(job_id=job.id, from_state=None, to_state=State.QUEUED, reason="submitted"))
                session.commit()
        except Exception:
            # a concurrent retry with the same key won the insert: answer with its job
            earlier = self._by_key(owner, idempotency_key) if idempotency_key else None
            if earlier is None:
                raise
            return self._same_body(earlier, spec), False
        return job, True

    def _by_key(self, owner: str, key: str) -> Job | None:
        with self.session() as session:
            return session.exec(select(Job).where(Job.owner == owner, Job.idempotency_key == key)).first()

    @staticmethod
    def _same_body(job: Job, spec: dict) -> Job:
        if job.spec != spec:
            raise IdempotencyConflict(f"Idempotency-Key was first used for job {job.id} with a different body; "
                                      "use a new key for a different job")
        return job

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job; None when it does not exist or belongs to someone else (owner None: any owner)."""
        if not is_job_id(job_id):
            return None
        with self.session() as session:
            job = session.get(Job, job_id)
        return job if job is not None and (owner is None or job.owner == owner) else None

    def list(self, owner: str | None, state: str | None = None, limit: int = 50, cursor: str | None = None) -> Page:
        """Newest first; the cursor is the last job's `created_at|id` of the previous page."""
        query = select(Job)
        if owner is not None:
            query = query.where(Job.owner == owner)
        if state is not None:
            query = query.where(Job.state == state)
        if cursor:
            at, _, last_id = cursor.partition("|")
            if not is_job_id(last_id):
                raise ValueError("a cursor ends with a job id")
            created = datetime.fromisoformat(at)
            if created.utcoffset() is None:
                raise ValueError("a cursor's time carries its UTC offset")
            query = query.where((Job.created_at < created) | ((Job.created_at == created) & (Job.id < last_id)))
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
        with self.session() as session:
            rows = list(session.exec(query).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, f"{rows[-1].created_at.isoformat()}|{rows[-1].id}" if more else None)

    def in_states(self, *states: State) -> list[Job]:
        with self.session() as session:
            return list(session.exec(select(Job).where(Job.state.in_(states)).order_by(Job.created_at)).all())

    def counts_by_state(self) -> dict[str, int]:
        with self.session() as session:
            rows = session.exec(select(Job.state, func.count()).group_by(Job.state)).all()
        return {state: count for state, count in rows}

    # -- state changes -----------------------------------------------------------------------

    def transition(self, job_id: str, current: State, target: State, reason: str | None = None,
                   **fields) -> bool:
        """Compare-and-set the state (and `fields`) plus an event row; False if the job was not in `current`."""
        allowed = check_transition(current, target)
        now = utcnow()
        values = {"state": target, "updated_at": now, **fields}
        if target == State.RUNNING:
            values.setdefault("started_at", now)
        if target in TERMINAL:
            values.setdefault("finished_at", now)
        with self.session() as session:
            result = session.exec(update(Job).where(Job.id == job_id, Job.state == current).values(**values))
            if result.rowcount != 1:
                session.rollback()
                return False
            session.add(JobEvent(job_id=job_id, from_state=current, to_state=target, reason=reason or allowed))
            session.commit()
        return True

    def claim_next_queued(self) -> Job | None:
        """Move the oldest queued job to planning and return it; each job is claimed exactly once."""
        with self.session() as session:
            query = select(Job.id).where(Job.state == State.QUEUED).order_by(Job.created_at).limit(1)
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)  # concurrent claimers take different jobs
            job_id = session.exec(query).first()
            if job_id is None:
                return None
            result = session.exec(update(Job).where(Job.id == job_id, Job.state == State.QUEUED)
                                  .values(state=State.PLANNING, updated_at=utcnow()))
            if result.rowcount != 1:  # SQLite: another claimer got there first
                session.rollback()
                return None
            session.add(JobEvent(job_id=job_id, from_state=State.QUEUED, to_state=State.PLANNING,
                                 reason=check_transition(State.QUEUED, State.PLANNING)))
            session.commit()
        return self.get(job_id)

    def set_fields(self, job_id: str, **fields) -> None:
        with self.session() as session:
            session.exec(update(Job).where(Job.id == job_id).values(updated_at=utcnow(), **fields))
            session.commit()

    def issue_worker_token(self, job_id: str) -> str:
        token = secrets.token_urlsafe(24)
        self.set_fields(job_id, worker_token=token)
        return token

    def events(self, job_id: str) -> list[JobEvent]:
        with self.session() as session:
            return list(session.exec(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all())

    # -- metrics --------------------------------------------------------------------------------

    def metrics(self, job_id: str, since_step: int = 0, limit: int = 10_000) -> list[StepMetric]:
        query = select(StepMetric).where(StepMetric.job_id == job_id, StepMetric.step > since_step)
        with self.session() as session:
            return list(session.exec(query.order_by(StepMetric.step).limit(limit)).all())

    def latest_metric(self, job_id: str) -> StepMetric | None:
        query = select(StepMetric).where(StepMetric.job_id == job_id).order_by(StepMetric.step.desc()).limit(1)
        with self.session() as session:
            return session.exec(query).first()

    def memory_checks(self) -> list[MemoryCheck]:
        with self.session() as session:
            return list(session.exec(select(MemoryCheck)).all())
