"""The cluster as the service sees it: the GPU inventory, what is free, and Ray Jobs (through worker.ray_run)."""

from __future__ import annotations

from dataclasses import replace

from planner.catalog import GpuGroup, Inventory, cpu_with_memory
from planner.objective import Queue
from service.packing import Claim, DeviceLoad, devices_of, replay
from service.settings import Settings
from service.states import State
from service.store import JobStore


def running_claims(store: JobStore) -> list[Claim]:
    """What running jobs hold: their stored placement; a job placed before packing existed holds whole GPUs."""
    claims = []
    for job in store.in_states(State.RUNNING, State.CANCELLING):
        if job.placement:
            claims.append(Claim(job.id, job.gpu_type or "", job.gpus, int(job.placement["held_bytes"]),
                                bool(job.placement["exclusive"])))
        elif job.gpu_type:
            claims.append(Claim(job.id, job.gpu_type, job.gpus, 0, True))
    return claims


def device_loads(store: JobStore, inventory: Inventory) -> list[DeviceLoad]:
    return replay(devices_of(inventory), running_claims(store))


def queue_now(store: JobStore, inventory: Inventory, settings: Settings, joining: bool = False) -> Queue | None:
    """What objective auto weighs: jobs not yet running (and the one `joining`, for a preview) against the devices
    no job holds; None when EFFFT_THROUGHPUT_WHEN_QUEUED is off (auto is then fastest)."""
    if not settings.throughput_when_queued:
        return None
    counts = store.counts_by_state()
    waiting = sum(counts.get(state, 0) for state in (State.QUEUED, State.PLANNING, State.WAITING)) + joining
    free = sum(1 for load in device_loads(store, inventory) if not load.jobs and not load.whole)
    return Queue(waiting, free)


def context_bytes(inventory: Inventory, gpu_name: str) -> int:
    """Each job's own overhead on its device (a CUDA context; on a CPU the worker process's footprint)."""
    spec = inventory.types().get(gpu_name)
    return spec[0].context_bytes if spec else 0


class RayCluster:
    """The Ray cluster at settings.ray_address (or the embedded head), reached through worker.ray_run."""

    def __init__(self, address: str | None, dashboard_url: str, cpu_memory_bytes: int | None = None):
        self.address, self.dashboard_url = address, dashboard_url
        self.cpu_memory_bytes = cpu_memory_bytes  # the CPU device's memory for planning and packing
        self._ray_names: dict[str, str] = {}

    def inventory(self) -> Inventory:
        from worker.ray_run import ensure_ray, inventory

        ensure_ray(self.address)
        total, self._ray_names = inventory()
        if self.cpu_memory_bytes is None:
            return total
        return Inventory(tuple(replace(group, gpu=cpu_with_memory(self.cpu_memory_bytes)) if group.gpu.is_cpu
                               else group for group in total.groups))

    def accelerator_type(self, gpu_name: str) -> str | None:
        return self._ray_names.get(gpu_name)

    def submit(self, job_id: str, entrypoint: str, env: dict[str, str]) -> str:
        from worker.ray_run import submit_ray_job

        return submit_ray_job(self.dashboard_url, job_id, entrypoint, env)

    def status(self, ray_job_id: str) -> str:
        from worker.ray_run import ray_job_status

        return ray_job_status(self.dashboard_url, ray_job_id)

    def exit_code(self, ray_job_id: str) -> int | None:
        from worker.ray_run import ray_job_exit_code

        return ray_job_exit_code(self.dashboard_url, ray_job_id)

    def stop(self, ray_job_id: str) -> None:
        from worker.ray_run import stop_ray_job

        stop_ray_job(self.dashboard_url, ray_job_id)

    def logs(self, ray_job_id: str) -> str:
        from worker.ray_run import ray_job_logs

        return ray_job_logs(self.dashboard_url, ray_job_id)


def inventory_view(total: Inventory, store: JobStore) -> dict:
    """Per node and GPU type: the count and how many no job holds; per device: the jobs on it, bytes held
    (their plans' share) and used (their latest measured peaks)."""
    loads = device_loads(store, total)
    measured = latest_peaks(store, [job_id for load in loads for job_id in load.jobs])
    nodes = []
    for group in total.groups:
        mine = [load for load in loads if load.device.node == group.node and load.device.gpu == group.gpu.name]
        nodes.append({"node": group.node, "gpu": group.gpu.name, "count": group.count,
                      "memory_bytes": group.gpu.memory_bytes, "free": sum(1 for load in mine if not load.jobs),
                      "devices": [device_view(load, measured) for load in mine]})
    return {"nodes": nodes}


def device_view(load: DeviceLoad, measured: dict[str, int]) -> dict:
    return {"index": load.device.index, "whole": load.whole, "held_bytes": sum(load.jobs.values()),
            "used_bytes": sum(measured.get(job_id, 0) for job_id in load.jobs),
            "jobs": [{"id": job_id, "held_bytes": held, "used_bytes": measured.get(job_id)}
                     for job_id, held in load.jobs.items()]}


def latest_peaks(store: JobStore, job_ids: list[str]) -> dict[str, int]:
    peaks = {}
    for job_id in job_ids:
        latest = store.latest_metric(job_id)
        peak = (latest.record.get("memory_step_peak_bytes") or latest.memory_peak_bytes) if latest else None
        if peak:
            peaks[job_id] = int(peak)
    return peaks


def gpu_memory_rows(total: Inventory, store: JobStore) -> list[tuple[str, str, str, float]]:
    """Per node and GPU type: bytes in total, held by running jobs' placements, used (their measured peaks)."""
    loads = device_loads(store, total)
    measured = latest_peaks(store, [job_id for load in loads for job_id in load.jobs])
    rows = []
    for group in total.groups:
        mine = [load for load in loads if load.device.node == group.node and load.device.gpu == group.gpu.name]
        held = sum(load.device.capacity if load.whole else sum(load.jobs.values()) for load in mine)
        used = sum(measured.get(job_id, 0) for load in mine for job_id in load.jobs)
        jobs = sum(len(load.jobs) for load in mine)
        rows += [(group.node, group.gpu.name, "total", float(group.gpu.memory_bytes * group.count)),
                 (group.node, group.gpu.name, "held", float(held)), (group.node, group.gpu.name, "used", float(used)),
                 (group.node, group.gpu.name, JOBS_ROW, float(jobs))]
    return rows


JOBS_ROW = "jobs"  # not a memory kind: the rows' count of jobs on the devices, for effft_gpu_jobs


__all__ = ["GpuGroup", "RayCluster", "context_bytes", "device_loads", "JOBS_ROW", "gpu_memory_rows",
           "inventory_view", "queue_now", "running_claims"]
