"""The cluster as the service sees it: the GPU inventory, what is free, and Ray Jobs (through worker.ray_run)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from planner.catalog import GpuGroup, Inventory
from service.states import State
from service.store import JobStore


def held_gpus(store: JobStore) -> Counter:
    """GPUs (by type) that running jobs hold."""
    held = Counter()
    for job in store.in_states(State.RUNNING, State.CANCELLING):
        if job.gpu_type:
            held[job.gpu_type] += job.gpus
    return held


def free_inventory(total: Inventory, held: Counter) -> Inventory:
    """The inventory with each group's `free` count net of what running jobs hold (taken node by node)."""
    left = Counter(held)
    groups = []
    for group in total.groups:
        taken = min(group.count, left[group.gpu.name])
        left[group.gpu.name] -= taken
        groups.append(replace(group, free=group.count - taken))
    return Inventory(tuple(groups))


def free_count(inventory: Inventory, gpu_name: str) -> int:
    return sum(g.count if g.free is None else g.free for g in inventory.groups if g.gpu.name == gpu_name)


class RayCluster:
    """The Ray cluster at settings.ray_address (or the embedded head), reached through worker.ray_run."""

    def __init__(self, address: str | None, dashboard_url: str):
        self.address, self.dashboard_url = address, dashboard_url
        self._ray_names: dict[str, str] = {}

    def inventory(self) -> Inventory:
        from worker.ray_run import ensure_ray, inventory

        ensure_ray(self.address)
        total, self._ray_names = inventory()
        return total

    def accelerator_type(self, gpu_name: str) -> str | None:
        return self._ray_names.get(gpu_name)

    def submit(self, job_id: str, entrypoint: str, env: dict[str, str]) -> str:
        from worker.ray_run import submit_ray_job

        return submit_ray_job(self.dashboard_url, job_id, entrypoint, env)

    def status(self, ray_job_id: str) -> str:
        from worker.ray_run import ray_job_status

        return ray_job_status(self.dashboard_url, ray_job_id)

    def stop(self, ray_job_id: str) -> None:
        from worker.ray_run import stop_ray_job

        stop_ray_job(self.dashboard_url, ray_job_id)

    def logs(self, ray_job_id: str) -> str:
        from worker.ray_run import ray_job_logs

        return ray_job_logs(self.dashboard_url, ray_job_id)


def inventory_view(total: Inventory, held: Counter) -> dict:
    free = free_inventory(total, held)
    return {"nodes": [{"node": g.node, "gpu": g.gpu.name, "count": g.count, "memory_bytes": g.gpu.memory_bytes,
                       "free": g.free} for g in free.groups]}


def gpu_memory_rows(total: Inventory, held: Counter) -> list[tuple[str, str, str, float]]:
    rows = []
    for group in free_inventory(total, held).groups:
        rows.append((group.node, group.gpu.name, "total", float(group.gpu.memory_bytes * group.count)))
        rows.append((group.node, group.gpu.name, "held", float(group.gpu.memory_bytes * (group.count - group.free))))
    return rows


__all__ = ["GpuGroup", "RayCluster", "free_count", "free_inventory", "gpu_memory_rows", "held_gpus",
           "inventory_view"]
