"""Job states as data: the allowed transitions, and the one pure function that checks a change."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    QUEUED = "queued"
    PLANNING = "planning"
    WAITING = "waiting"  # planned; its GPUs are busy
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})


class Cause(StrEnum):
    """Why a job failed. The values are what the database's `cause` column and the API hold: never rename one."""

    INFEASIBLE = "infeasible"  # the plan cannot fit
    BAD_INPUT = "bad_input"  # the data or model is unusable
    OOM = "oom"  # it ran out of memory
    WORKER = "worker"  # the training code failed
    SYSTEM = "system"  # effft or Ray failed around it


S = State
TRANSITIONS: dict[tuple[State, State], str] = {
    (S.QUEUED, S.PLANNING): "the scheduler claimed it",
    (S.QUEUED, S.CANCELLED): "cancelled before it was planned",
    (S.PLANNING, S.QUEUED): "the scheduler stopped while planning it; planned again",
    (S.PLANNING, S.WAITING): "planned; its GPUs are busy",
    (S.PLANNING, S.RUNNING): "planned and submitted to Ray",
    (S.PLANNING, S.FAILED): "it cannot be planned",
    (S.PLANNING, S.CANCELLED): "cancelled while planning",
    (S.WAITING, S.RUNNING): "its GPUs came free; submitted to Ray",
    (S.WAITING, S.FAILED): "it can no longer be submitted",
    (S.WAITING, S.CANCELLED): "cancelled while waiting",
    (S.RUNNING, S.SUCCEEDED): "the Ray job finished",
    (S.RUNNING, S.FAILED): "the Ray job failed",
    (S.RUNNING, S.CANCELLING): "cancel asked; stopping the Ray job",
    (S.CANCELLING, S.CANCELLED): "the Ray job stopped",
    (S.CANCELLING, S.SUCCEEDED): "the Ray job finished before it could be stopped",
    (S.CANCELLING, S.FAILED): "the Ray job failed before it could be stopped",
}
# where a cancel request takes a job from each state (terminal states refuse it)
CANCEL_TARGET = {S.QUEUED: S.CANCELLED, S.PLANNING: S.CANCELLED, S.WAITING: S.CANCELLED, S.RUNNING: S.CANCELLING,
                 S.CANCELLING: S.CANCELLING}


class TransitionError(ValueError):
    def __init__(self, current: State, target: State):
        self.current, self.target = current, target
        allowed = sorted(t for (f, t) in TRANSITIONS if f == current)
        super().__init__(f"a job cannot go from {current} to {target}; from {current} it can go to "
                         f"{', '.join(allowed) if allowed else 'nothing (it has ended)'}")


def check_transition(current: State | str, target: State | str) -> str:
    """The reason the change is allowed; TransitionError when the table does not allow it."""
    current, target = State(current), State(target)
    reason = TRANSITIONS.get((current, target))
    if reason is None:
        raise TransitionError(current, target)
    return reason
