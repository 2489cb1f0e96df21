"""The Plan as a contract: every plan survives JSON and reads back equal; a foreign one fails by name."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import InfeasibleError
from planner.plan import SCHEMA_VERSION, PlanVersionError, load_plan
from tests.planner.test_decisions import CASES, plan

GPUS = ("T4", "A10G", "RTX4090", "A100-80GB", "H100-80GB")


def _round_trip(original):
    return load_plan(json.loads(json.dumps(original.to_dict())))


@pytest.mark.parametrize(("model", "gpu", "gpus", "fields", "expected"), CASES)
def test_every_decision_table_plan_reads_back_equal(model, gpu, gpus, fields, expected):
    original = plan(model, gpu, gpus, **fields)
    assert _round_trip(original) == original


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(model=st.sampled_from(("1B", "7B")), gpu=st.sampled_from(GPUS), gpus=st.sampled_from((1, 2, 8)),
       seq_len=st.sampled_from((256, 1024, 4096)), method=st.sampled_from(("auto", "lora", "qlora", "ia3")))
def test_plans_over_the_space_read_back_equal(model, gpu, gpus, seq_len, method):
    try:
        original = plan(model, gpu, gpus, seq_len=seq_len, method=method)
    except InfeasibleError:  # a pinned method that does not fit has no plan to carry
        return
    assert _round_trip(original) == original
    assert original.to_dict()["schema_version"] == SCHEMA_VERSION


def test_a_plan_stored_before_versions_existed_still_loads():
    original = plan("7B", "A10G", seq_len=1024)
    data = original.to_dict()
    del data["schema_version"]  # what effft stored before the Plan was typed: the same fields
    assert load_plan(data) == original


def test_a_newer_schema_is_refused_naming_both_versions():
    data = {**plan("7B", "A10G", seq_len=1024).to_dict(), "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(PlanVersionError, match=f"version {SCHEMA_VERSION + 1}.*{SCHEMA_VERSION}"):
        load_plan(data)


@pytest.mark.parametrize(("path", "change"), [
    (("settings", "micro_batch_size"), None),  # renamed or dropped: missing
    (("settings", "method"), "lorax"),  # a value the worker cannot run
    (("memory", "total"), "many"),
])
def test_a_plan_that_does_not_match_fails_naming_the_field(path, change):
    data = plan("7B", "A10G", seq_len=1024).to_dict()
    holder = data[path[0]]
    if change is None:
        del holder[path[1]]
    else:
        holder[path[1]] = change
    with pytest.raises(PlanVersionError, match=".".join(path)):
        load_plan(data)


def test_an_unknown_field_is_refused_not_dropped():
    data = plan("7B", "A10G", seq_len=1024).to_dict()
    data["settings"]["micro_batch"] = 4  # a typo'd or renamed key must not pass silently
    with pytest.raises(PlanVersionError, match="settings.micro_batch"):
        load_plan(data)
