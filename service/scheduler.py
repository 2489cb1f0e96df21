"""The scheduler: claims queued jobs, plans them against the live inventory, starts them as Ray Jobs
when their GPUs are free, follows them to the end, and stops cancelled ones.

Each pass reads the state from the store and Ray, so a restarted scheduler picks up where the last
one stopped: jobs caught mid-planning are planned again, running jobs are matched with Ray's view.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for_any
from pathlib import Path

from planner.plan import Plan, PlanVersionError, load_plan
from service.calibration import table_from_store
from service.cluster import context_bytes, device_loads, queue_now
from service.embedded import write_secret
from service.packing import claim_of, place, placement_record, waiting_reason
from service.planning import PlanningProcess, PlanningRequest, failure
from service.policy import confinement
from service.restarts import restart_driver
from service.settings import Settings
from service.states import Cause, State
from service.store import JobStore
from worker.disk import says_disk_full
from worker.job_file import ConfinementFile, JobFile
from worker.ray_env import TRAIN_ENV

log = logging.getLogger("effft.scheduler")
# how each final Ray job status ends an effft job, from running / from cancelling
ENDINGS = {
    ("SUCCEEDED", State.RUNNING): (State.SUCCEEDED, None), ("SUCCEEDED", State.CANCELLING): (State.SUCCEEDED, None),
    ("FAILED", State.RUNNING): (State.FAILED, Cause.WORKER),
    ("FAILED", State.CANCELLING): (State.FAILED, Cause.WORKER),
    ("STOPPED", State.RUNNING): (State.FAILED, Cause.SYSTEM), ("STOPPED", State.CANCELLING): (State.CANCELLED, None),
    ("MISSING", State.RUNNING): (State.FAILED, Cause.SYSTEM), ("MISSING", State.CANCELLING): (State.CANCELLED, None),
}


def by_held_bytes(jobs: list) -> list:
    """Largest predicted peak first (ties: oldest first): first-fit decreasing packs the most."""
    def held(job) -> int:
        try:
            return load_plan(job.plan).memory.budgeted
        except (PlanVersionError, ValueError, TypeError):
            return 0

    return sorted(jobs, key=lambda job: -held(job))


def failure_cause(status_cause: Cause, logs: str) -> Cause:
    if "OutOfMemoryError" in logs or "out of memory" in logs.lower():
        return Cause.OOM
    return Cause.SYSTEM if says_disk_full(logs) else status_cause  # not the training's fault


@dataclass(frozen=True)
class Planning:
    """One job being profiled and planned in a process of its own (service/planning.py); the loop reaps it."""

    deadline: float  # on the scheduler's clock
    process: PlanningProcess


LEFT_PLANNING = {"left_planning": True}  # the job was cancelled meanwhile: its planning is dropped unread


class Scheduler:
    def __init__(self, store: JobStore, settings: Settings, cluster, api_url: str, clock=time.monotonic):
        self.store, self.settings, self.cluster, self.api_url = store, settings, cluster, api_url
        self.clock = clock  # planning deadlines are measured on it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._planning: dict[str, Planning] = {}

    # -- the loop --------------------------------------------------------------------------------

    def reconcile(self) -> None:
        for job in self.store.in_states(State.PLANNING):
            self.store.transition(job.id, State.PLANNING, State.QUEUED)

    def tick(self, wait: float = 0.0) -> None:
        """One pass. Planning (dataset profiling, hub fetches) runs in processes of its own, so that one slow job
        never holds up following, starting, cancelling or planning the others; `wait` lets a pass wait for it."""
        for job in self.store.in_states(State.RUNNING, State.CANCELLING):
            self._guarded(job.id, self._follow, job)
        for job in by_held_bytes(self.store.in_states(State.WAITING)):  # first-fit decreasing
            self._guarded(job.id, self._start_waiting, job)
        self._reap_planning()
        while self._planning_slots() > 0 and (job := self.store.claim_next_queued()):
            self._begin_planning(job)
        if wait and self._planning:
            self._wait_for_planning(time.monotonic() + wait)
            self._reap_planning()

    @staticmethod
    def _guarded(job_id: str, step, *args) -> None:
        """One job's trouble (Ray briefly away, say) must not stop the pass for the others; it is retried."""
        try:
            step(*args)
        except Exception:
            log.exception("scheduler: job %s", job_id)

    def start(self) -> Scheduler:
        self.reconcile()
        self._thread = threading.Thread(target=self._loop, name="effft-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop and the planning processes; their jobs stay in planning, and are planned again by the
        next start (reconcile)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for planning in self._planning.values():
            planning.process.kill()
            planning.process.close()
        self._planning.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a pass that fails (database or Ray briefly away) is retried on the next
                log.exception("scheduler pass failed")
            self._stop.wait(self.settings.scheduler_interval_seconds)

    # -- planning and starting ----------------------------------------------------------------------

    def _fail(self, job_id: str, current: State, cause: Cause, message: str) -> None:
        self.store.transition(job_id, current, State.FAILED, f"{cause}: {message[:500]}", cause=cause,
                              message=message)

    def planning_pids(self) -> dict[str, int | None]:
        """The jobs planning now, each with its planning process's id."""
        return {job_id: planning.process.pid for job_id, planning in self._planning.items()}

    def _planning_slots(self) -> int:
        return self.settings.planning_processes - len(self._planning)

    def _begin_planning(self, job) -> None:
        timeout = self.settings.planning_timeout_seconds
        try:  # the inputs are read here, so the child needs neither the store nor Ray
            inventory = self.cluster.inventory()
            request = PlanningRequest(job.owner, job.spec, self.settings, inventory, table_from_store(self.store),
                                      timeout, queue_now(self.store, inventory, self.settings))
            process = PlanningProcess(request, name=f"effft-plan-{job.id}")
        except Exception as error:  # Ray or the database away, or no process to be had: effft's failure
            log.exception("scheduler: planning %s could not start", job.id)
            self._fail(job.id, State.PLANNING, Cause.SYSTEM, f"planning could not start: {type(error).__name__}: "
                       f"{error}")
            return
        self._planning[job.id] = Planning(self.clock() + timeout, process)

    def submit_driver(self, job_id: str, submission_id: str, plan: Plan, placement: dict) -> str:
        """Write the job's file and submit its driver to Ray as `submission_id`; the Ray job's id."""
        job_file = self._write_job_file(job_id, plan, placement)
        entrypoint = f"{self.settings.worker_python or sys.executable} -m worker.job_main {job_file}"
        try:
            return self.cluster.submit(submission_id, entrypoint, dict(TRAIN_ENV))
        except Exception:
            # submitted before, by a scheduler that died before recording it: Ray knows the id, adopt it
            if self.cluster.status(submission_id) in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"):
                return submission_id
            raise

    def _wait_for_planning(self, until: float) -> None:
        """Block until every planning in flight has an outcome, or until `until` (time.monotonic)."""
        while busy := [p.process for p in self._planning.values() if p.process.outcome() is None]:
            left = until - time.monotonic()
            if left <= 0:
                return
            wait_for_any([w for process in busy for w in process.waitables()], left)

    def _reap_planning(self) -> None:
        """Start (or fail) each job whose planning ended; kill the planning of a job past the time limit (it
        fails) or cancelled meanwhile, which frees its slot at once."""
        for job_id, planning in list(self._planning.items()):
            outcome = planning.process.outcome()
            if outcome is None:
                outcome = self._reason_to_stop(job_id, planning)
                if outcome is None:
                    continue
                planning.process.kill()
            planning.process.close()
            del self._planning[job_id]
            if "plan" in outcome:
                self._guarded(job_id, self._planned, job_id, outcome["plan"])
            elif "cause" in outcome:
                self._guarded(job_id, self._fail, job_id, State.PLANNING, Cause(outcome["cause"]), outcome["message"])

    def _reason_to_stop(self, job_id: str, planning: Planning) -> dict | None:
        """Why a planning still at work ends now: past its deadline (a failure), or its job left planning
        (LEFT_PLANNING); None: it goes on."""
        if self.clock() >= planning.deadline:
            limit = self.settings.planning_timeout_seconds
            return failure(Cause.BAD_INPUT, f"planning took longer than {limit:.0f} s (fetching the model or "
                           "dataset, or reading it), and was stopped; use a local copy or a smaller dataset "
                           "(dataset.max_samples), or ask the operator to raise EFFFT_PLANNING_TIMEOUT_SECONDS")
        job = self.store.get(job_id)
        return LEFT_PLANNING if job is None or job.state != State.PLANNING else None

    def _planned(self, job_id: str, plan_dict: dict) -> None:
        job = self.store.get(job_id)
        if job is None or job.state != State.PLANNING:  # cancelled while it was planned: never submit it
            return
        try:
            plan = load_plan(plan_dict)  # the child's plan, as data (the same code made it: this never fails)
        except PlanVersionError as error:
            self._fail(job_id, State.PLANNING, Cause.SYSTEM, f"the planning process's plan cannot be read: {error}")
            return
        self.store.set_plan(job_id, plan.to_dict())
        try:
            self._start(job_id, State.PLANNING, plan)
        except Exception as error:  # Ray refused or was away: the waiting pass retries it
            log.exception("scheduler: submitting %s", job_id)
            self.store.transition(job_id, State.PLANNING, State.WAITING, f"submit failed, retrying: {error}"[:500])

    def default_output(self, job) -> Path:
        """The owner's own area (the run folder is private): the user can train on it again as a model."""
        return self.settings.allowed_output_roots[0] / job.owner / job.id

    def run_dir(self, job_id: str) -> Path:
        return (self.settings.data_dir / "runs" / job_id).resolve()

    def _start_waiting(self, job) -> None:
        try:
            plan = load_plan(job.plan)
        except PlanVersionError as error:  # stored by an effft that planned differently: plan it again
            self._fail(job.id, State.WAITING, Cause.BAD_INPUT, str(error))
            return
        self._start(job.id, State.WAITING, plan)

    def _start(self, job_id: str, current: State, plan: Plan) -> None:
        """Pack the job onto devices with room (service/packing.py) and submit it; or leave it waiting."""
        inventory, job = self.cluster.inventory(), self.store.get(job_id)
        exclusive = bool((job.spec.get("resources") or {}).get("exclusive", False))
        claim = claim_of(job_id, plan, exclusive, context_bytes(inventory, plan.gpu))
        loads = device_loads(self.store, inventory)
        devices = place(loads, claim)
        if devices is None:
            if current == State.PLANNING:
                self.store.transition(job_id, current, State.WAITING, waiting_reason(claim, loads))
            return
        placement = placement_record(claim, devices, loads, plan)
        ray_job_id = self.submit_driver(job_id, job_id, plan, placement)
        if not self.store.transition(job_id, current, State.RUNNING, placement["why"], ray_job_id=ray_job_id,
                                     gpus=plan.gpus, gpu_type=plan.gpu, placement=placement):
            self.cluster.stop(ray_job_id)  # cancelled while we submitted it

    def _write_job_file(self, job_id: str, plan: Plan, placement: dict) -> Path:
        folder = self.run_dir(job_id)
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.parent.chmod(0o700)  # run folders hold worker tokens, checkpoints and outputs: this user's only
        folder.mkdir(mode=0o700, exist_ok=True)
        job = self.store.get(job_id)
        config = JobFile(job_id=job_id, plan=plan, run_dir=str(folder),
                         output_dir=plan.settings.output.dir or str(self.default_output(job)),
                         api_url=self.api_url, worker_token=self._worker_token(job),
                         accelerator_type=getattr(self.cluster, "accelerator_type", lambda _: None)(plan.gpu),
                         # the driver connects to this cluster by address, never `auto` (another server's head)
                         ray_address=getattr(self.cluster, "address", None),
                         confinement=ConfinementFile.of(confinement(self.settings, job.owner)),
                         spec=job.spec, max_replans=self.settings.max_replans,
                         memory_safety_line=self.settings.memory_safety_line,
                         device_share=placement["device_share"], memory_cap_bytes=placement["cap_bytes"],
                         checkpoints_to_keep=self.settings.checkpoints_to_keep)
        path = folder / "job.json"
        write_secret(path, config.to_json())  # it holds the job's worker token
        return path

    def _worker_token(self, job) -> str:
        """The job's token; kept once issued, so a driver already running with it can still post."""
        return job.worker_token or self.store.issue_worker_token(job.id)

    # -- following -----------------------------------------------------------------------------------

    def _follow(self, job) -> None:
        status = self.cluster.status(job.ray_job_id) if job.ray_job_id else "MISSING"
        current = State(job.state)
        if current == State.CANCELLING and status in ("PENDING", "RUNNING"):
            self.cluster.stop(job.ray_job_id)
            return
        if status == "FAILED" and current == State.RUNNING and restart_driver(self, job):
            return  # its driver was killed from outside: it runs again, resuming (service/restarts.py)
        ending = ENDINGS.get((status, current))
        if ending is None:
            return
        target, cause = ending
        if target == State.FAILED:
            logs = self._logs(job.ray_job_id) if status == "FAILED" else ""
            message = logs.strip().splitlines()[-1][:1000] if logs.strip() else f"Ray job {status.lower()}"
            if says_disk_full(logs):
                message = f"the disk of the job's run folder (or output) is full; free space, submit again: {message}"
            self._fail(job.id, current, failure_cause(cause, logs), message)
        else:
            self.store.transition(job.id, current, target, f"Ray job {status.lower()}")

    def _logs(self, ray_job_id: str | None) -> str:
        try:
            return self.cluster.logs(ray_job_id) if ray_job_id else ""
        except Exception:  # logs are a nicety for the message; the failure is recorded either way
            return ""
