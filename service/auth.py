"""Who is calling: bearer tokens from settings (users, admins, and Prometheus's read-only metrics tokens), and a
job's worker token.

The API reads the token out of the Authorization header in one place (service/api/deps.py, FastAPI's HTTPBearer);
the functions here take that token, never the header.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from service.settings import ADMIN_USER, Settings


@dataclass(frozen=True)
class Caller:
    user: str
    admin: bool

    @property
    def owner_filter(self) -> str | None:
        """The owner a query is limited to: none for an admin."""
        return None if self.admin else self.user


def _same(token: str, known: str) -> bool:
    # bytes, not str: compare_digest refuses non-ASCII text, and a header may carry any byte
    return secrets.compare_digest(token.encode("utf-8", "surrogateescape"), known.encode())


def _known(token: str, candidates) -> bool:
    # compare with every candidate, each in constant time, so timing tells nothing of which matched
    return any([_same(token, known) for known in candidates])


def caller_for(settings: Settings, token: str | None) -> Caller | None:
    """The caller a bearer token names; None for a missing or unknown token."""
    if not token:
        return None
    if _known(token, settings.admin_tokens):
        return Caller(ADMIN_USER, admin=True)
    for known, user in settings.tokens.items():
        if _same(token, known):
            return Caller(user, admin=False)
    return None


def is_worker_token(token: str | None, worker_token: str | None) -> bool:
    """The token is the one issued to a job's worker (a job not yet started has none)."""
    return bool(token) and bool(worker_token) and _same(token, worker_token)


ALL_JOBS, NO_JOBS = "*", ""


def metrics_scope(settings: Settings, token: str | None) -> str:
    """Whose per-job series /metrics shows: ALL_JOBS (admin or metrics token), a user's own, or NO_JOBS."""
    if token and _known(token, settings.metrics_tokens):
        return ALL_JOBS
    who = caller_for(settings, token)
    if who is None:
        return NO_JOBS
    return ALL_JOBS if who.admin else who.user
