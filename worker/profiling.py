"""Profiling a dataset before planning: read and check every row, tokenize it, and suggest seq_len.

It imports neither the Trainer nor Ray (only the tokenizer's side of transformers), so the service's
planning processes start quickly; `worker.standalone` re-exports it for `effft run` and `effft plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.profile import load_profile
from planner.spec import JobSpec
from worker.data import checked_rows, suggest_seq_len, tokenize_rows
from worker.rows import NO_LIMITS, SizeLimits


@dataclass(frozen=True)
class DataProfile:
    rows: int
    format: str
    seq_len: int  # the length that covers 95 % of the examples whole


def profile_dataset(spec: JobSpec, limits: SizeLimits = NO_LIMITS) -> DataProfile:
    """Tokenize the data once on the driver: bad data fails here, and seq_len auto gets its number.
    `limits` refuse a dataset past a size before it is read whole (the service's planning sets them)."""
    from worker.model import load_tokenizer

    fmt, rows = checked_rows(spec.dataset, limits)  # bad data fails before the model's files are even opened
    data = tokenize_rows(fmt, rows, spec.dataset, load_tokenizer(spec.model))
    positions = load_profile(spec.model.path, spec.model.revision).arch.max_positions
    return DataProfile(len(data.train), data.format, suggest_seq_len(data.lengths, positions))
