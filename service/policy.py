"""What a job may touch on this server: paths confined per owner, hub ids that cannot be local paths, remote code.

Checked when a job is submitted and again right before it is planned (files can change in between);
the job's driver checks the same Confinement before it reads (worker.confine).
"""

from __future__ import annotations

import re
from pathlib import Path

from planner.errors import FieldProblem
from planner.spec import JobSpec
from service.settings import Settings
from worker.confine import Confinement, field_read_problem, write_problem
from worker.rows import FILE_SUFFIXES, suffix_problem

# a hub id is `org/name`: a bare word such as `text` or `json` names a `datasets` builder that globs files
# from the server's working directory
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
LOCAL_PREFIXES = ("/", ".", "~")


def confinement(settings: Settings, owner: str) -> Confinement:
    data_dir = settings.data_dir.resolve()
    return Confinement(read_roots=tuple(settings.allowed_dataset_roots),
                       output_roots=tuple(settings.allowed_output_roots), owner=owner,
                       private=(data_dir / "runs",), private_files_in=(data_dir,))


def _looks_local(path: str) -> bool:
    return path.startswith(LOCAL_PREFIXES) or Path(path).suffix.lower() in FILE_SUFFIXES


def _hub_problem(field: str, path: str, allowed_names: list[str]) -> FieldProblem | None:
    if path in allowed_names:
        return None
    if not HUB_ID.match(path) or ".." in path:
        return FieldProblem(field, path, "neither an absolute path on the server nor a hub id of the form "
                                         "org/name; give the absolute path of a file or folder, or the hub id")
    if Path(path).exists():  # relative to the server's working directory: the reader would open that instead
        return FieldProblem(field, path, "this hub id is also a path relative to the server's working directory, "
                                         "so it would be read from there; give an absolute path or another id")
    return None


def _local_problem(field: str, path: str, kind: str, rules: Confinement) -> FieldProblem | None:
    roots = ", ".join(str(r) for r in (*rules.read_roots, *rules.owner_areas))
    if not path.startswith("/"):  # `~` would be the server's home, and the readers would not expand it
        return FieldProblem(field, path, f"a {kind} path must be absolute on the server (the CLI resolves "
                                         f"relative paths against the job file); allowed roots: {roots}")
    reason = field_read_problem(rules, field, path)
    if reason is None:
        return None
    return FieldProblem(field, path, f"{reason}; a {kind} must lie under {roots} (your own area of the output roots "
                                     "included); move it there or ask the operator to add a root (EFFFT_DATASET_ROOTS)")


def _source_problem(field: str, path: str, kind: str, rules: Confinement,
                    allowed_names: list[str]) -> FieldProblem | None:
    if _looks_local(path):
        return _local_problem(field, path, kind, rules)
    return _hub_problem(field, path, allowed_names)


def _dataset_problem(path: str, rules: Confinement, allowed_names: list[str]) -> FieldProblem | None:
    problem = _source_problem("dataset.path", path, "dataset", rules, allowed_names)
    if problem is None and _looks_local(path) and (reason := suffix_problem(Path(path))) is not None:
        return FieldProblem("dataset.path", path, reason)  # the reader would fail on it only once planned
    return problem


def _output_problem(path: str, rules: Confinement) -> FieldProblem | None:
    areas = ", ".join(str(a) for a in rules.owner_areas)
    if not path.startswith("/"):
        return FieldProblem("output.dir", path, f"an output path must be absolute on the server; your areas: {areas}")
    reason = write_problem(rules, path)
    if reason is None:
        return None
    return FieldProblem("output.dir", path, f"{reason}; outputs go to your own area of the output roots: {areas} "
                                            "(or leave output.dir out: the job then writes to <your area>/<job id>)")


def policy_problems(spec: JobSpec, settings: Settings, owner: str) -> list[FieldProblem]:
    """Paths outside what this owner may touch, hub ids that are not org/name, and remote code the operator forbids."""
    rules = confinement(settings, owner)
    problems = [_dataset_problem(spec.dataset.path, rules, settings.dataset_builders),
                _source_problem("model.path", spec.model.path, "model", rules, [])]
    if spec.output.dir is not None:
        problems.append(_output_problem(spec.output.dir, rules))
    if spec.model.trust_remote_code and not settings.allow_trust_remote_code:
        problems.append(FieldProblem("model.trust_remote_code", True, "this server does not run a model's own "
                                     "code; use a model transformers supports natively, or ask the operator to "
                                     "set EFFFT_ALLOW_TRUST_REMOTE_CODE"))
    return [p for p in problems if p is not None]
