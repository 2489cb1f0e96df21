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
from dataclasses import dataclass, field
from pathlib import Path

from planner import InfeasibleError, ModelProfileError, SpecError, parse_job, plan_job
from planner.plan import Plan, PlanVersionError, load_plan
from service.calibration import table_from_store
from service.cluster import context_bytes, device_loads
from service.embedded import write_secret
from service.packing import claim_of, place, placement_record, waiting_reason
from service.policy import confinement, policy_problems
from service.settings import Settings
from service.states import Cause, State
from service.store import JobStore
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
    return Cause.OOM if "OutOfMemoryError" in logs or "out of memory" in logs.lower() else status_cause


@dataclass
class Planning:
    """One job being profiled and planned on its own thread; the loop reaps the outcome."""

    deadline: float
    outcome: dict = field(default_factory=dict)  # {"plan": Plan} or {"cause": Cause, "message": str}
    thread: threading.Thread | None = None


class Scheduler:
    def __init__(self, store: JobStore, settings: Settings, cluster, api_url: str, clock=time.monotonic):
        self.store, self.settings, self.cluster, self.api_url = store, settings, cluster, api_url
        self.clock = clock  # planning deadlines are measured on it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._planning: dict[str, Planning] = {}
        self._abandoned: list[threading.Thread] = []  # past their deadline, still running: they hold a slot

    # -- the loop --------------------------------------------------------------------------------

    def reconcile(self) -> None:
        for job in self.store.in_states(State.PLANNING):
            self.store.transition(job.id, State.PLANNING, State.QUEUED)

    def tick(self, wait: float = 0.0) -> None:
        """One pass. Planning (dataset profiling, hub fetches) runs on its own threads so that one slow job
        never holds up following, starting or cancelling the others; `wait` lets a pass wait for it."""
        for job in self.store.in_states(State.RUNNING, State.CANCELLING):
            self._guarded(job.id, self._follow, job)
        for job in by_held_bytes(self.store.in_states(State.WAITING)):  # first-fit decreasing
            self._guarded(job.id, self._start_waiting, job)
        self._reap_planning()
        while self._planning_slots() > 0 and (job := self.store.claim_next_queued()):
            self._begin_planning(job)
        if wait and self._planning:
            deadline = time.monotonic() + wait
            for planning in list(self._planning.values()):
                planning.thread.join(max(0.0, deadline - time.monotonic()))
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
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

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

    def _planning_slots(self) -> int:
        """Free planning threads: a thread past its deadline still downloads or tokenizes, so it still counts."""
        self._abandoned = [thread for thread in self._abandoned if thread.is_alive()]
        return self.settings.planning_threads - len(self._planning) - len(self._abandoned)

    def _begin_planning(self, job) -> None:
        planning = Planning(self.clock() + self.settings.planning_timeout_seconds)
        planning.thread = threading.Thread(target=self._plan_outcome, args=(job, planning.outcome),
                                           name=f"effft-plan-{job.id}", daemon=True)
        self._planning[job.id] = planning
        planning.thread.start()

    def _reap_planning(self) -> None:
        """Start (or fail) each job whose planning ended; fail each that ran past the time limit."""
        for job_id, planning in list(self._planning.items()):
            if planning.thread.is_alive() and self.clock() < planning.deadline:
                continue
            del self._planning[job_id]  # a thread past its deadline is abandoned: its outcome is never read
            if planning.thread.is_alive():
                self._abandoned.append(planning.thread)
            limit = self.settings.planning_timeout_seconds
            outcome = dict(planning.outcome) if not planning.thread.is_alive() else {
                "cause": Cause.BAD_INPUT, "message": f"planning took longer than {limit:.0f} s (fetching the model or "
                "dataset, or reading it); use a local copy or a smaller dataset"}
            if "plan" in outcome:
                self._guarded(job_id, self._planned, job_id, outcome["plan"])
            else:
                self._guarded(job_id, self._fail, job_id, State.PLANNING, outcome["cause"], outcome["message"])

    def _plan_outcome(self, job, outcome: dict) -> None:
        """On a planning thread: the job's plan, or why it has none. Touches neither the store nor Ray's jobs."""
        from worker.errors import WorkerError
        from worker.standalone import profile_dataset

        try:
            spec = parse_job(job.spec)
            problems = policy_problems(spec, self.settings, job.owner)  # files may have changed since submit
            if problems:
                raise SpecError(problems)
            data = profile_dataset(spec)
            outcome["plan"] = plan_job(spec, self.cluster.inventory(), calibration=table_from_store(self.store),
                                       seq_len=data.seq_len)
        except InfeasibleError as error:
            outcome.update(cause=Cause.INFEASIBLE, message=str(error))
        except (SpecError, ModelProfileError, WorkerError, ValueError, OSError) as error:
            outcome.update(cause=Cause.BAD_INPUT, message=str(error))
        except Exception as error:  # anything else is effft's own failure, not the user's
            log.exception("planning %s failed", job.id)
            outcome.update(cause=Cause.SYSTEM, message=f"{type(error).__name__}: {error}")

    def _planned(self, job_id: str, plan: Plan) -> None:
        job = self.store.get(job_id)
        if job is None or job.state != State.PLANNING:  # cancelled while it was planned: never submit it
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
        job_file = self._write_job_file(job_id, plan, placement)
        entrypoint = f"{self.settings.worker_python or sys.executable} -m worker.job_main {job_file}"
        try:
            ray_job_id = self.cluster.submit(job_id, entrypoint, dict(TRAIN_ENV))
        except Exception:
            # submitted before, by a scheduler that died before recording it: Ray knows the id, adopt it
            if self.cluster.status(job_id) in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"):
                ray_job_id = job_id
            else:
                raise
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
                         device_share=placement["device_share"], memory_cap_bytes=placement["cap_bytes"])
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
        ending = ENDINGS.get((status, current))
        if ending is None:
            return
        target, cause = ending
        if target == State.FAILED:
            logs = self._logs(job.ray_job_id) if status == "FAILED" else ""
            message = logs.strip().splitlines()[-1][:1000] if logs.strip() else f"Ray job {status.lower()}"
            self._fail(job.id, current, failure_cause(cause, logs), message)
        else:
            self.store.transition(job.id, current, target, f"Ray job {status.lower()}")

    def _logs(self, ray_job_id: str | None) -> str:
        try:
            return self.cluster.logs(ray_job_id) if ray_job_id else ""
        except Exception:  # logs are a nicety for the message; the failure is recorded either way
            return ""
