"""Throughput: the lecture's T = T_mem + T_math + latency, where max(T_mem, T_math) is what matters.

Per micro-batch, the GPU must do the step's FLOPs (T_math) and move its bytes (T_mem: weights
read in every pass, activations written and read, QLoRA's dequantization); the two overlap, so
the slower one sets the time, plus kernel-launch latency. Per optimizer step come the optimizer's
update traffic and, over several GPUs, the gradient all-reduce (DDP, once per step: gradient
accumulation's fewer syncs) or FSDP's all-gathers and reduce-scatters (every micro-batch).
A larger micro-batch stops paying off once T_math dominates: the weight traffic and latency it
amortises are then a small share of the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.setup import NF4_DOUBLE_QUANT_BYTES, RunSetup

MATMUL_EFFICIENCY = 0.6  # share of the catalog peak that large training matmuls reach
CPU_MATMUL_EFFICIENCY = 0.45  # measured here: a tiny Llama trains at 40-50 % of the fp32 matmul peak
BANDWIDTH_EFFICIENCY = 0.8
KERNEL_LATENCY_S = 6e-6  # per kernel launch
KERNELS_PER_LAYER = 40  # forward + backward, with fused AdamW outside the layers
INTERCONNECT_EFFICIENCY = 0.7


@dataclass(frozen=True)
class Throughput:
    model_flops_per_token: float  # what MFU counts: no recompute
    hardware_flops_per_token: float  # what the GPU executes: recompute included
    micro_batch_seconds: float
    step_seconds: float  # one optimizer step over all micro-batches and GPUs
    tokens_per_second: float  # global
    samples_per_second: float
    mfu: float
    bound: str  # "math" or "memory": which side sets the micro-batch time
    comm_seconds: float

    def run_seconds(self, steps: int) -> float:
        return steps * self.step_seconds


def matmul_params(run: RunSetup) -> int:
    """Parameters in one token's matmuls: the layers' Linears, its routed experts, and the lm_head."""
    return run.arch.active_linear_params + run.arch.vocab * run.arch.embed_dim


def weight_read_params(run: RunSetup) -> int:
    """Parameters read from memory in each pass: every expert is read, whichever tokens it serves."""
    return run.arch.matmul_weight_params + run.arch.vocab * run.arch.embed_dim


def attention_flops_per_token(run: RunSetup) -> float:
    # QK^T and (P)V: 2 matmuls of s x d per head, 2 FLOPs per multiply-add, forward only.
    arch = run.arch
    return 4 * arch.layers * arch.heads * arch.head_dim * run.seq_len


def flops_per_token(run: RunSetup) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) per token for forward + backward."""
    n = matmul_params(run)
    attention = attention_flops_per_token(run)
    forward = 2 * n + attention
    if run.train_base:
        model = 3 * forward  # backward: gradients of inputs and of weights (6N)
    else:
        # frozen weights need only input gradients (4N); attention's backward is still 2x forward
        model = 4 * n + 3 * attention + 6 * run.trainable_params
    hardware = model + (forward if run.gradient_checkpointing else 0)
    return model, hardware


def _peak(run: RunSetup) -> float:
    peak = run.device.peak_flops(run.precision) or run.device.fp32_flops
    return peak * (CPU_MATMUL_EFFICIENCY if run.device.is_cpu else MATMUL_EFFICIENCY)


def micro_batch_bytes(run: RunSetup, activation_bytes: int) -> float:
    """Bytes one micro-batch moves through device memory."""
    passes = 3 if run.gradient_checkpointing else 2  # forward, backward (+ recompute)
    if run.method == "qlora":
        # each pass dequantizes: read 4-bit, write and read back 16-bit
        weight_traffic = run.arch.linear_params * (NF4_DOUBLE_QUANT_BYTES + 4) * passes
    else:
        weight_traffic = weight_read_params(run) * (run.frozen_bytes if not run.train_base else 2) * passes
    if run.sharding == "fsdp":
        weight_traffic /= run.gpus
    return weight_traffic + 2 * activation_bytes


def optimizer_bytes_moved(run: RunSetup) -> float:
    # AdamW reads and writes the parameter, both moments, and reads the gradient
    per_param = 3 * 2 * run.trainable_bytes + run.trainable_bytes
    return run.trainable_params * per_param / (run.gpus if run.sharding == "fsdp" else 1)


def communication_seconds(run: RunSetup) -> float:
    if run.gpus <= 1 or run.sharding == "none":
        return 0.0
    link = run.device.interconnect * INTERCONNECT_EFFICIENCY
    ring = 2 * (run.gpus - 1) / run.gpus
    grads = run.trainable_params * run.trainable_bytes
    if run.sharding == "ddp":
        return ring * grads / link  # one all-reduce per optimizer step
    weights = run.arch.total_params * (run.frozen_bytes if not run.train_base else 2)
    per_micro = (2 * weights * (run.gpus - 1) / run.gpus + grads * (run.gpus - 1) / run.gpus) / link
    return per_micro * run.grad_accum


def estimate_throughput(run: RunSetup, activation_bytes: int) -> Throughput:
    model, hardware = flops_per_token(run)
    t_math = hardware * run.tokens / _peak(run)
    bandwidth = run.device.bandwidth * BANDWIDTH_EFFICIENCY
    t_mem = micro_batch_bytes(run, activation_bytes) / bandwidth
    latency = KERNEL_LATENCY_S * KERNELS_PER_LAYER * run.arch.layers * (1.5 if run.gradient_checkpointing else 1)
    micro = max(t_math, t_mem) + latency
    t_opt = optimizer_bytes_moved(run) / bandwidth
    comm = communication_seconds(run)
    step = micro * run.grad_accum + t_opt + comm * (0.5 if run.sharding == "ddp" else 1.0)  # DDP overlaps half
    global_tokens = run.tokens * run.grad_accum * run.data_parallel
    tokens_per_second = global_tokens / step
    peak_total = (run.device.peak_flops(run.precision) or run.device.fp32_flops) * run.data_parallel
    return Throughput(model_flops_per_token=model, hardware_flops_per_token=hardware, micro_batch_seconds=micro,
                      step_seconds=step, tokens_per_second=tokens_per_second,
                      samples_per_second=tokens_per_second / run.seq_len,
                      mfu=model * tokens_per_second / peak_total, bound="math" if t_math >= t_mem else "memory",
                      comm_seconds=comm)
