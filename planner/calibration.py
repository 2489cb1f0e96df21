"""Calibration from measured runs: correction factors per (device, family, method, precision recipe).

Every finished run is an observation: what its plan predicted before calibration (the raw model)
and what the worker measured (the same metric: planner/memory.py names it per device). The factor
for a key is robust and cautious: memory takes the largest ratio while runs are few and an upper
quantile once there are more, so a corrected estimate errs high; tokens/s takes the median. Both
are shrunk toward 1 (in log space) by a prior worth a fiftieth of one run: one run already corrects
nearly all of a systematic miss, and a single odd run cannot move a key far once others agree. Pure: data in,
factors out (the store and the local history file feed it).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

CALIBRATION_VERSION = 1  # raise when the fit changes, so plans say which rule corrected them
PRIOR_RUNS = 0.02  # the neutral factor counts as this many runs: one run corrects ~98 % of a miss (in log)
MEMORY_QUANTILE = 0.8  # with more than QUANTILE_FROM runs; the largest ratio before that
QUANTILE_FROM = 4
FACTOR_BOUNDS = (1e-3, 1e3)  # a ratio outside is a broken measurement (a unit mix-up), not a model error


@dataclass(frozen=True)
class Observation:
    device: str  # the plan's GPU type ("cpu" on a CPU)
    family: str
    method: str
    recipe: str
    predicted_bytes: int  # raw: before calibration
    measured_bytes: int
    predicted_tokens_per_second: float  # raw
    measured_tokens_per_second: float

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.device, self.family, self.method, self.recipe)


@dataclass(frozen=True)
class Calibration:
    """The factors a plan applies: memory scales every term, tokens/s the throughput."""

    memory: float = 1.0
    tokens_per_second: float = 1.0
    runs: int = 0
    key: tuple[str, ...] = ()
    version: int = CALIBRATION_VERSION

    @property
    def neutral(self) -> bool:
        return self.runs == 0

    def describe(self) -> str:
        if self.neutral:
            return "no measured runs of this device, family, method and precision yet: the raw model"
        device, family, method, recipe = self.key
        return (f"calibrated (v{self.version}) from {self.runs} run{'s' if self.runs > 1 else ''} of "
                f"{family}/{method} ({recipe}) on {device}: memory x{self.memory:.2f}, "
                f"tokens/s x{self.tokens_per_second:.2f}")


NEUTRAL = Calibration()


def _ratios(observations: list[Observation]) -> tuple[list[float], list[float]]:
    low, high = FACTOR_BOUNDS
    memory = [o.measured_bytes / o.predicted_bytes for o in observations if o.predicted_bytes > 0
              and o.measured_bytes > 0]
    speed = [o.measured_tokens_per_second / o.predicted_tokens_per_second for o in observations
             if o.predicted_tokens_per_second > 0 and o.measured_tokens_per_second > 0]
    return [r for r in memory if low <= r <= high], [r for r in speed if low <= r <= high]


def _upper(ratios: list[float]) -> float:
    if len(ratios) <= QUANTILE_FROM:
        return max(ratios)
    ordered = sorted(ratios)
    return ordered[min(len(ordered) - 1, int(MEMORY_QUANTILE * len(ordered)))]


def _shrunk(ratio: float, runs: int) -> float:
    """Toward 1 in log space: a 2x miss and a 0.5x miss are shrunk alike."""
    return ratio ** (runs / (runs + PRIOR_RUNS))


def fit_key(observations: list[Observation]) -> Calibration:
    memory, speed = _ratios(observations)
    if not memory and not speed:
        return NEUTRAL
    return Calibration(memory=_shrunk(_upper(memory), len(memory)) if memory else 1.0,
                       tokens_per_second=_shrunk(statistics.median(speed), len(speed)) if speed else 1.0,
                       runs=max(len(memory), len(speed)), key=observations[0].key)


def fit(observations: Iterable[Observation]) -> dict[tuple[str, str, str, str], Calibration]:
    """One Calibration per key that has at least one usable run."""
    by_key: dict[tuple[str, str, str, str], list[Observation]] = defaultdict(list)
    for observation in observations:
        by_key[observation.key].append(observation)
    fitted = {key: fit_key(runs) for key, runs in by_key.items()}
    return {key: calibration for key, calibration in fitted.items() if not calibration.neutral}


@dataclass(frozen=True)
class CalibrationTable:
    """What a planner consults: the fitted factors, looked up by the run's key."""

    factors: dict[tuple[str, str, str, str], Calibration]

    @classmethod
    def from_observations(cls, observations: Iterable[Observation]) -> CalibrationTable:
        return cls(fit(observations))

    def lookup(self, device: str, family: str, method: str, recipe: str) -> Calibration:
        return self.factors.get((device, family, method, recipe), NEUTRAL)

    def rows(self) -> list[dict]:
        return [{"device": key[0], "family": key[1], "method": key[2], "recipe": key[3], "runs": c.runs,
                 "memory": c.memory, "tokens_per_second": c.tokens_per_second, "version": c.version}
                for key, c in sorted(self.factors.items())]


EMPTY = CalibrationTable({})
