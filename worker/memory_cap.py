"""Each worker held to its plan's memory budget, so that a wrong estimate fails this job alone, with numbers.

On a GPU the caching allocator enforces a per-process share (`set_per_process_memory_fraction`) and
raises its own `torch.OutOfMemoryError`. The CPU allocator has no such limit: there the worker counts
the bytes of every live tensor storage (the unit the planner predicts on the CPU, planner/memory.py)
as each op allocates them, and an op whose outputs take the total past the budget fails with
`torch.OutOfMemoryError`, exactly where a GPU's allocator would have refused. Either way the failure
leaves `MemoryEvidence`: the step, the phase, what was in use, what was asked for, and the limit.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from planner.recovery import MemoryEvidence


@dataclass
class StepPosition:
    """Where training is, kept by the cap's callback: the step being run and its phase."""

    step: int = 0  # the optimizer step being run (1-based); 0 before the first
    phase: str = "setup"  # forward, backward, optimizer, eval, save


class CpuMemoryCap(TorchDispatchMode):
    """Live CPU tensor bytes, counted per storage as ops create them; past `limit` an op fails."""

    def __init__(self, limit: int, position: StepPosition):
        super().__init__()
        self.limit, self.position = limit, position
        self.in_use = 0
        self.peak = 0
        self.step_peak = 0  # since the last `new_step`
        self._live: dict[int, int] = {}  # storage -> bytes
        self.refused: tuple[int, int, str] | None = None  # (in use, asked, phase) at the refusal

    def track(self, tensors) -> None:
        """Tensors made before the cap (the model's weights, a resumed optimizer state) or outside ops."""
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                self._add(tensor)

    def _add(self, tensor: torch.Tensor) -> int:
        if tensor.device.type != "cpu" or tensor.is_sparse or tensor.is_meta:
            return 0
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._live:
            return 0
        size = storage.nbytes()
        self._live[key] = size
        self.in_use += size
        weakref.finalize(storage, self._release, key)
        return size

    def _release(self, key: int) -> None:
        self.in_use -= self._live.pop(key, 0)

    def new_step(self) -> None:
        self.step_peak = self.in_use

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        before = self.in_use
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self._add(tensor)
        if self.in_use > self.limit:
            self.refused = (before, self.in_use - before, phase_now(self.position))
            raise torch.OutOfMemoryError(
                f"effft CPU memory cap: {func} asked for {self.in_use - before} bytes with {before} bytes of "
                f"tensors in use; this job's budget is {self.limit} bytes")
        self.peak = max(self.peak, self.in_use)
        self.step_peak = max(self.step_peak, self.in_use)
        return out


def phase_now(position: StepPosition) -> str:
    """Backward runs inside autograd's engine, which names the node it runs; the rest the callback tracks."""
    if position.phase == "forward" and torch._C._current_autograd_node() is not None:
        return "backward"
    return position.phase


_CUDA_ASKED = re.compile(r"Tried to allocate ([0-9.]+) (B|KiB|MiB|GiB)")
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def cuda_asked_bytes(message: str) -> int:
    """The CUDA allocator's message names the refused allocation; 0 when it does not."""
    found = _CUDA_ASKED.search(message)
    return int(float(found.group(1)) * _UNITS[found.group(2)]) if found else 0


class MemoryCap:
    """The worker's budget on its device: the GPU allocator's share, or the CPU counter above."""

    def __init__(self, limit: int, device: torch.device, position: StepPosition, safety: float | None = None):
        self.limit, self.device, self.position = limit, device, position
        self.safety = safety  # the share of the budget a steady step may reach before the run is re-planned
        self.cpu = CpuMemoryCap(limit, position) if device.type == "cpu" else None
        self.pressure: MemoryEvidence | None = None  # set when a steady step passed the safety line

    def __enter__(self) -> MemoryCap:
        if self.cpu is not None:
            self.cpu.__enter__()
        else:
            total = torch.cuda.get_device_properties(self.device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, self.limit / total), self.device)
        return self

    def __exit__(self, *exc) -> None:
        if self.cpu is not None:
            self.cpu.__exit__(*exc)

    def track(self, tensors) -> None:
        if self.cpu is not None:
            self.cpu.track(tensors)

    def new_step(self) -> None:
        if self.cpu is not None:
            self.cpu.new_step()

    def step_peak(self) -> int | None:
        return self.cpu.step_peak if self.cpu is not None else None

    def check_safety_line(self, predicted_bytes: int, reserved_bytes: int) -> bool:
        """After a steady step: True (and `pressure` set) when its peak passed the safety line: the share of the
        cap, but never below what the plan reserved (estimate + margin: a packed job's cap is exactly that)."""
        if self.safety is None:
            return False
        peak = self.cpu.step_peak if self.cpu is not None else torch.cuda.max_memory_reserved(self.device)
        line = max(int(self.limit * self.safety), reserved_bytes)
        if peak <= line or line >= self.limit:
            return False
        self.pressure = MemoryEvidence(kind="pressure", step=self.position.step, phase="step", in_use_bytes=int(peak),
                                       requested_bytes=0, limit_bytes=line, peak_bytes=int(peak),
                                       predicted_bytes=int(predicted_bytes), device=self.device.type)
        return True

    def evidence(self, error: BaseException, predicted_bytes: int, kind: str = "oom") -> MemoryEvidence:
        if self.cpu is not None:
            in_use, asked, phase = self.cpu.refused or (self.cpu.in_use, 0, self.position.phase)
            peak = self.cpu.peak
        else:  # the allocator raised from inside the step: forward and backward look alike from here
            in_use, asked = torch.cuda.memory_reserved(self.device), cuda_asked_bytes(str(error))
            peak = torch.cuda.max_memory_reserved(self.device)
            phase = "forward/backward" if self.position.phase == "forward" else self.position.phase
        return MemoryEvidence(kind=kind, step=self.position.step, phase=phase,
                              in_use_bytes=int(in_use), requested_bytes=int(asked), limit_bytes=int(self.limit),
                              peak_bytes=int(max(peak, in_use)), predicted_bytes=int(predicted_bytes),
                              device=self.device.type)
