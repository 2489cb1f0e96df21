"""From a dataset spec to training blocks: read, check, split, tokenize with masked prompts, pack or pad.

Everything here runs before any GPU work, so a bad dataset fails in seconds with a clear error.
Packing concatenates examples (each ending in EOS) and cuts the stream into seq_len blocks, so
no compute goes to padding; attention then spans example boundaries, as in most packed SFT.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from planner.spec import DatasetSpec
from worker.errors import DataError
from worker.formats import IGNORE_INDEX, Example, check_row, detect_format, render
from worker.rows import NO_LIMITS, SizeLimits, read_rows

SEQ_LEN_PERCENTILE = 0.95  # seq_len auto covers this share of examples whole
SEQ_LEN_MULTIPLE = 64  # round seq_len up to a multiple that kernels like


@dataclass(frozen=True)
class TokenizedData:
    format: str
    train: list[Example]
    eval: list[Example]
    eval_rows: list[dict]  # the held-out rows themselves, for generation evals (exact match)

    @property
    def lengths(self) -> list[int]:
        return [len(e.input_ids) for e in self.train]


def split_rows(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded shuffle, then the first share held out; at least one row each side when a share is asked."""
    if fraction <= 0:
        return rows, []
    if len(rows) < 2:
        raise DataError("training.eval.fraction", fraction, f"the dataset has {len(rows)} row; an eval split "
                        "needs at least 2 rows, or set the fraction to 0")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = min(len(rows) - 1, max(1, round(fraction * len(rows))))
    return [rows[i] for i in order[held:]], [rows[i] for i in order[:held]]


def checked_rows(spec: DatasetSpec, limits: SizeLimits = NO_LIMITS) -> tuple[str, list[dict]]:
    """The rows and their format, every row checked: needs no tokenizer, so it can run first."""
    rows = read_rows(spec, limits)
    fmt = spec.format if spec.format != "auto" else detect_format(rows[0], spec.text_field)
    for number, row in enumerate(rows, start=1):
        check_row(row, fmt, spec.text_field, number)
    return fmt, rows


def tokenize_dataset(spec: DatasetSpec, tokenizer, eval_fraction: float = 0.0, seed: int = 42) -> TokenizedData:
    fmt, rows = checked_rows(spec)
    return tokenize_rows(fmt, rows, spec, tokenizer, eval_fraction, seed)


def tokenize_rows(fmt: str, rows: list[dict], spec: DatasetSpec, tokenizer, eval_fraction: float = 0.0,
                  seed: int = 42) -> TokenizedData:
    """Split checked rows and render each into token ids and labels."""
    train_rows, eval_rows = split_rows(rows, eval_fraction, seed)
    train = [render(row, fmt, tokenizer, spec.text_field) for row in train_rows]
    held = [render(row, fmt, tokenizer, spec.text_field) for row in eval_rows]
    return TokenizedData(fmt, train, held, eval_rows)


def suggest_seq_len(lengths: list[int], max_positions: int) -> int:
    """The 95th-percentile example length, rounded up to a multiple of 64 and capped by the model."""
    ordered = sorted(lengths)
    covered = ordered[min(len(ordered) - 1, math.ceil(SEQ_LEN_PERCENTILE * len(ordered)) - 1)]
    return min(max_positions, max(SEQ_LEN_MULTIPLE, math.ceil(covered / SEQ_LEN_MULTIPLE) * SEQ_LEN_MULTIPLE))


def _block(ids: list[int], labels: list[int], seq_len: int, pad_id: int) -> dict:
    pad = seq_len - len(ids)
    return {"input_ids": ids + [pad_id] * pad, "labels": labels + [IGNORE_INDEX] * pad,
            "attention_mask": [1] * len(ids) + [0] * pad}


def pack(examples: list[Example], seq_len: int, pad_id: int) -> list[dict]:
    """Concatenate, then cut into seq_len blocks. The tail shorter than a block is dropped (as HF's
    `group_texts` does) unless it is all there is: a padded block makes the model build an explicit
    attention mask (and SDPA repeat GQA's keys) for its batch, a step that needs more memory than every
    other step and more than the plan counted (+4 % on the tiny example at micro-batch 4)."""
    ids = [t for e in examples for t in e.input_ids]
    labels = [t for e in examples for t in e.labels]
    whole = len(ids) - len(ids) % seq_len if len(ids) >= seq_len else len(ids)
    blocks = [_block(ids[i:i + seq_len], labels[i:i + seq_len], seq_len, pad_id)
              for i in range(0, whole, seq_len)]
    return [b for b in blocks if any(label != IGNORE_INDEX for label in b["labels"])]


def pad(examples: list[Example], seq_len: int, pad_id: int) -> list[dict]:
    """One example per block, truncated to seq_len; blocks whose answer lies past seq_len are dropped."""
    blocks = [_block(e.input_ids[:seq_len], e.labels[:seq_len], seq_len, pad_id) for e in examples]
    return [b for b in blocks if any(label != IGNORE_INDEX for label in b["labels"])]


def build_blocks(examples: list[Example], seq_len: int, packing: bool, pad_id: int, field: str) -> list[dict]:
    blocks = (pack if packing else pad)(examples, seq_len, pad_id)
    if examples and not blocks:
        raise DataError(field, seq_len, "no example has a trained token within seq_len (every response starts "
                        "after it); raise seq_len or shorten the prompts")
    return blocks


def pad_token_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0
