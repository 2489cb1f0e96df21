"""Who is calling (bearer tokens from settings), and where a job may read and write (configured roots)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from planner.errors import FieldProblem
from planner.spec import JobSpec
from service.settings import Settings

LOCAL_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".txt", ".text", ".csv")


@dataclass(frozen=True)
class Caller:
    user: str
    admin: bool

    @property
    def owner_filter(self) -> str | None:
        """The owner a query is limited to: none for an admin."""
        return None if self.admin else self.user


def caller_for(settings: Settings, authorization: str | None) -> Caller | None:
    """The caller a bearer token names; None for a missing or unknown token."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    token = authorization[7:].strip().encode("utf-8", "surrogateescape")
    for admin in settings.admin_tokens:
        if secrets.compare_digest(token, admin.encode()):
            return Caller("admin", admin=True)
    for known, user in settings.tokens.items():
        if secrets.compare_digest(token, known.encode()):
            return Caller(user, admin=False)
    return None


def _looks_local(path: str) -> bool:
    return path.startswith(("/", ".", "~")) or path.endswith(LOCAL_FILE_SUFFIXES) or Path(path).exists()


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.expanduser().resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


def _confine(field: str, path: str, roots: list[Path], kind: str) -> FieldProblem | None:
    shown = ", ".join(str(r) for r in roots)
    if not Path(path).expanduser().is_absolute():
        return FieldProblem(field, path, f"a {kind} path must be absolute on the server (the CLI resolves "
                                         f"relative paths against the job file); allowed roots: {shown}")
    if not _inside(Path(path), roots):
        return FieldProblem(field, path, f"outside the {kind} roots this server allows: {shown}; move it "
                                         "there or ask the operator to add a root (EFFFT_DATASET_ROOTS / "
                                         "EFFFT_OUTPUT_ROOTS)")
    return None


def policy_problems(spec: JobSpec, settings: Settings) -> list[FieldProblem]:
    """Paths outside the configured roots, and remote code where the operator forbids it."""
    problems = []
    if _looks_local(spec.dataset.path):  # else a `datasets` hub id, which is allowed
        problems.append(_confine("dataset.path", spec.dataset.path, settings.allowed_dataset_roots, "dataset"))
    if _looks_local(spec.model.path):  # a local model folder is read like a dataset; hub ids are allowed
        problems.append(_confine("model.path", spec.model.path, settings.allowed_dataset_roots, "model"))
    if spec.output.dir is not None:
        problems.append(_confine("output.dir", spec.output.dir, settings.allowed_output_roots, "output"))
    if spec.model.trust_remote_code and not settings.allow_trust_remote_code:
        problems.append(FieldProblem("model.trust_remote_code", True, "this server does not run a model's own "
                                     "code; use a model transformers supports natively, or ask the operator to "
                                     "set EFFFT_ALLOW_TRUST_REMOTE_CODE"))
    return [p for p in problems if p is not None]
