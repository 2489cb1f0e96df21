"""The anchors MFU is read against, measured in the same session: what the device is, and the matmul
FLOP/s it reaches here (bf16 8192^3 on a GPU; the worker's own fp32 probe on a CPU)."""

from __future__ import annotations

import importlib.metadata
import time

import torch

from worker.hardware import measured_cpu_matmul_flops

PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "pydantic")
MATMUL_SIZE = 8192
WARMUP, TIMED = 3, 10


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def cuda_matmul_flops(device: torch.device, size: int = MATMUL_SIZE) -> float:
    """Mean bf16 FLOP/s of `TIMED` products on random data after `WARMUP` (as the device's README measured)."""
    a = torch.randn(size, size, dtype=torch.bfloat16, device=device)
    b = torch.randn(size, size, dtype=torch.bfloat16, device=device)
    for _ in range(WARMUP):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(TIMED):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * size**3 * TIMED / (time.perf_counter() - start)


def anchor_run(job: dict) -> dict:
    if torch.cuda.is_available():
        device = torch.device("cuda", 0)
        properties = torch.cuda.get_device_properties(device)
        return {"outcome": "ok", "device_name": properties.name, "device_total_bytes": properties.total_memory,
                "matmul_flops": cuda_matmul_flops(device), "matmul": f"bf16 {MATMUL_SIZE}^3",
                "versions": versions()}
    return {"outcome": "ok", "device_name": "cpu", "device_total_bytes": None,
            "matmul_flops": measured_cpu_matmul_flops(), "matmul": "fp32 1024^3 (worker.hardware)",
            "versions": versions()}
