"""The job store: jobs, their events, per-step metrics and memory checks, over SQLModel.

Every state change goes through one function, `_move`: a compare-and-set (UPDATE ... WHERE state =
the state it was read in) plus an event row, in one transaction, so two writers can never both move
a job, and no change goes unrecorded. Nothing else writes the state's columns.
Step metrics are keyed by (job, step), so a record sent twice is stored once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from planner.recovery import MemoryEvidence
from service.db import Job, JobAttempt, JobEvent, MemoryCheck, StepMetric, utcnow
from service.queries import (
    EVENTS,
    JOB_BY_KEY,
    JOB_WITH_LATEST_RECORD,
    JOBS,
    NEW_JOB_UNLESS_KEY_SEEN,
    QUEUED_JOB_WITH_EVENT,
    is_job_id,
    latest_step,
    new_job_id,
    visible,
)
from service.states import TERMINAL, Cause, State, check_transition


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was used before for a different request body."""


@dataclass(frozen=True)
class Page:
    items: list[Job]
    next_cursor: str | None


# what a state change may set beside the state; the state's own columns (cause, started_at, ...) are _move's
MOVE_FIELDS = frozenset({"message", "ray_job_id", "gpus", "gpu_type", "placement"})


def needed_bytes(evidence: dict) -> int:
    return MemoryEvidence.from_dict(evidence).needed_bytes


class JobStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def connect(self, autocommit: bool = False):
        """A connection for Core statements: a transaction committed when its `with` block ends (rolled back on an
        error), or with autocommit each statement on its own, for one statement that is atomic by itself (on
        Postgres a BEGIN and a COMMIT or ROLLBACK around it would be two more round trips)."""
        if autocommit:
            return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self.engine.begin()

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, owner: str, spec: dict, idempotency_key: str | None = None) -> tuple[Job, bool]:
        """Store a queued job; with a key seen before (same owner, same body) return that job instead.

        The insert comes first: a new key (nearly every submit) costs no look-up. A key seen before, or one a
        concurrent retry is storing now, makes the insert do nothing (ON CONFLICT on the unique (owner, key); on
        Postgres it waits for the other insert's outcome), and the look-up then finds that job. Core statements,
        not the ORM's unit of work (two to three times the CPU on the route clients call most)."""
        idempotency_key = idempotency_key or None  # an empty key is no key (it would collide with every other)
        job = Job(id=new_job_id(), owner=owner, name=spec["name"], state=State.QUEUED, spec=spec,
                  idempotency_key=idempotency_key)
        if self._insert_unless_key_seen(job):
            return job, True
        earlier = self._by_key(owner, idempotency_key)
        if earlier is None:  # jobs are never deleted: the job that held the key is there
            raise RuntimeError(f"Idempotency-Key {idempotency_key!r} is taken, yet no job of {owner!r} holds it")
        return self._same_body(earlier, spec), False

    def _insert_unless_key_seen(self, job: Job) -> bool:
        """Insert `job` and its `submitted` event; False (nothing stored) when its owner's key is stored already."""
        row = {column.name: getattr(job, column.name) for column in JOBS.columns}
        one_statement = self.engine.dialect.name == "postgresql"
        with self.connect(autocommit=one_statement) as connection:
            if one_statement:  # Postgres: one round trip, not four (BEGIN, two INSERTs, COMMIT)
                stored = connection.execute(QUEUED_JOB_WITH_EVENT, {**row, "event_at": job.created_at}).first()
                return stored is not None
            # SQLite, in-process: no round trips to save; two statements in one transaction
            if connection.execute(NEW_JOB_UNLESS_KEY_SEEN, row).rowcount == 0:
                return False
            connection.execute(insert(EVENTS), {"job_id": job.id, "at": job.created_at, "from_state": None,
                                                "to_state": State.QUEUED, "reason": "submitted"})
            return True

    def _by_key(self, owner: str, key: str) -> Job | None:
        with self.connect(autocommit=True) as connection:
            row = connection.execute(JOB_BY_KEY, {"owner": owner, "key": key}).first()
        return None if row is None else Job(**row._asdict())

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
            return visible(session.get(Job, job_id), owner)

    def get_with_progress(self, job_id: str, owner: str | None = None) -> tuple[Job | None, dict | None]:
        """`get` and the record of the job's latest step, in one statement: a job's page, the route clients
        poll most."""
        if not is_job_id(job_id):
            return None, None
        with self.connect(autocommit=True) as connection:
            row = connection.execute(JOB_WITH_LATEST_RECORD, {"job_id": job_id}).first()
        if row is None:
            return None, None
        fields = row._asdict()
        latest_record = fields.pop("latest_record")
        job = visible(Job(**fields), owner)
        return job, (latest_record if job is not None else None)

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

    # -- state changes: every one goes through _move ---------------------------------------------

    def transition(self, job_id: str, current: State, target: State, reason: str | None = None, *,
                   cause: Cause | None = None, **fields) -> bool:
        """Move the job from `current` to `target` (setting `fields`) with an event; False if it was not in `current`.

        A move to failed names its `cause`; no other move has one."""
        with self.session() as session:
            moved = self._move(session, job_id, current, target, reason, cause, fields)
            if moved:
                session.commit()
            else:
                session.rollback()
        return moved

    def claim_next_queued(self) -> Job | None:
        """Move the oldest queued job to planning and return it; each job is claimed exactly once."""
        with self.session() as session:
            query = select(Job.id).where(Job.state == State.QUEUED).order_by(Job.created_at).limit(1)
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)  # concurrent claimers take different jobs
            job_id = session.exec(query).first()
            # SQLite takes no lock on the read: a rival may claim the job before our move, which then refuses
            if job_id is None or not self._move(session, job_id, State.QUEUED, State.PLANNING, None, None, {}):
                session.rollback()
                return None
            session.commit()
        return self.get(job_id)

    @staticmethod
    def _move(session: Session, job_id: str, current: State, target: State, reason: str | None,
              cause: Cause | None, fields: dict) -> bool:
        """The one place a job's state changes: UPDATE ... WHERE state = `current`, then its event row, both in
        `session`'s transaction (the caller commits). False, with nothing written, if the job was not in `current`."""
        allowed = check_transition(current, target)
        stray = set(fields) - MOVE_FIELDS
        if stray:
            raise ValueError(f"a state change sets only {sorted(MOVE_FIELDS)} besides the state; not {sorted(stray)}")
        if (cause is not None) != (target == State.FAILED):
            raise ValueError(f"a move to {target} {'needs' if cause is None else 'takes no'} cause")
        now = utcnow()
        values = {"state": target, "updated_at": now, **fields}
        if cause is not None:
            values["cause"] = Cause(cause).value
        if target == State.RUNNING:
            values["started_at"] = now
        if target in TERMINAL:
            values["finished_at"] = now
        result = session.exec(update(Job).where(Job.id == job_id, Job.state == current).values(**values))
        if result.rowcount != 1:
            return False
        session.add(JobEvent(job_id=job_id, from_state=current, to_state=target, reason=reason or allowed))
        return True

    # -- other fields: none of these can touch the state's columns -------------------------------

    def set_plan(self, job_id: str, plan: dict) -> None:
        self._set(job_id, plan=plan)

    def issue_worker_token(self, job_id: str) -> str:
        token = secrets.token_urlsafe(24)
        self._set(job_id, worker_token=token)
        return token

    def _set(self, job_id: str, **fields) -> None:
        with self.session() as session:
            session.exec(update(Job).where(Job.id == job_id).values(updated_at=utcnow(), **fields))
            session.commit()

    def save_records(self, job_id: str, steps: list[dict], summary: dict | None, check: dict | None) -> None:
        """Step rows upserted by (job, step), the job's summary and its memory check, in one transaction."""
        with self.session() as session:
            if steps:
                session.exec(self._upsert(StepMetric, steps, ["job_id", "step"]))
            if summary is not None:
                session.exec(update(Job).where(Job.id == job_id).values(summary=summary))
            if check is not None:
                session.exec(self._upsert(MemoryCheck, [check], ["job_id"]))
            session.commit()

    def _upsert(self, table, rows: list[dict], keys: list[str]):
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table).values(rows)
        updated = {c.name: statement.excluded[c.name] for c in table.__table__.columns if c.name not in keys}
        return statement.on_conflict_do_update(index_elements=keys, set_=updated)

    def record_attempt(self, job_id: str, attempt: int, plan: dict, evidence: dict, new_plan: dict | None,
                       reason: str) -> bool:
        """An attempt that ran out of memory: its row, the job's new plan (when it was re-planned) and a note in
        the job's events (the state does not change), in one transaction. Sent again, it changes nothing."""
        with self.session() as session:
            job = session.get(Job, job_id)
            if job is None or session.get(JobAttempt, (job_id, attempt)) is not None:
                return False
            session.add(JobAttempt(job_id=job_id, attempt=attempt, plan=plan, evidence=evidence,
                                   replanned=new_plan is not None))
            if new_plan is not None:
                session.exec(update(Job).where(Job.id == job_id).values(plan=new_plan, updated_at=utcnow()))
            session.add(JobEvent(job_id=job_id, from_state=job.state, to_state=job.state, reason=reason))
            session.commit()
        return True

    def replace_ray_job(self, job_id: str, old: str, new: str, reason: str) -> bool:
        """The running job's driver runs as another Ray job now (`new`, after `old` died): compare-and-set on the
        state and the old id, with an event (the state does not change); False when the job moved meanwhile."""
        with self.session() as session:
            result = session.exec(update(Job).where(Job.id == job_id, Job.state == State.RUNNING,
                                                    Job.ray_job_id == old).values(ray_job_id=new, updated_at=utcnow()))
            if result.rowcount != 1:
                session.rollback()
                return False
            session.add(JobEvent(job_id=job_id, from_state=State.RUNNING, to_state=State.RUNNING, reason=reason))
            session.commit()
        return True

    def note(self, job_id: str, reason: str) -> None:
        """An event that changes no state (an evaluation batch shrunk, say); the same note twice is kept once."""
        with self.session() as session:
            job = session.get(Job, job_id)
            seen = session.exec(select(JobEvent.id).where(JobEvent.job_id == job_id, JobEvent.reason == reason)).first()
            if job is None or seen is not None:
                return
            session.add(JobEvent(job_id=job_id, from_state=job.state, to_state=job.state, reason=reason))
            session.commit()

    def attempts(self, job_id: str | None = None) -> list[JobAttempt]:
        query = select(JobAttempt)
        if job_id is not None:
            query = query.where(JobAttempt.job_id == job_id)
        with self.session() as session:
            return list(session.exec(query.order_by(JobAttempt.job_id, JobAttempt.attempt)).all())

    def events(self, job_id: str) -> list[JobEvent]:
        with self.session() as session:
            return list(session.exec(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all())

    # -- metrics --------------------------------------------------------------------------------

    def metrics(self, job_id: str, since_step: int = 0, limit: int = 10_000) -> list[StepMetric]:
        query = select(StepMetric).where(StepMetric.job_id == job_id, StepMetric.step > since_step)
        with self.session() as session:
            return list(session.exec(query.order_by(StepMetric.step).limit(limit)).all())

    def latest_metric(self, job_id: str) -> StepMetric | None:
        with self.session() as session:
            return session.exec(latest_step(job_id)).first()

    def measured_runs(self) -> list[tuple[dict, dict]]:
        """(plan, summary) of every job whose worker sent a summary: calibration's history."""
        with self.session() as session:
            rows = session.exec(select(Job.plan, Job.summary).where(Job.summary.is_not(None),
                                                                     Job.plan.is_not(None))).all()
        # a JSON column keeps Python's None as JSON null, which IS NOT NULL lets through: drop those here
        runs = [(plan, summary) for plan, summary in rows if isinstance(summary, dict) and isinstance(plan, dict)]
        # an attempt that ran out of memory measured a lower bound of its plan's peak: it corrects upward only
        return runs + [(a.plan, {"memory_peak_bytes": needed_bytes(a.evidence)}) for a in self.attempts()]

    def memory_checks(self) -> list[MemoryCheck]:
        with self.session() as session:
            return list(session.exec(select(MemoryCheck)).all())
