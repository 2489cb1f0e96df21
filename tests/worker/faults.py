"""Fault injection for tests, through the worker's documented seam: Trainer callbacks that a test hands to
`RayRun(callbacks=...)`. Production code carries no fault hooks.

Ray pickles the callbacks to its worker processes; this module is pickled by value, so the workers need
not be able to import `tests`.
"""

from __future__ import annotations

import os
import sys
import time

import ray.cloudpickle
import ray.train
from transformers import TrainerCallback

from worker.ray_env import report_poll_seconds


class KillAtStep(TrainerCallback):
    """Rank 0 dies, as abruptly as a kill -9 or a lost node, at `step` of a fresh attempt. An attempt that
    resumed from a checkpoint Ray holds runs on, so a run with one retry can still finish."""

    def __init__(self, step: int):
        self.step = step
        self.armed = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.armed = ray.train.get_checkpoint() is None

    def on_step_end(self, args, state, control, **kwargs):
        if self.armed and state.global_step == self.step and state.is_world_process_zero:
            # the last checkpoint's report reaches Ray's controller at its next poll: let it get there first
            time.sleep(5 * report_poll_seconds())
            os._exit(9)


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
