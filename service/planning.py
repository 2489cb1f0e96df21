"""Planning one job in a process of its own: its dataset profiled, its plan made, killable at its deadline.

Profiling reads and tokenizes the whole dataset (maybe after a hub download). On a thread of the API's
process it held the GIL and the server's memory, and a thread past its time limit could not be stopped: it
kept its slot until it ended. A child process is killed at the deadline, or as soon as its job is cancelled,
and its slot and memory are free at once. Its answer crosses back as data: the plan as a dict
(`Plan.to_dict`, read back with `load_plan`), or a cause and a message.

Children are forked by a forkserver that imported the profiling code once (torch and transformers take
seconds to import here), so a job starts planning in milliseconds. The forkserver starts with the
server's environment (HF_HOME, HF_HUB_OFFLINE, ...) as it is when the first job is planned.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass

from planner import InfeasibleError, ModelProfileError, Queue, SpecError, parse_job, plan_job
from planner.calibration import CalibrationTable
from planner.catalog import Inventory
from service.policy import policy_problems
from service.settings import Settings
from service.states import Cause
from worker.rows import SizeLimits

log = logging.getLogger("effft.planning")
# imported once by the forkserver: every planning process is forked with them loaded
PRELOAD = ["service.planning", "worker.profiling", "worker.model", "transformers.models.auto.tokenization_auto"]
GRACE_SECONDS = 30  # a child ends itself this long after its deadline, should no one have killed it
EXIT_ABANDONED = 124  # the exit code of a child that ended itself so (as timeout(1) has it)


@dataclass(frozen=True)
class PlanningRequest:
    """All a planning process needs, as data: it touches neither the store nor Ray."""

    owner: str
    spec: dict  # the job as submitted
    settings: Settings  # the confinement rules and the size limits
    inventory: Inventory  # the cluster's GPUs when planning began
    calibration: CalibrationTable  # the factors fitted from the store's measured runs
    timeout_seconds: float
    queue: Queue | None = None  # jobs waiting and GPUs free, for objective auto (None: plan it as if alone)


def failure(cause: Cause, message: str) -> dict:
    return {"cause": str(cause), "message": message}


def size_limits(settings: Settings) -> SizeLimits:
    return SizeLimits(settings.planning_max_dataset_bytes, settings.planning_max_rows,
                      "EFFFT_PLANNING_MAX_DATASET_BYTES", "EFFFT_PLANNING_MAX_ROWS")


def plan_outcome(request: PlanningRequest) -> dict:
    """The job's plan ({"plan": dict}), or why it has none ({"cause": str, "message": str})."""
    from worker.errors import WorkerError
    from worker.profiling import profile_dataset

    try:
        spec = parse_job(request.spec)
        problems = policy_problems(spec, request.settings, request.owner)  # files may have changed since submit
        if problems:
            raise SpecError(problems)
        data = profile_dataset(spec, size_limits(request.settings))
        plan = plan_job(spec, request.inventory, calibration=request.calibration, seq_len=data.seq_len,
                        queue=request.queue)
        return {"plan": plan.to_dict()}
    except InfeasibleError as error:
        return failure(Cause.INFEASIBLE, str(error))
    except (SpecError, ModelProfileError, WorkerError, ValueError, OSError) as error:
        return failure(Cause.BAD_INPUT, str(error))
    except Exception as error:  # anything else (MemoryError too) is effft's own failure, not the user's
        log.exception("planning failed")
        return failure(Cause.SYSTEM, f"{type(error).__name__}: {error}")


def _child_main(request: PlanningRequest, answer, lifeline) -> None:
    """In the child: the outcome, sent back; it ends itself if the server is gone or it is late (see _watch)."""
    threading.Thread(target=_watch, args=(lifeline, request.timeout_seconds + GRACE_SECONDS), daemon=True).start()
    answer.send(plan_outcome(request))
    answer.close()


def _watch(lifeline, seconds: float) -> None:
    """End this process when the server is gone or `seconds` after it started: nothing else would stop it then.

    The server holds the lifeline's only write end and never writes, so the read end polls ready exactly when
    the server's process has ended (the kernel closes its files). Watching for a new parent would not do:
    multiprocessing hands each child the forkserver's keep-alive fd, so the forkserver outlives the server for
    as long as this child does; and an event could be missed where this state cannot."""
    deadline = time.monotonic() + seconds
    while not lifeline.poll(min(1.0, max(0.0, deadline - time.monotonic()))) and time.monotonic() < deadline:
        pass
    os._exit(EXIT_ABANDONED)


def planning_context():
    context = multiprocessing.get_context("forkserver")  # never fork the API's threads; spawn re-imports torch
    context.set_forkserver_preload(PRELOAD)  # takes effect when the forkserver starts, on the first job
    return context


class PlanningProcess:
    """One job's planning child: started at once, asked for its outcome without blocking, killed when late."""

    def __init__(self, request: PlanningRequest, name: str):
        context = planning_context()
        self._answers, answer = context.Pipe(duplex=False)
        lifeline, self._lifeline = context.Pipe(duplex=False)  # held open here, for as long as this server lives
        self._process = context.Process(target=_child_main, args=(request, answer, lifeline), name=name,
                                        daemon=True)
        self._process.start()
        answer.close()  # the child has its own end: once it exits, reading here ends instead of waiting
        lifeline.close()
        self._outcome: dict | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def waitables(self) -> list:
        """What `multiprocessing.connection.wait` watches: an answer arriving, or the child ending."""
        return [self._answers, self._process.sentinel]

    def outcome(self) -> dict | None:
        """The child's answer, or why it ended without one; None while it is still at work."""
        if self._outcome is None and (self._answers.poll() or not self._process.is_alive()):
            self._outcome = self._read()
        return self._outcome

    def _read(self) -> dict:
        try:
            return self._answers.recv()
        except (EOFError, OSError):
            self._process.join(5)
            code = self._process.exitcode
            return failure(Cause.SYSTEM, f"the planning process ended without an answer (exit code {code}"
                           f"{', killed: out of memory?' if code == -9 else ''}); a dataset too big for this "
                           "server's memory is refused earlier by lowering EFFFT_PLANNING_MAX_DATASET_BYTES")

    def kill(self) -> None:
        """Stop the child now (past its deadline, or its job cancelled): its slot and memory are free at once."""
        if self._process.is_alive():
            self._process.kill()

    def close(self) -> None:
        """Reap the ended (or killed) child and close its pipe; closing twice is harmless."""
        self._process.join(5)
        self._answers.close()
        self._lifeline.close()
