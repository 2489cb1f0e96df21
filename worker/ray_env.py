"""The environment variables effft sets for Ray, in one place. No Ray import: the service reads these too.

Each works only when set before Ray starts in a process: the service passes them to the head it
starts and to every Ray Job it submits; `ray_run.ensure_ray` sets them before `ray.init`.
"""

from __future__ import annotations

import os

# Ray Train's controller polls its workers every 2 s by default, and `ray.train.report` (each checkpoint)
# blocks until that poll: a checkpoint should not wait that long
REPORT_POLL_SECONDS = "0.2"
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": REPORT_POLL_SECONDS}
# the clusters effft starts itself listen on loopback only; Ray 2.60 would otherwise require auth tokens
PRIVATE_CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled"}


def report_poll_seconds() -> float:
    """The poll interval this process's Ray Train uses."""
    return float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", REPORT_POLL_SECONDS))


def set_defaults(env: dict[str, str]) -> None:
    """Put `env` in this process's environment, keeping what the user set already."""
    for name, value in env.items():
        os.environ.setdefault(name, value)
