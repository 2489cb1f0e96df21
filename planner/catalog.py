"""GPU catalog as data, and parsing of the names Ray and nvidia-smi report.

Peak FLOP/s are dense (no sparsity) tensor-core numbers with fp32 accumulation, as PyTorch
computes; `fp32_flops` is the non-tensor-core fp32 peak (PyTorch leaves TF32 off for matmuls).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

GB = 10**9
GiB = 2**30
TFLOPS = 10**12


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_bytes: int  # what the device reports as total memory
    bf16: bool  # native bf16 compute (Ampere and newer)
    bf16_flops: float  # dense tensor-core peak, bf16 (0 where unsupported)
    fp16_flops: float  # dense tensor-core peak, fp16
    fp32_flops: float  # fp32 peak without TF32
    bandwidth: float  # device memory bandwidth, bytes/s
    interconnect: float  # GPU-to-GPU bandwidth within a node, bytes/s per direction
    context_bytes: int  # memory outside the allocator: CUDA context and kernels (the lecture: ~1 GB)
    is_cpu: bool = False

    def peak_flops(self, precision: str) -> float:
        return {"bf16": self.bf16_flops, "fp16": self.fp16_flops, "fp32": self.fp32_flops}[precision]


_PCIE4 = 32 * GB
_CONTEXT = 1 * GiB

# name, memory, bf16, bf16 TFLOPS, fp16 TFLOPS, fp32 TFLOPS, bandwidth GB/s, interconnect GB/s
_TABLE = (
    ("T4", 16 * GB, False, 0.0, 65.0, 8.1, 320, 16),
    ("V100-16GB", 16 * GB, False, 0.0, 125.0, 15.7, 900, 150),
    ("V100-32GB", 32 * GB, False, 0.0, 125.0, 15.7, 900, 150),
    ("A10G", 24 * GB, True, 70.0, 70.0, 31.2, 600, 32),
    ("L4", 24 * GB, True, 121.0, 121.0, 30.3, 300, 32),
    ("L40S", 48 * GB, True, 362.0, 362.0, 91.6, 864, 32),
    ("A100-40GB", 40 * GB, True, 312.0, 312.0, 19.5, 1555, 300),
    ("A100-80GB", 80 * GB, True, 312.0, 312.0, 19.5, 2039, 300),
    ("H100-80GB", 80 * GB, True, 989.0, 989.0, 67.0, 3350, 450),
    ("H200", 141 * GB, True, 989.0, 989.0, 67.0, 4800, 450),
    ("RTX3090", 24 * GB, True, 71.0, 71.0, 35.6, 936, 32),
    ("RTX4090", 24 * GB, True, 165.2, 165.2, 82.6, 1008, 32),
)

CATALOG: dict[str, GpuSpec] = {
    name: GpuSpec(name, memory, bf16, bf16_t * TFLOPS, fp16_t * TFLOPS, fp32_t * TFLOPS, bw * GB, link * GB,
                  _CONTEXT)
    for name, memory, bf16, bf16_t, fp16_t, fp32_t, bw, link in _TABLE
}

# This machine class measured: fp32 matmul ~110 GFLOP/s on 2 threads; bf16 is 18-40x slower
# (no bf16 instructions), so the planner treats bf16 as unsupported on the CPU. Memory is the
# host's, filled in by the caller (the planner reads no machine state).
CPU = GpuSpec("cpu", 0, False, 0.0, 0.0, 110e9, 20 * GB, 10 * GB, int(0.6 * GiB), is_cpu=True)
CATALOG["cpu"] = CPU

# Ray's accelerator_type names and nvidia-smi's product names, normalised, to catalog entries.
# Order matters: the first pattern that matches wins.
_NAME_PATTERNS = (
    (r"H200", "H200"),
    (r"H100", "H100-80GB"),
    (r"A100.*80", "A100-80GB"),
    (r"A100.*40", "A100-40GB"),
    (r"A100", None),  # size not in the name: decided by the memory hint
    (r"V100.*32", "V100-32GB"),
    (r"V100.*16", "V100-16GB"),
    (r"V100", None),
    (r"L40S", "L40S"),
    (r"A10G", "A10G"),
    (r"(^|[^0-9])L4($|[^0-9])", "L4"),
    (r"T4", "T4"),
    (r"4090", "RTX4090"),
    (r"3090", "RTX3090"),
    (r"^CPU$", "cpu"),
)
_SIZED = {"A100": ("A100-40GB", "A100-80GB"), "V100": ("V100-16GB", "V100-32GB")}


def parse_gpu_name(name: str, memory_bytes: int | None = None) -> GpuSpec:
    """Map 'NVIDIA A100-SXM4-80GB', 'Tesla T4', 'accelerator_type:A100' or 'h100-80gb' to a catalog entry.

    Where the name leaves the size open (Ray's plain 'A100'), the memory hint decides; with no
    hint the smaller card is assumed, since planning for memory that is not there OOMs.
    """
    key = re.sub(r"^accelerator_type:", "", name.strip(), flags=re.I).upper()
    key = re.sub(r"^(NVIDIA|TESLA)\s+|GEFORCE\s+|RTX\s*", "", key).strip()
    for exact in CATALOG:
        if key == exact.upper():
            return CATALOG[exact]
    for pattern, entry in _NAME_PATTERNS:
        if re.search(pattern, key):
            if entry is not None:
                return CATALOG[entry]
            small, large = _SIZED[pattern]
            if memory_bytes is not None and memory_bytes > CATALOG[small].memory_bytes * 1.1:
                return CATALOG[large]
            return CATALOG[small]
    known = ", ".join(CATALOG)
    raise ValueError(f"unknown GPU {name!r}; known: {known} (names are case-insensitive)")


def cpu_with_memory(memory_bytes: int) -> GpuSpec:
    return replace(CPU, memory_bytes=memory_bytes)


@dataclass(frozen=True)
class GpuGroup:
    """GPUs of one type on one node, as the cluster reports them."""

    node: str
    gpu: GpuSpec
    count: int
    free: int | None = None  # None: unknown, assume all free


@dataclass(frozen=True)
class Inventory:
    groups: tuple[GpuGroup, ...]

    @classmethod
    def single(cls, gpu: GpuSpec, count: int = 1) -> Inventory:
        return cls((GpuGroup("local", gpu, count),))

    def types(self) -> dict[str, tuple[GpuSpec, int, int]]:
        """Per GPU type: its spec, the total count and the count on the fullest node."""
        out: dict[str, tuple[GpuSpec, int, int]] = {}
        for group in self.groups:
            spec, total, per_node = out.get(group.gpu.name, (group.gpu, 0, 0))
            out[group.gpu.name] = (spec, total + group.count, max(per_node, group.count))
        return out
