"""The transition table is the whole state machine: check_transition allows exactly its pairs."""

from __future__ import annotations

import itertools

import pytest

from service.states import CANCEL_TARGET, TERMINAL, TRANSITIONS, State, TransitionError, check_transition

ALL_PAIRS = list(itertools.product(State, State))


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_a_change_is_allowed_exactly_when_the_table_lists_it(current, target):
    if (current, target) in TRANSITIONS:
        assert check_transition(current, target) == TRANSITIONS[(current, target)]
    else:
        with pytest.raises(TransitionError) as caught:
            check_transition(current, target)
        assert f"from {current} to {target}" in str(caught.value)
        assert (caught.value.current, caught.value.target) == (current, target)


def test_check_transition_takes_plain_strings():
    assert check_transition("queued", "planning") == TRANSITIONS[(State.QUEUED, State.PLANNING)]
    with pytest.raises(TransitionError):
        check_transition("queued", "running")


def test_an_unknown_state_is_a_value_error():
    with pytest.raises(ValueError):
        check_transition("queued", "exploded")


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_allow_nothing(terminal):
    assert not [pair for pair in TRANSITIONS if pair[0] == terminal]
    with pytest.raises(TransitionError, match="nothing"):
        check_transition(terminal, State.QUEUED)


def test_the_error_lists_where_the_job_can_go():
    with pytest.raises(TransitionError) as caught:
        check_transition(State.RUNNING, State.QUEUED)
    assert "cancelling, failed, succeeded" in str(caught.value)


def test_every_cancel_target_is_an_allowed_transition_or_already_there():
    for current, target in CANCEL_TARGET.items():
        assert current == target or (current, target) in TRANSITIONS, (current, target)


def test_terminal_states_have_no_cancel_target_and_every_other_state_has_one():
    assert set(CANCEL_TARGET) == set(State) - TERMINAL


def test_every_non_terminal_state_can_still_end():
    for state in set(State) - TERMINAL:
        assert any(f == state for f, _ in TRANSITIONS), state
