"""QLoRA's memory terms, from measurement: what a bitsandbytes 4-bit base really holds in a step.

Measured on the CPU (bitsandbytes 0.50, peft 0.21, transformers 5.24, torch 2.13) through the
worker's own path (`worker.model.prepare_model` + the HF Trainer's step, `worker.memprobe`), and
read from bitsandbytes' source (autograd/_functions.py `MatMul4Bit`, backends/*/ops.py):

* Storage. Each 4-bit Linear keeps its weight packed two per byte (a uint8 `Params4bit` of
  ceil(n/2) bytes) and a QuantState: per block of 64 an absmax (fp32; with double quant a uint8
  code into a per-Linear 256-entry fp32 dynamic map, with an fp32 second-level absmax per 256
  blocks), plus a per-Linear 16-entry fp32 NF4 code. Measured: a 256x256 q_proj keeps 32,768 +
  1,024 (absmax) + 16 (nested absmax) + 64 (code) + 1,024 (nested code) bytes; a 2-layer model
  with 14 Linear4bit kept exactly `nf4_storage_bytes` (38,248 bytes of quant state). The
  per-Linear codes are what the old flat 0.5 + 1/64 + 4/16384 B/param missed (1,088 B a Linear).
* What is quantized: every nn.Linear of the decoder (and model-level Linear such as OPT's
  projections) except the output embedding: transformers' bnb quantizer skips `lm_head` (and a
  tied one is the embedding). The Linear's bias stays a 16-bit parameter.
* Upcasts. `prepare_model_for_kbit_training` casts every fp16/bf16 parameter that is not a
  Params4bit to fp32: embeddings, norms, lm_head, Linear4bit biases. bnb's Linear4bit.forward then
  casts its bias back to the compute dtype (`bias.data = bias.data.to(x.dtype)`) on the first
  step, so in steady state biases are in the compute dtype (measured: bf16 under AMP).
* Activations. `MatMul4Bit` saves no activation: `ctx.tensors = (None, B)` keeps only the packed
  weight (a parameter), and backward dequantizes it again for grad_input. So a 4-bit Linear
  costs what a frozen 16-bit Linear costs, 0 bytes a token. But Linear4bit.forward returns
  `matmul_4bit(x.to(compute), ...).to(x.dtype)`: its output has its *input's* dtype. Under AMP
  the embedding is fp32 (upcast), so the residual stream, every norm output, every 4-bit Linear
  output and the MLP's intermediates are fp32, and each LoRA A gets its own autocast bf16 copy
  of its fp32 input (measured, saved-tensor hooks: q/k/v each save a separate (tokens, hidden)
  bf16 copy; gate/up outputs and SiLU's input are fp32).
* lm_head under AMP: the fp32 (upcast) lm_head weight is cast to bf16 by autocast for the matmul
  and, since the lm_head's input needs a gradient, that copy is saved until lm_head's backward:
  vocab x embed x 2 bytes (measured: a (256, 5000) bf16 saved tensor, 2,560,000 bytes).
* Dequantization transients. Forward (CPU: `_gemm_4bit_default_impl`; CUDA for M > ~8-64 tokens
  also dequantize + F.linear) and backward (`F.dequantize_4bit(B, state) @`) each materialize the
  whole weight in the compute dtype, plus the fp32 first-level absmax (n/64 x 4 bytes) when
  nested; one Linear at a time (freed when the matmul returns; in checkpointing's recompute the
  recompute's copy is gone before the backward's own). The peak adds the largest one.
* Measured error (CPU, MemTracker step peak, random llama/qwen2/mistral cases): fp32 recipe, 46
  cases: before median 0.2 %, worst -21.5 %; with these terms median 0.1 %, worst +6.7 %/-5.3 %.
  bf16 AMP with autocast (Trainer.train's accelerate-prepared forward), 23 cases: before median
  -10.7 %, worst -34 %; after median 0.4 %, worst -17.7 % (gc + eager attention; see the report).
* GPU-only (not measurable here): the caching allocator keeps the freed dequantized block
  reserved (one largest-weight block per dtype stays in the pool); for M <= ~8-64 tokens CUDA may
  use the fused `cgemm_4bit` kernel (no dequantized copy in forward); the cuBLAS workspace.
* Checkpointing: peft's `prepare_model_for_kbit_training` enables input grads only for reentrant
  checkpointing, and `PeftModel` skips `enable_input_require_grads` for 4-bit models; the worker
  uses non-reentrant checkpointing, so under QLoRA the embedding output does not require grad
  (unlike plain LoRA, where the worker forces it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from planner.families import Arch, Linear

NF4_BLOCKSIZE = 64  # bnb_4bit: one absmax per 64 weights
NESTED_BLOCKSIZE = 256  # double quant: one fp32 absmax per 256 first-level absmax
NF4_CODE_BYTES = 16 * 4  # per Linear: the 16 NF4 levels, fp32
NESTED_CODE_BYTES = 256 * 4  # per Linear: the 8-bit dynamic map of the nested absmax, fp32
COMPUTE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def quantized_linears(arch: Arch) -> list[Linear]:
    """Every Linear bitsandbytes replaces by a Linear4bit: all of them but the output embedding."""
    if not arch.bnb_quantizable:  # nn.Linear subclasses (FalconLinear): bitsandbytes leaves them alone
        return []
    dense = list(arch.attention_linears + arch.dense_linears) * arch.dense_layers
    return list(arch.linears) * (arch.layers - arch.dense_layers) + dense + list(arch.extra_linears)


def linear4bit_bytes(in_features: int, out_features: int, double_quant: bool = True) -> int:
    """One Linear4bit's weight storage: packed weight + QuantState (measured exactly on the CPU)."""
    n = in_features * out_features
    blocks = math.ceil(n / NF4_BLOCKSIZE)
    packed = math.ceil(n / 2)
    if double_quant:
        state = blocks + 4 * math.ceil(blocks / NESTED_BLOCKSIZE) + NESTED_CODE_BYTES + NF4_CODE_BYTES
    else:
        state = 4 * blocks + NF4_CODE_BYTES
    return packed + state


