"""Calibration from measured runs: cautious memory factors, median tokens/s, shrunk toward 1, applied by plans."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.calibration import NEUTRAL, PRIOR_RUNS, CalibrationTable, Observation, fit_key
from tests.planner.test_decisions import plan

KEY = ("A10G", "llama", "lora", "amp")
ratios = st.floats(0.5, 2.5)


def observation(memory_ratio: float, speed_ratio: float, key=KEY) -> Observation:
    return Observation(*key, predicted_bytes=10**9, measured_bytes=int(10**9 * memory_ratio),
                       predicted_tokens_per_second=1000.0, measured_tokens_per_second=1000.0 * speed_ratio)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(ratios, ratios), min_size=1, max_size=12))
def test_memory_errs_high_and_speed_is_the_median_both_shrunk_toward_1(pairs):
    fitted = fit_key([observation(m, s) for m, s in pairs])
    memories, speeds = sorted(m for m, _ in pairs), sorted(s for _, s in pairs)
    weight = len(pairs) / (len(pairs) + PRIOR_RUNS)
    median_memory = memories[len(memories) // 2]
    # at least what the median run needed (shrunk the same way): a corrected plan errs high
    assert fitted.memory >= median_memory ** weight - 1e-9
    assert min(1.0, memories[0]) - 1e-9 <= fitted.memory <= max(1.0, memories[-1]) + 1e-9
    assert min(1.0, speeds[0]) - 1e-9 <= fitted.tokens_per_second <= max(1.0, speeds[-1]) + 1e-9
    assert fitted.runs == len(pairs)


def test_one_run_corrects_most_of_a_systematic_miss():
    fitted = fit_key([observation(1.3, 0.8)])
    assert fitted.memory == pytest.approx(1.3 ** (1 / (1 + PRIOR_RUNS)))
    assert abs(fitted.memory - 1.3) / 1.3 < 0.10 and abs(fitted.tokens_per_second - 0.8) / 0.8 < 0.10


def test_more_agreeing_runs_move_the_factor_closer_to_the_measurement():
    few, many = fit_key([observation(1.2, 1.2)]), fit_key([observation(1.2, 1.2)] * 8)
    assert abs(many.memory - 1.2) < abs(few.memory - 1.2)


def test_a_broken_measurement_is_ignored_and_other_keys_are_untouched():
    table = CalibrationTable.from_observations([observation(5000.0, 1.0), observation(1.1, 0.9)])
    assert table.lookup(*KEY).memory == pytest.approx(1.1 ** (1 / (1 + PRIOR_RUNS)))
    assert table.lookup("H100-80GB", "llama", "lora", "amp") == NEUTRAL


def test_a_plan_applies_its_key_says_so_and_gives_back_the_raw_model():
    raw = plan("7B", "A10G", seq_len=1024, method="lora")
    key = (raw.gpu, raw.family, raw.settings.method, raw.settings.precision_recipe)
    table = CalibrationTable.from_observations([observation(1.2, 0.5, key)] * 3)
    corrected = plan("7B", "A10G", seq_len=1024, method="lora", calibration=table)
    factor = table.lookup(*key)
    assert corrected.memory.total == pytest.approx(raw.memory.total * factor.memory, rel=1e-6)
    speed = raw.throughput.tokens_per_second * factor.tokens_per_second
    assert corrected.throughput.tokens_per_second == pytest.approx(speed)
    [said] = [d for d in corrected.decisions if d.setting == "calibration"]
    assert "from 3 runs of llama/lora" in said.reason and said.numbers["runs"] == 3
    learned = corrected.observation(raw.memory.total, raw.throughput.tokens_per_second)
    assert learned.predicted_bytes == pytest.approx(raw.memory.total, rel=1e-6)
    assert learned.predicted_tokens_per_second == pytest.approx(raw.throughput.tokens_per_second)
