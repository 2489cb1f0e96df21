"""The job store's tables (SQLModel) and the engine factory. Nothing connects at import."""

from __future__ import annotations

import contextlib
import os
import select
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlmodel import Field, SQLModel, create_engine


def utcnow() -> datetime:
    return datetime.now(UTC)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
                      Index("ix_jobs_state_created", "state", "created_at"),
                      Index("ix_jobs_owner_created", "owner", "created_at"))

    id: str = Field(primary_key=True, max_length=32)
    owner: str = Field(max_length=200)
    name: str = Field(max_length=100)
    state: str = Field(max_length=20)
    cause: str | None = Field(default=None, max_length=20)  # why it failed
    message: str | None = None  # the error, for a failed job
    spec: dict = Field(sa_column=Column(JSON, nullable=False))
    plan: dict | None = Field(default=None, sa_column=Column(JSON))
    summary: dict | None = Field(default=None, sa_column=Column(JSON))
    idempotency_key: str | None = Field(default=None, max_length=200)
    ray_job_id: str | None = Field(default=None, max_length=100)
    worker_token: str | None = Field(default=None, max_length=100)  # the job's worker posts records with it
    gpus: int = 0  # GPUs the running job holds
    gpu_type: str | None = Field(default=None, max_length=40)
    placement: dict | None = Field(default=None, sa_column=Column(JSON))  # service/packing.py: devices, bytes held
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobEvent(SQLModel, table=True):
    __tablename__ = "job_events"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", index=True, max_length=32)
    at: datetime = Field(default_factory=utcnow)
    from_state: str | None = Field(default=None, max_length=20)
    to_state: str = Field(max_length=20)
    reason: str


class StepMetric(SQLModel, table=True):
    """One row per job and step: a step reported twice (a resumed run) keeps its latest values."""

    __tablename__ = "step_metrics"

    job_id: str = Field(foreign_key="jobs.id", primary_key=True, max_length=32)
    step: int = Field(primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    loss: float | None = None
    tokens_per_second: float | None = None
    mfu: float | None = None
    memory_peak_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    memory_predicted_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    record: dict = Field(sa_column=Column(JSON, nullable=False))


class MemoryCheck(SQLModel, table=True):
    """Predicted vs measured peak memory of a finished job: the planner's calibration input."""

    __tablename__ = "memory_checks"

    job_id: str = Field(foreign_key="jobs.id", primary_key=True, max_length=32)
    model: str
    gpu: str = Field(max_length=40)
    method: str = Field(max_length=10)
    predicted_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    measured_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    ratio: float  # measured / predicted
    predicted_terms: dict = Field(sa_column=Column(JSON, nullable=False))
    measured_terms: dict = Field(sa_column=Column(JSON, nullable=False))
    at: datetime = Field(default_factory=utcnow)


class JobAttempt(SQLModel, table=True):
    """An attempt of a job that ran out of memory (or past its safety line): the plan, the evidence, and whether
    a re-plan replaced it. Calibration learns from it; `effft_job_replans_total` counts the replaced ones."""

    __tablename__ = "job_attempts"

    job_id: str = Field(foreign_key="jobs.id", primary_key=True, max_length=32)
    attempt: int = Field(primary_key=True)  # 0: the first plan
    plan: dict = Field(sa_column=Column(JSON, nullable=False))  # the plan that ran out
    evidence: dict = Field(sa_column=Column(JSON, nullable=False))  # planner.recovery.MemoryEvidence's fields
    replanned: bool  # False: no re-plan was left, the job failed with cause oom
    at: datetime = Field(default_factory=utcnow)


def make_sqlite_private(url: str) -> None:
    """The SQLite file (and its WAL and shared-memory files) readable by this user only: it holds every spec and
    every job's worker token. SQLite gives its -wal and -shm files the database file's mode."""
    if not url.startswith("sqlite"):
        return
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").chmod(0o600)


def make_engine(url: str) -> Engine:
    """An engine for SQLite (one file, WAL, waits on a busy lock) or Postgres (a pool)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; fsync at checkpoints, not per commit
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    psycopg3 = make_url(url).get_driver_name() == "psycopg"
    # each process has its pool (the scheduler's and every API worker's): 3 x 15 connections at most stays well inside
    # Postgres's default max_connections of 100
    engine = create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=not psycopg3)  # another driver: a ping
    if psycopg3:
        event.listen(engine, "checkout", _refuse_a_closed_connection)
    return engine


def _refuse_a_closed_connection(dbapi_connection, _record, _proxy) -> None:
    """A pooled Postgres connection the server has closed is replaced before use, without a round trip.

    SQLAlchemy's pre-ping sent a query per checkout: a round trip per store call, 18 % of the store's CPU on a
    submit and a job's page. An idle connection has nothing to read unless the server ended it (a restart or
    pg_terminate_backend sends its FATAL notice and closes): a readable socket, or one psycopg knows is closed,
    means a dead connection, and DisconnectionError makes the pool open a fresh one. (A peer that vanished without
    closing, a cut network, is found by the statement's error instead, which SQLAlchemy answers by discarding the
    pool's connections.)"""
    import psycopg

    try:
        readable = dbapi_connection.closed or select.select([dbapi_connection.pgconn.socket], [], [], 0)[0]
    except (OSError, ValueError, psycopg.Error) as error:
        raise DisconnectionError(f"the pooled connection is unusable: {error}") from error
    if readable:
        raise DisconnectionError("the server closed this pooled connection")
