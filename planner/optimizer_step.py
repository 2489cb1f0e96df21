"""Temporaries of the optimizer step: what AdamW allocates beyond its state while it updates.

The worker's Trainer builds two parameter groups (weights that decay; biases and norm weights
that do not) and the optimizer walks each group in the model's parameter order. Which AdamW
implementation runs decides the temporaries:
- fused (the worker's choice on CUDA) and bitsandbytes' 8-bit kernels update in place: none.
- single-tensor (PyTorch's default on the CPU) computes `denom = exp_avg_sq.sqrt() / c` per
  parameter: two tensors of that parameter's size, and the previous parameter's `denom` is
  still held by the loop variable until it is replaced. Measured with MemTracker on this CPU:
  one tensor of n elements -> +2n; sizes [n, n/2] -> +2n; [n, n, n] -> +3n; a Gemma layer's
  group [.., up 3.03 MB, down 3.03, lm_head 4.10] -> +11.22 MB = 3.03 + 2 x 4.10.
"""

from __future__ import annotations

from planner.families import Arch


def full_decay_group(arch: Arch) -> list[int]:
    """Elements of each decaying trained tensor of a fully fine-tuned model, in parameter order."""
    sizes = [arch.vocab * arch.embed_dim]
    if arch.position_embeddings:
        sizes.append(arch.position_embeddings * arch.hidden)
    sizes += arch.weight_matrix_sizes()  # every layer's matrices, experts included, in parameter order
    sizes += [linear.in_features * linear.out_features for linear in arch.extra_linears]
    if not arch.tied_embeddings:
        sizes.append(arch.vocab * arch.embed_dim)
    return sizes


def adapter_decay_group(arch: Arch, rank: int, modules: tuple[str, ...]) -> list[int]:
    """LoRA's A and B matrices of every adapted module, layer by layer."""
    by_name = {linear.name: linear for linear in arch.linears}
    per_layer = []
    for name in modules:
        linear = by_name[name]
        per_layer += [rank * linear.in_features, linear.out_features * rank]
    return per_layer * arch.layers


def single_tensor_peak(sizes: list[int]) -> int:
    """The largest `previous denom + sqrt + new denom` over one group, in elements."""
    peak, previous = 0, 0
    for size in sizes:
        peak = max(peak, previous + 2 * size)
        previous = size
    return peak


def adamw_temporary_bytes(arch: Arch, method: str, optimizer: str, on_cpu: bool, trainable_bytes: int,
                          lora_rank: int = 0, lora_modules: tuple[str, ...] = ()) -> int:
    """Bytes AdamW allocates during its step on top of parameters, gradients and state."""
    if not on_cpu or optimizer != "adamw":
        return 0
    if method == "full":
        sizes = full_decay_group(arch)
    elif lora_rank:
        sizes = adapter_decay_group(arch, lora_rank, lora_modules)
    else:  # IA3's vectors: a few thousand elements per layer
        return 0
    return single_tensor_peak(sizes) * trainable_bytes
