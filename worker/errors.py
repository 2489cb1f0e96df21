"""Errors the worker raises on purpose, before any GPU work. Each names the field, the value and the fix."""

from __future__ import annotations


class WorkerError(Exception):
    """Base of every error the worker raises on purpose."""


class _FieldError(WorkerError, ValueError):
    def __init__(self, field: str, value: object, message: str):
        self.field, self.value, self.message = field, value, message
        super().__init__(f"{field} = {value!r}: {message}")

    def __reduce__(self):
        return (type(self), (self.field, self.value, self.message))


class DataError(_FieldError):
    """The dataset cannot be read or does not match its format."""


class ModelError(_FieldError):
    """The model or its tokenizer cannot be loaded."""
