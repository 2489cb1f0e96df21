"""The faults, each real (SIGKILL, a Postgres stop, ENOSPC), each with the time the service took to recover.

Every fault appends a row to `drill.faults`: what, when (seconds into the drill), its target, the
recovery time and how recovery was judged.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from bench.chaos.env import wait_until
from bench.chaos.procs import driver_pids, ray_job_info, train_worker_pids

RECOVERY_TIMEOUT = 1200


def log_fault(drill, fault: str, target: str, started: float, recovered: float | None, judged_by: str,
              note: str = "") -> None:
    drill.faults.append({"fault": fault, "at_s": round(started - drill.t0, 1), "target": target,
                         "recovery_s": None if recovered is None else round(recovered - started, 1),
                         "judged_by": judged_by, "note": note})
    drill.say(f"fault {fault} on {target}: recovered in "
              f"{'-' if recovered is None else f'{recovered - started:.1f} s'} {note}")


def restart_api(drill) -> None:
    """Start the server again; a start that fails (its database away, say) is tried again."""
    while True:
        try:
            drill.server.start()
            return
        except Exception as error:  # noqa: BLE001 - any failure to start is retried; it is logged
            drill.say(f"restart failed, retrying: {str(error)[-200:]}")
            time.sleep(1)


def api_kills(drill, count: int, gap: tuple[float, float], stop: threading.Event) -> None:
    """SIGKILL the API `count` times at random moments, restarting it each time; recovery: /healthz answers."""
    for number in range(count):
        if stop.wait(drill.rng.uniform(*gap)):
            return
        started = time.monotonic()
        pid = drill.server.kill()
        restart_api(drill)
        recovered = time.monotonic()
        log_fault(drill, "api SIGKILL", f"pid {pid} ({number + 1}/{count})", started, recovered,
                  "killed -> restarted server answers /healthz")


def wait_for_step(drill, job_id: str, step: int) -> None:
    wait_until(lambda: drill.spool_step(job_id) >= step or drill.job_ended(job_id), RECOVERY_TIMEOUT, 0.3,
               f"job {job_id} to reach step {step}")


def wait_for_progress(drill, job_id: str, since: float) -> float | None:
    """When the job wrote a step record again after `since` (wall clock), or ended; None past the timeout."""
    try:
        wait_until(lambda: drill.steps_after(job_id, since) or drill.job_ended(job_id), RECOVERY_TIMEOUT, 0.3,
                   f"job {job_id} to train again")
    except TimeoutError:
        return None
    return time.monotonic()


def kill_train_worker(drill, job_id: str, at_step: int) -> None:
    """SIGKILL one Ray Train worker of the job once it has passed `at_step`; recovery: a new step record."""
    ray_job = wait_until(lambda: ray_job_info(drill.dashboard_url, drill.ray_submission(job_id)).job_id, 1200, 0.5,
                         "the Ray job to start its driver")  # None while the Ray job is pending
    wait_until(lambda: train_worker_pids(drill.dashboard_url, ray_job), 1200, 0.5, "a Ray Train worker")
    wait_for_step(drill, job_id, at_step)
    _kill(drill, "ray worker SIGKILL", job_id, train_worker_pids(drill.dashboard_url, ray_job))


def kill_driver(drill, job_id: str, at_step: int) -> None:
    """SIGKILL the job's driver (`python -m worker.job_main`) past `at_step`; recovery: a new step record."""
    wait_until(lambda: driver_pids(drill.run_dir(job_id)), 1200, 0.5, "the job's driver")
    wait_for_step(drill, job_id, at_step)
    _kill(drill, "driver SIGKILL", job_id, driver_pids(drill.run_dir(job_id)))


def _kill(drill, fault: str, job_id: str, pids: list[int]) -> None:
    if not pids or drill.job_ended(job_id):
        raise TimeoutError(f"the job ended before its {fault}")
    step, started, wall = drill.spool_step(job_id), time.monotonic(), time.time()
    os.kill(pids[0], signal.SIGKILL)
    drill.resumed.add(job_id)
    judged = "a step record written after the kill"
    if fault == "driver SIGKILL":  # the dying run may still write a step: judge by one the new driver's run wrote
        judged = "a step record written after a new driver started"
        try:
            wait_until(lambda: set(driver_pids(drill.run_dir(job_id))) - {pids[0]} or drill.job_ended(job_id),
                       RECOVERY_TIMEOUT, 0.3, "a new driver")
            wall = time.time()
        except TimeoutError:
            wall = float("inf")
    log_fault(drill, fault, f"{job_id} pid {pids[0]} at step {step}", started,
              wait_for_progress(drill, job_id, wall), judged)


def injected(drill, fault: str, action, *args) -> None:
    """Run one fault; one that could not be injected (its job ended first, say) is a row that says so."""
    try:
        action(drill, *args)
    except TimeoutError as error:
        drill.faults.append({"fault": fault, "at_s": round(time.monotonic() - drill.t0, 1), "target": "-",
                             "recovery_s": None, "judged_by": "NOT INJECTED:", "note": str(error)})
        drill.say(f"fault {fault} not injected: {error}")


def restart_postgres(drill, job_id: str, at_step: int, down_seconds: float) -> None:
    """Stop the drill's own Postgres (immediate: as a crash) once the job passed `at_step`, start it again;
    recovery: GET /v1/jobs answers."""
    wait_for_step(drill, job_id, at_step)
    started = time.monotonic()
    drill.pg.stop("immediate")
    time.sleep(down_seconds)
    drill.pg.start()
    try:
        wait_until(lambda: drill.api_reads(), RECOVERY_TIMEOUT, 0.3, "the API to read the store")
        recovered = time.monotonic()
    except TimeoutError:
        recovered = None
    log_fault(drill, "postgres restart", f"down {down_seconds:.0f} s", started, recovered,
              "stopped -> the API answers GET /v1/jobs")


def fill_disk(drill, job_ids: list[str], at_step: int, hold_seconds: float) -> None:
    """Fill the run folders' file system to ENOSPC once the last job passed `at_step`, hold it full, free it;
    recovery: every job that was training writes a step again, or ends (a job that failed is counted with
    its cause)."""
    wait_for_step(drill, job_ids[-1], at_step)
    running = [job_id for job_id in job_ids if not drill.job_ended(job_id)]
    started, wall = time.monotonic(), time.time()
    written = drill.disk.fill()
    left = drill.disk.free_bytes()
    time.sleep(hold_seconds)
    drill.disk.release()
    freed, freed_wall = time.monotonic(), time.time()
    times = [wait_for_progress(drill, job_id, freed_wall) for job_id in running]
    recovered = None if None in times else max([freed, *times])
    hit = [job_id for job_id in running if drill.steps_after(job_id, wall)]
    log_fault(drill, "run disk full", f"{len(running)} running jobs", started, recovered,
              "freed -> every job trains again or ended",
              f"({written / 2**20:.0f} MiB written, {left} B left, held {hold_seconds:.0f} s; recovery counted "
              f"from the fill, {freed - started:.0f} s of it full; {len(hit)} jobs stepped meanwhile)")
