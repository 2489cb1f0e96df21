"""The job spec's field types: every number finite and bounded, every string UTF-8 text without control characters.

Bounds are generous for real jobs and small enough that nothing downstream overflows or runs forever;
README's "Job spec bounds" lists them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

Auto = Literal["auto"]
MAX_STEPS = 10_000_000  # optimizer steps; also the bound of every other step count
MAX_TOKENS = 1_048_576  # seq_len: 2**20, beyond any model's context
MAX_BATCH = 1_048_576  # samples per optimizer step
MAX_PATH_CHARS = 4096


def _whole(value: Any) -> Any:
    """4.0 is 4 (JSON does not tell them apart); 4.5, true and "4" stay what they are and are refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _auto_or_int(low: int, high: int):
    def check(value: Any) -> Any:
        if value == "auto" or value is None:
            return "auto"
        value = _whole(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be 'auto' or a whole number from {low:,} to {high:,}")
        return value

    return check


def _auto_or_bool(value: Any) -> Any:
    if value == "auto" or value is None:
        return "auto"
    if not isinstance(value, bool):
        raise ValueError("must be 'auto', true or false")
    return value


def _plain_text(value: str) -> str:
    """Text that any JSON, database or file system takes: valid UTF-8, no control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8 text (it holds a lone UTF-16 surrogate); send the character itself, "
                         "or a JSON surrogate pair") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("holds a control character (a NUL byte, a newline, ...); remove it")
    return value


def AutoInt(low: int = 1, high: int = MAX_STEPS):  # noqa: N802 - a type factory reads as a type
    schema = {"anyOf": [{"const": "auto"}, {"type": "integer", "minimum": low, "maximum": high}], "default": "auto"}
    return Annotated[Union[Auto, int], BeforeValidator(_auto_or_int(low, high)), WithJsonSchema(schema)]


def Text(max_length: int = 256, min_length: int = 0):  # noqa: N802
    return Annotated[str, Field(min_length=min_length, max_length=max_length), AfterValidator(_plain_text)]


Whole = Annotated[int, BeforeValidator(_whole)]
AutoBool = Annotated[Union[Auto, bool], BeforeValidator(_auto_or_bool)]
Names = Annotated[list[Text(256, 1)], Field(min_length=1, max_length=512)]  # module names


class StrictModel(BaseModel):
    # strict: `true` is not 1 and 1.5 is not a step count; no NaN or infinity anywhere
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _revision(value: str) -> str:
    """A hub branch, tag or commit: it names a folder in the HF cache, so it must not climb out of it."""
    if not REVISION.match(value) or ".." in value.split("/"):
        raise ValueError("must be a branch, tag or commit: letters, digits and . _ - / (no '..' part)")
    return value


REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$")
Revision = Annotated[str, AfterValidator(_revision)]
