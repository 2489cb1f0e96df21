"""What the hardware says: peak memory, GPU utilization, and the FLOP/s peak that MFU divides by."""

from __future__ import annotations

import contextlib
import functools
import resource
import time
from pathlib import Path

import torch

from planner.catalog import CATALOG, parse_gpu_name


def device_for_rank(local_rank: int) -> torch.device:
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


_cpu_baseline_bytes = 0  # RSS before the model loaded: the CPU's peak is counted as growth over it


def _proc_status_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss_bytes() -> int:
    return _proc_status_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mark_cpu_baseline() -> None:
    """Call before the model loads: the CPU peak then counts what training added, as the planner predicts."""
    global _cpu_baseline_bytes
    _cpu_baseline_bytes = _proc_status_bytes("VmRSS") or 0


def peak_memory(device: torch.device) -> dict[str, int]:
    """CUDA: the caching allocator's peaks (reserved is what the planner predicts). CPU: the process's peak
    RSS growth, reported beside the measured peak (worker/tensor_peak.py counts tensor bytes, as planned)."""
    if device.type == "cuda":
        return {"memory_peak_bytes": torch.cuda.max_memory_reserved(device),
                "memory_peak_allocated_bytes": torch.cuda.max_memory_allocated(device)}
    return {"memory_rss_growth_bytes": max(0, _peak_rss_bytes() - _cpu_baseline_bytes)}


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux: writing 5 resets the peak RSS (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")


@functools.cache
def _nvml_handle(index: int):
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # no NVML library or no driver: utilization is simply not reported
        return None


def gpu_utilization(device: torch.device) -> float | None:
    """Share of the last sample period the GPU was busy (NVML), or None without a GPU or NVML."""
    if device.type != "cuda":
        return None
    handle = _nvml_handle(device.index or 0)
    if handle is None:
        return None
    import pynvml

    return pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100


@functools.cache
def measured_cpu_matmul_flops(size: int = 1024, seconds: float = 0.3) -> float:
    """The CPU's fp32 matmul FLOP/s with this process's threads: MFU's denominator on a CPU."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up: thread pool and caches
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start)


def peak_flops_per_device(device: torch.device, precision: str) -> float:
    """The catalog's dense peak for this GPU at the compute precision; the measured matmul peak on a CPU."""
    if device.type != "cuda":
        return measured_cpu_matmul_flops()
    name = torch.cuda.get_device_name(device)
    memory = torch.cuda.get_device_properties(device).total_memory
    try:
        return parse_gpu_name(name, memory).peak_flops(precision)
    except ValueError:  # a GPU the catalog lacks: fall back to its closest known class by memory
        closest = min((g for g in CATALOG.values() if not g.is_cpu), key=lambda g: abs(g.memory_bytes - memory))
        return closest.peak_flops(precision)
