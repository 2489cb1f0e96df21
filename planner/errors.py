"""Typed, picklable planner errors. Each names the field, the value and the fix."""

from __future__ import annotations

import math
from dataclasses import dataclass

PREVIEW_CHARS = 120


def _scalar(item: object) -> str:
    if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 10**30:
        return f"<an integer of about {item.bit_length() * 0.30103:.0f} digits>"  # str() fails past 4,300
    if isinstance(item, float) and not math.isfinite(item):
        return str(item)
    if isinstance(item, str):
        return repr(item[:PREVIEW_CHARS]).encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(item, bool | int | float) or item is None:
        return repr(item)
    return f"<{type(item).__name__}>"


def _pieces(item: object, depth: int):
    """The repr of `item` in pieces, lazily: a caller that stops early never expands the rest."""
    if isinstance(item, dict | list | tuple) and depth < 4:
        opening, closing = ("{", "}") if isinstance(item, dict) else ("[", "]")
        yield opening
        for index, entry in enumerate(item.items() if isinstance(item, dict) else item):
            if index:
                yield ", "
            if isinstance(item, dict):
                yield from _pieces(entry[0], depth + 1)
                yield ": "
                entry = entry[1]
            yield from _pieces(entry, depth + 1)
        yield closing
    else:
        yield _scalar(item)


def preview(value: object, limit: int = PREVIEW_CHARS) -> str:
    """A short, safe repr: never large, never a lone surrogate, never a whole YAML alias bomb expanded."""
    text = ""
    for piece in _pieces(value, 0):
        text += piece
        if len(text) > limit:
            return text[:limit] + "..."
    return text


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field of a job spec."""

    field: str  # dotted path, e.g. "training.max_steps"
    value: object  # what the user gave (or None when missing)
    message: str  # what is wrong and how to fix it

    def __str__(self) -> str:
        shown = "<missing>" if self.value is None else preview(self.value)
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
