"""Who is calling: bearer tokens from settings (users, admins, and Prometheus's read-only metrics tokens)."""

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


def _token(authorization: str | None) -> bytes | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return authorization[7:].strip().encode("utf-8", "surrogateescape")


def _known(token: bytes, candidates) -> bool:
    # compare with every candidate, each in constant time, so timing tells nothing of which matched
    return any([secrets.compare_digest(token, known.encode()) for known in candidates])


def caller_for(settings: Settings, authorization: str | None) -> Caller | None:
    """The caller a bearer token names; None for a missing or unknown token."""
    token = _token(authorization)
    if token is None:
        return None
    if _known(token, settings.admin_tokens):
        return Caller(ADMIN_USER, admin=True)
    for known, user in settings.tokens.items():
        if secrets.compare_digest(token, known.encode()):
            return Caller(user, admin=False)
    return None


ALL_JOBS, NO_JOBS = "*", ""


def metrics_scope(settings: Settings, authorization: str | None) -> str:
    """Whose per-job series /metrics shows: ALL_JOBS (admin or metrics token), a user's own, or NO_JOBS."""
    token = _token(authorization)
    if token is not None and _known(token, settings.metrics_tokens):
        return ALL_JOBS
    who = caller_for(settings, authorization)
    if who is None:
        return NO_JOBS
    return ALL_JOBS if who.admin else who.user
