"""Schema-driven fuzzing of the HTTP API with schemathesis: every operation of the OpenAPI document, with valid
and invalid inputs, as each caller. Shared by tests/service/test_fuzz.py (a short run) and bench/fuzz_api.py
(thousands of cases against a live server on SQLite and Postgres)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode


@dataclass
class FuzzReport:
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # "METHOD path -> status: body", the first few
    created: int = 0  # 201 answers to POST /v1/jobs: the jobs the store should hold afterwards
    ungenerated: list[str] = field(default_factory=list)  # (operation, mode) with no input to vary (GET /healthz)

    def add(self, method: str, path: str, status: int, body: str) -> None:
        self.cases += 1
        self.statuses[status] += 1
        if status >= 500 and len(self.server_errors) < 20:
            self.server_errors.append(f"{method} {path} -> {status}: {body[:300]}")
        if (method, path, status) == ("POST", "/v1/jobs", 201):
            self.created += 1


def fuzz(schema, callers: dict[str, dict[str, str]], examples: int, random_seed: int = 0,
         base_url: str | None = None) -> FuzzReport:
    """Up to `examples` cases per operation and generation mode, each sent once as every caller."""
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, mode, callers, examples, random_seed, base_url, report)
    return report


JOB_BODY_OPERATIONS = {("POST", "/v1/jobs"), ("POST", "/v1/plan")}
LOADABLE = {"model": "org/model", "dataset": "org/data"}  # hub ids the policy accepts (never fetched here)


def _loadable(case):
    """A generated spec points to paths this server refuses; valid-mode specs get hub ids instead, so that
    cases also reach the store (and the 'nothing stored for a failed request' check means something)."""
    if isinstance(case.body, dict):
        case.body = {**case.body, **LOADABLE}
    return case


def _fuzz_operation(operation, mode, callers, examples, random_seed, base_url, report) -> None:
    strategy = operation.as_strategy(generation_mode=mode)
    if (operation.method.upper(), operation.path) in JOB_BODY_OPERATIONS and mode == GenerationMode.POSITIVE:
        strategy = strategy.map(_loadable)

    @seed(random_seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        for auth in callers.values():
            response = case.call(base_url=base_url, headers={**(case.headers or {}), **auth})
            report.add(operation.method.upper(), operation.path, response.status_code, response.text)

    try:
        run()
    except Unsatisfiable:  # e.g. invalid inputs for an operation that takes none
        report.ungenerated.append(f"{operation.method.upper()} {operation.path} ({mode.value})")
