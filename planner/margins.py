"""Stated margins: where the memory model is uncertain, the plan reserves a share more and says why.

A margin is not hidden in the terms: the estimate stays what the model computes (what the
measured peak is compared with), and the plan must fit estimate + margin in the budget. The
rules are data: each names when it applies, its share of the estimate and the reason shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from planner.setup import RunSetup


@dataclass(frozen=True)
class MarginRule:
    name: str
    share: float  # of the estimate
    applies: Callable[[RunSetup], bool]
    reason: str


MARGIN_RULES: tuple[MarginRule, ...] = (
    MarginRule("activation model", 0.03, lambda run: True,
               "the op-by-op activation model's residual: median |error| 0.03 %, none under by more than "
               "2.9 % on 200 random CPU cases (bench/planner_truth.py)"),
    MarginRule("generic profile", 0.10, lambda run: getattr(run.arch, "generic", False),
               "layer shapes read by the generic profile from standard config fields, not a known family; "
               "kept until a measured run calibrates it"),
    MarginRule("GPU allocator", 0.03, lambda run: not run.device.is_cpu,
               "the caching allocator's fragmentation was measured at 3-8 % and is modeled as 5 %"),
    MarginRule("bitsandbytes on CUDA", 0.05, lambda run: run.method == "qlora" and not run.device.is_cpu,
               "the 4-bit kernels' CUDA workspace has not been measured on a GPU yet"),
)


# Small fixed tensors the model does not list (rotary caches, masks, step counters, the loss's scalars):
# on a model of a few MB they are a few % (measured: 140 KB on a 4.4 MB step); on any real model, nothing.
FIXED_BYTES = 512 * 2**10


def margin_for(run: RunSetup, estimate: int) -> tuple[int, tuple[str, ...]]:
    """Bytes to reserve beyond the estimate, and one line per rule that applies."""
    applying = [rule for rule in MARGIN_RULES if rule.applies(run)]
    share = sum(rule.share for rule in applying)
    reasons = tuple(f"+{rule.share:.0%} {rule.name}: {rule.reason}" for rule in applying)
    if estimate * share < FIXED_BYTES:
        reasons += (f"at least {FIXED_BYTES // 2**10} KiB: small fixed tensors the model does not list",)
    return max(int(estimate * share), FIXED_BYTES), reasons
