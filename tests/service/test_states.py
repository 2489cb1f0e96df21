"""The job lifecycle README.md documents, written out here by hand: check_transition must allow exactly it.

The expected table is literal (not read from service/states.py), so a changed table in the code fails
here until README.md and this file change with it; the last test keeps README.md's block and this one equal.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from service import states
from service.states import CANCEL_TARGET, TERMINAL, State, TransitionError, check_transition

# README.md, "The service": the lifecycle table, transcribed
README_TABLE = {
    "queued": ("planning", "cancelled"),
    "planning": ("waiting", "running", "failed", "cancelled", "queued"),
    "waiting": ("running", "failed", "cancelled"),
    "running": ("succeeded", "failed", "cancelling"),
    "cancelling": ("cancelled", "succeeded", "failed"),
    "succeeded": (),
    "failed": (),
    "cancelled": (),
}
README_CANCEL = {"queued": "cancelled", "planning": "cancelled", "waiting": "cancelled", "running": "cancelling",
                 "cancelling": "cancelling"}
README_FINAL = {"succeeded", "failed", "cancelled"}
README_CAUSES = {"infeasible", "bad_input", "oom", "worker", "system"}

ALLOWED = {(a, b) for a, targets in README_TABLE.items() for b in targets}
ALL_PAIRS = list(itertools.product(README_TABLE, README_TABLE))


def test_the_states_are_the_documented_eight():
    assert {s.value for s in State} == set(README_TABLE)


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_a_change_is_allowed_exactly_when_the_readme_lists_it(current, target):
    if (current, target) in ALLOWED:
        assert check_transition(current, target).strip()  # allowed, with the reason the event records
    else:
        with pytest.raises(TransitionError) as caught:
            check_transition(current, target)
        assert f"from {current} to {target}" in str(caught.value)
        assert (caught.value.current, caught.value.target) == (current, target)


def test_the_final_states_are_the_documented_three_and_allow_nothing():
    assert {s.value for s in TERMINAL} == README_FINAL
    for final in README_FINAL:
        with pytest.raises(TransitionError, match="nothing"):
            check_transition(final, "queued")


def test_cancel_takes_each_state_where_the_readme_says():
    assert {s.value: t.value for s, t in CANCEL_TARGET.items()} == README_CANCEL
    for current, target in README_CANCEL.items():
        assert current == target or (current, target) in ALLOWED


def test_the_failure_causes_are_the_documented_five():
    causes = getattr(states, "Cause", None) or states.CAUSES  # an enum once causes are typed, a tuple before
    assert {str(c) for c in causes} == README_CAUSES


def test_check_transition_takes_plain_strings_and_refuses_unknown_states():
    assert check_transition("queued", "planning")
    with pytest.raises(TransitionError):
        check_transition("queued", "running")
    with pytest.raises(ValueError):
        check_transition("queued", "exploded")


def test_the_error_lists_where_the_job_can_go():
    with pytest.raises(TransitionError) as caught:
        check_transition(State.RUNNING, State.QUEUED)
    assert "cancelling, failed, succeeded" in str(caught.value)


def readme_table() -> dict[str, tuple[str, ...]]:
    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        if match := re.match(r"^(\w+)\s+-> ([\w |]+?)\s+cancel: \w+$", line):
            table[match[1]] = tuple(t.strip() for t in match[2].split("|"))
        elif match := re.match(r"^([\w, ]+): final", line):
            table.update({name.strip(): () for name in match[1].split(",")})
    return table


def test_this_file_transcribes_the_readme_table():
    assert readme_table() == README_TABLE
