"""Typed, picklable planner errors. Each names the field, the value and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field of a job spec."""

    field: str  # dotted path, e.g. "training.max_steps"
    value: object  # what the user gave (or None when missing)
    message: str  # what is wrong and how to fix it

    def __str__(self) -> str:
        shown = "<missing>" if self.value is None else repr(self.value)
        return f"{self.field} = {shown}: {self.message}"


class PlannerError(Exception):
    """Base of every error the planner raises on purpose."""


class SpecError(PlannerError, ValueError):
    """A job spec with one or more problems; all of them are listed at once."""

    def __init__(self, problems: list[FieldProblem]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"job spec has {len(self.problems)} problem(s):\n{lines}")

    def __reduce__(self):
        return (SpecError, (self.problems,))


class ModelProfileError(PlannerError, ValueError):
    """The model's config could not be found or read."""


class InfeasibleError(PlannerError):
    """No plan fits the GPUs; the message carries the breakdown and what would fit."""

    def __init__(self, message: str, needed_bytes: int = 0, budget_bytes: int = 0):
        self.needed_bytes = needed_bytes
        self.budget_bytes = budget_bytes
        super().__init__(message)

    def __reduce__(self):
        return (InfeasibleError, (str(self), self.needed_bytes, self.budget_bytes))
