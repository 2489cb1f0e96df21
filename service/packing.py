"""Packing jobs onto GPUs by predicted memory: where each job goes, and what it holds there.

A job that needs one GPU and does not ask for it whole holds its predicted (calibrated) peak plus
the plan's stated margin, and the device's per-process overhead (a CUDA context; on a CPU the
worker process's own footprint), on one device; jobs go first-fit decreasing onto devices with
room. A job over several GPUs, or one with `resources.exclusive: true`, takes whole devices. The
running jobs' placements are replayed from the store before a new one is placed, so the model
survives a restart. Pure: data in, placement out; the scheduler stores it and Ray enforces it
(worker/ray_run.py asks for the same share of a GPU, and the worker caps itself at its bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner.catalog import Inventory
from planner.plan import Plan
from planner.units import size_text

RAY_FRACTION_STEP = 1e-4  # Ray's resolution for fractional resources


@dataclass(frozen=True)
class Device:
    node: str
    gpu: str  # the catalog name ("cpu" for the CPU)
    index: int  # among this node's devices of that type
    capacity: int  # bytes

    @property
    def key(self) -> str:
        return f"{self.node}/{self.gpu}/{self.index}"


@dataclass(frozen=True)
class Claim:
    """What one job asks for: `held` bytes on each of `devices` devices of type `gpu`, or whole ones."""

    job_id: str
    gpu: str
    devices: int
    held: int
    exclusive: bool


@dataclass
class DeviceLoad:
    device: Device
    jobs: dict[str, int] = field(default_factory=dict)  # job id -> bytes held
    whole: bool = False  # an exclusive job has it

    @property
    def free(self) -> int:
        return 0 if self.whole else self.device.capacity - sum(self.jobs.values())


def devices_of(inventory: Inventory) -> list[Device]:
    return [Device(group.node, group.gpu.name, index, group.gpu.memory_bytes)
            for group in inventory.groups for index in range(group.count)]


def claim_of(job_id: str, plan: Plan, exclusive: bool, context_bytes: int) -> Claim:
    whole = exclusive or plan.gpus > 1
    return Claim(job_id, plan.gpu, plan.gpus, plan.memory.budgeted + context_bytes, whole)


def _fit(loads: list[DeviceLoad], claim: Claim) -> list[DeviceLoad] | None:
    candidates = [load for load in loads if load.device.gpu == claim.gpu]
    if claim.exclusive:
        empty = [load for load in candidates if not load.jobs and not load.whole]
        return empty[:claim.devices] if len(empty) >= claim.devices else None
    # first fit over the fullest devices first: small jobs fill gaps, whole devices stay free for big ones
    for load in sorted(candidates, key=lambda item: item.free):
        if load.free >= claim.held:
            return [load]
    return None


def _take(chosen: list[DeviceLoad], claim: Claim) -> None:
    for load in chosen:
        load.jobs[claim.job_id] = load.device.capacity if claim.exclusive else claim.held
        load.whole = load.whole or claim.exclusive


def replay(devices: list[Device], running: list[Claim]) -> list[DeviceLoad]:
    """The devices' loads with the running jobs placed, largest first (first-fit decreasing)."""
    loads = [DeviceLoad(device) for device in devices]
    for claim in sorted(running, key=lambda c: (not c.exclusive, -c.held)):
        chosen = _fit(loads, claim)
        if chosen is not None:  # a job the model cannot place (the inventory shrank) holds nothing here
            _take(chosen, claim)
    return loads


def place(loads: list[DeviceLoad], claim: Claim) -> list[Device] | None:
    """The devices the job goes to (taking them in `loads`), or None while it does not fit."""
    chosen = _fit(loads, claim)
    if chosen is None:
        return None
    _take(chosen, claim)
    return [load.device for load in chosen]


def gpu_fraction(claim: Claim, device: Device) -> float:
    """The share of one GPU Ray is asked for: the held bytes, rounded up to Ray's resolution."""
    if claim.exclusive:
        return 1.0
    steps = math.ceil(claim.held / device.capacity / RAY_FRACTION_STEP)
    return min(1.0, steps * RAY_FRACTION_STEP)


def largest_free(loads: list[DeviceLoad], gpu: str) -> int:
    return max((load.free for load in loads if load.device.gpu == gpu), default=0)


def placement_record(claim: Claim, devices: list[Device], loads: list[DeviceLoad], plan: Plan) -> dict:
    """What the job stores and its driver reads: the devices, the bytes held, Ray's share, the worker's cap."""
    device = devices[0]
    neighbours = sorted({job for load in loads if load.device in devices for job in load.jobs} - {claim.job_id})
    left = min(load.free for load in loads if load.device in devices)
    if claim.exclusive:
        why = (f"placed on {len(devices)} whole {device.gpu} ({', '.join(d.key for d in devices)}): "
               + ("several GPUs" if claim.devices > 1 else "resources.exclusive"))
    else:
        why = (f"packed onto {device.key}: holds {size_text(claim.held)} (estimate {size_text(plan.memory.total)} + "
               f"margin {size_text(plan.memory.margin)} + {size_text(claim.held - plan.memory.budgeted)} per process) "
               f"of {size_text(device.capacity)}, beside {len(neighbours)} job(s); {size_text(left)} left")
    return {"devices": [d.key for d in devices], "held_bytes": claim.held, "exclusive": claim.exclusive,
            "device_share": None if claim.exclusive else gpu_fraction(claim, device),
            "cap_bytes": None if claim.exclusive else plan.memory.budgeted, "neighbours": neighbours, "why": why}


def waiting_reason(claim: Claim, loads: list[DeviceLoad]) -> str:
    if claim.exclusive:
        free = sum(1 for load in loads if load.device.gpu == claim.gpu and not load.jobs)
        return f"needs {claim.devices} whole {claim.gpu}, {free} free"
    return (f"needs {size_text(claim.held)} on one {claim.gpu}; the most any has free is "
            f"{size_text(largest_free(loads, claim.gpu))}")