def nf4_storage_bytes(arch: Arch, double_quant: bool = True) -> int:
    """All 4-bit weights of the model with their quant state (biases not included)."""
    return sum(linear4bit_bytes(lin.in_features, lin.out_features, double_quant) for lin in quantized_linears(arch))


def quantized_bias_params(arch: Arch) -> int:
    return sum(lin.out_features for lin in quantized_linears(arch) if lin.bias)


def quantized_weight_params(arch: Arch) -> int:
    return sum(lin.in_features * lin.out_features for lin in quantized_linears(arch))


def qlora_unquantized_bytes(arch: Arch, precision: str) -> int:
    """The base parameters left unquantized, after prepare_model_for_kbit_training.

    Everything but the 4-bit weights and their biases (embeddings, position embeddings, norms,
    lm_head when untied) is upcast to fp32: 4 bytes each. The 4-bit Linears' biases end in the
    compute dtype (bnb casts them back in forward). Measured: a Qwen2 h256 L2 v5000 untied model
    kept 10,249,216 fp32 bytes = 4 x (2 x 5000 x 256 + 5 x 256) and bf16 q/k/v biases under AMP.
    """
    quantized = quantized_weight_params(arch) + quantized_bias_params(arch)
    return (arch.total_params - quantized) * 4 + quantized_bias_params(arch) * COMPUTE_BYTES[precision]


def qlora_base_bytes(arch: Arch, precision: str, double_quant: bool = True) -> int:
    """The whole frozen base under QLoRA: 4-bit weights + state + unquantized params (no adapters)."""
    return nf4_storage_bytes(arch, double_quant) + qlora_unquantized_bytes(arch, precision)


def largest_quantized_params(arch: Arch) -> int:
    return max((lin.in_features * lin.out_features for lin in quantized_linears(arch)), default=0)


def dequant_transient_bytes(arch: Arch, precision: str, double_quant: bool = True) -> int:
    """The largest Linear4bit weight dequantized in the compute dtype, plus its fp32 absmax when nested.

    Alive inside each 4-bit Linear's forward and backward (and checkpointing's recompute), one
    Linear at a time; the step's in-layer peaks add the largest.
    """
    n = largest_quantized_params(arch)
    absmax = 4 * math.ceil(n / NF4_BLOCKSIZE) if double_quant else 0
    return n * COMPUTE_BYTES[precision] + absmax


def linear4bit_output_bytes(input_bytes: int) -> int:
    """A Linear4bit returns its input's dtype (`.to(inp_dtype)`), whatever the compute dtype."""
    return input_bytes


def qlora_residual_bytes(recipe: str) -> int:
    """The residual stream's bytes per element: fp32 unless the whole run is pure 16-bit.

    prepare_model_for_kbit_training upcasts the embedding to fp32, so under AMP the hidden states
    start (and, through fp32 norms and dtype-preserving Linear4bit, stay) fp32.
    """
    return 2 if recipe == "pure" else 4


def lm_head_autocast_bytes(arch: Arch, recipe: str) -> int:
    """AMP: autocast's 16-bit copy of the fp32 lm_head (or tied embedding) weight, saved for backward."""
    return arch.vocab * arch.embed_dim * 2 if recipe == "amp" else 0
