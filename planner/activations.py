"""Activation memory: which tensors autograd saves in one decoder layer, op by op.

Rather than a closed formula, each family's layer is walked op by op on a small tape that knows
PyTorch's saving rules: a Linear saves its input only when its weight is trained (a frozen
weight's input gradient needs the weight, not the input); a product saves each factor only when
the other factor needs a gradient; RMSNorm saves its fp32 input and 1/rms; dropout keeps its
mask; SDPA / flash attention keep q, k, v, the output and a log-sum-exp, while eager attention
keeps the a*s^2 probabilities. Every saved storage is counted once, however many ops share it.
This reproduces the lecture's L((16 N_b + 2) s b h + (2 N_b + 1) a s^2 b) for GPT-2 with eager
attention, and is exact (to the byte, per layer) for the families tested against autograd.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from planner.adapters import AdapterPlan
from planner.families import Arch
from planner.quant import largest_quantized_params, linear4bit_output_bytes, qlora_residual_bytes

# Activation functions: how many tensors of the MLP width each saves (transformers' own code):
# silu / gelu / relu save their input; gelu_new is a Python expression that keeps four.
ACTIVATION_SAVED_TENSORS = {"silu": 1, "swish": 1, "gelu": 1, "gelu_pytorch_tanh": 1, "relu": 1,
                            "gelu_new": 4, "gelu_fast": 4, "quick_gelu": 2}
# ... and how many gradients of the MLP width its backward holds at once: one kernel reads the
# output's gradient and writes the input's (2); a Python expression also holds a partial sum
# (measured on GPT-2's gelu_new: one more MLP-width gradient than GPT-NeoX's gelu).
ACTIVATION_BACKWARD_GRADIENTS = {"gelu_new": 3, "gelu_fast": 3, "quick_gelu": 3}


@dataclass
class Tensor:
    width: int  # elements per token
    nbytes: int  # bytes per element
    requires_grad: bool
    ident: int
    storage_width: int = 0  # a view's storage may be wider than the view (q, k, v of a fused qkv)


@dataclass(frozen=True)
class ActivationSetup:
    arch: Arch
    tokens: int  # micro_batch * seq_len
    seq_len: int
    recipe: str  # "fp32" | "amp" | "pure"
    attention: str  # "eager" | "sdpa" | "flash_attention_2"
    on_cpu: bool  # CPU dropout keeps a float mask; CPU SDPA with dropout falls back to the math kernel
    train_base: bool  # full fine-tuning: every base weight is trained
    adapter: AdapterPlan | None = None
    input_requires_grad: bool = False  # peft + checkpointing make the embedding output require grad
    quantized: bool = False  # QLoRA: 4-bit Linears, the rest of the base upcast to fp32 (planner.quant)
    checkpointing: bool = False  # gradient checkpointing (non-reentrant)

    @property
    def compute_bytes(self) -> int:
        return 4 if self.recipe == "fp32" else 2

    @property
    def residual_bytes(self) -> int:
        # AMP over fp32 weights keeps the residual stream in fp32; a 16-bit base keeps it in 16-bit.
        if self.quantized:
            return qlora_residual_bytes(self.recipe)
        return 4 if self.recipe == "fp32" or (self.recipe == "amp" and self.train_base) else 2

    def mask_bytes(self, x_bytes: int) -> int:
        # CUDA's fused dropout keeps a bool mask; the CPU keeps a scaled noise tensor of x's dtype.
        return x_bytes if self.on_cpu else 1


@dataclass
class Tape:
    """Walks one layer; `saved` maps each saved storage to its bytes per token."""

    setup: ActivationSetup
    saved: dict[int, int] = field(default_factory=dict)
    # (saved bytes so far, gradient bytes) per token at the ops whose backward holds the most gradients
    marks: list[tuple[int, int]] = field(default_factory=list)
    # (saved bytes so far, transient bytes) per token where the forward holds the most unsaved tensors
    forward_marks: list[tuple[int, int]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)

    def new(self, width: int, nbytes: int, requires_grad: bool) -> Tensor:
        return Tensor(width, nbytes, requires_grad, next(self._ids))

    def save(self, tensor: Tensor) -> None:
        self.saved[tensor.ident] = max(tensor.width, tensor.storage_width) * tensor.nbytes

    def view(self, base: Tensor, width: int) -> Tensor:
        return Tensor(width, base.nbytes, base.requires_grad, base.ident, storage_width=base.width)

    def saved_bytes_per_token(self) -> int:
        return sum(self.saved.values())

    def mark(self, gradient_bytes: int) -> None:
        """Backward reaches this op with everything saved before it still alive (later ops' saved
        tensors are freed as their backward finishes) and `gradient_bytes` of its gradients live."""
        self.marks.append((self.saved_bytes_per_token(), gradient_bytes))

    def mark_forward(self, transient_bytes: int) -> None:
        """The forward holds everything saved so far and `transient_bytes` it has not saved."""
        self.forward_marks.append((self.saved_bytes_per_token(), transient_bytes))

    def unsaved_bytes(self, *tensors: Tensor) -> int:
        """Bytes per token of the storages among `tensors` that nothing has saved (each counted once)."""
        storages = {t.ident: max(t.width, t.storage_width) * t.nbytes for t in tensors}
        return sum(nbytes for ident, nbytes in storages.items() if ident not in self.saved)

    def forward_peak_per_token(self) -> int | None:
        return max((saved + transient for saved, transient in self.forward_marks), default=None)

    def backward_peak_per_token(self, residual_gradients: int) -> int | None:
        if not self.marks:
            return None
        return max(saved + grads for saved, grads in self.marks) + residual_gradients

    # -- casting under autocast ------------------------------------------------------------
    def autocast_input(self, x: Tensor) -> Tensor:
        """Autocast casts an fp32 activation to 16-bit for a matmul: a fresh copy, per op."""
        if self.setup.recipe == "amp" and x.nbytes == 4:
            return self.new(x.width, 2, x.requires_grad)
        return x

    # -- ops --------------------------------------------------------------------------------
    def linear(self, x: Tensor, module: str, out_width: int) -> Tensor:
        s = self.setup
        adapter = s.adapter
        lora = adapter is not None and adapter.kind == "lora" and module in adapter.layer_modules
        ia3 = adapter is not None and adapter.kind == "ia3" and module in adapter.layer_modules
        ia3_on_input = ia3 and module in adapter.feedforward
        if ia3_on_input:  # x * ia3_vector: saves x for the vector's gradient
            self.save(x)
            # its backward: the product's gradient, x's gradient and grad * x before the sum over tokens
            self.mark(3 * x.width * s.compute_bytes)
            x = self.new(x.width, x.nbytes, True)
        x_in = self.autocast_input(x)
        if s.train_base:
            self.save(x_in)
        out_grad = x.requires_grad or s.train_base or lora or ia3
        # a Linear4bit saves nothing (MatMul4Bit keeps only the packed weight) and returns x's dtype
        out = self.new(out_width, linear4bit_output_bytes(x.nbytes) if s.quantized else s.compute_bytes, out_grad)
        if lora:
            lora_in = x_in
            if adapter.dropout > 0:  # each adapted module draws its own dropout mask and copy
                # kept for x's gradient, and under checkpointing even when x needs none (measured: a
                # QLoRA first layer's recompute holds q's, k's and v's masks); dropout runs before the cast
                if x.requires_grad or s.checkpointing:
                    self.save(self.new(x.width, s.mask_bytes(x.nbytes), False))
                lora_in = self.new(x.width, x_in.nbytes, x.requires_grad)
            if s.quantized and x.requires_grad:
                self.mark(self._linear4bit_input_gradients(module, x))
            self.save(lora_in)  # lora_A's input
            self.save(self.new(adapter.rank, s.compute_bytes, True))  # lora_B's input
        if ia3 and not ia3_on_input:  # base_out * ia3_vector: saves base_out
            self.save(out)
            self.mark(3 * out_width * s.compute_bytes)
            out = self.new(out_width, s.compute_bytes, True)
        return out

    def _linear4bit_input_gradients(self, module: str, x: Tensor) -> int:
        """x's gradient from a 4-bit base (a 2-D matmul output) and from its adapter are added out of place
        (measured; plain LoRA accumulates in place): the base's gradient is made beside its dequantized
        weight and the adapter's gradient, then the sum beside both gradients. The step's phases add the
        largest dequantized weight to every in-layer peak, so this mark is what remains beyond it."""
        s = self.setup
        gradient = x.width * x.nbytes
        weights = {lin.name: lin.in_features * lin.out_features for lin in s.arch.linears}
        own = weights.get(module, 0) * s.compute_bytes / s.tokens  # per token, like every mark
        largest = largest_quantized_params(s.arch) * s.compute_bytes / s.tokens
        return int(max(3 * gradient, 2 * gradient + own) - largest)

    def norm(self, x: Tensor, width: int | None = None, groups: int = 1) -> Tensor:
        """RMSNorm / LayerNorm over the last dim; `groups` > 1 for per-head norms (one 1/rms per head)."""
        s = self.setup
        width = width or x.width
        train_weight = s.train_base
        if s.arch.norm == "layer" and s.recipe != "pure" or s.arch.norm == "rms":
            x32 = x if x.nbytes == 4 else self.new(width, 4, x.requires_grad)
        else:
            x32 = x
        if x.requires_grad or train_weight:
            self.save(x32)
            self.save(self.new(groups, 4, True))  # 1/rms (RMSNorm) or mean and rstd (LayerNorm)
            if s.arch.norm == "layer":
                self.save(self.new(groups, 4, True))
        if train_weight and s.arch.norm == "rms":
            self.save(self.new(width, 4 if s.recipe == "fp32" else min(x.nbytes, 4), True))
        out_bytes = 4 if (s.arch.norm == "layer" and s.recipe == "amp") else (
            s.residual_bytes if s.arch.norm == "rms" and train_weight else x.nbytes)
        return self.new(width, out_bytes, x.requires_grad or train_weight)

    def dropout(self, x: Tensor, p: float) -> Tensor:
        if p <= 0:
            return x
        if x.requires_grad:
            self.save(self.new(x.width, self.setup.mask_bytes(x.nbytes), False))
        return self.new(x.width, x.nbytes, x.requires_grad)

    def activation(self, x: Tensor) -> Tensor:
        kept = ACTIVATION_SAVED_TENSORS.get(self.setup.arch.activation, 1)
        if self.setup.arch.activation == "relu":  # relu's backward reads its output
            out = self.new(x.width, x.nbytes, x.requires_grad)
            self.save(out) if x.requires_grad else None
            return out
        if x.requires_grad:
            self.save(x)
            for _ in range(kept - 1):
                self.save(self.new(x.width, x.nbytes, True))
        return self.new(x.width, x.nbytes, x.requires_grad)

    def mul(self, a: Tensor, b: Tensor) -> Tensor:
        if b.requires_grad:
            self.save(a)
        if a.requires_grad:
            self.save(b)
        return self.new(a.width, max(a.nbytes, b.nbytes), a.requires_grad or b.requires_grad)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return self.new(a.width, max(a.nbytes, b.nbytes), a.requires_grad or b.requires_grad)

    def attention(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        s, arch = self.setup, self.setup.arch
        q_width = arch.heads * arch.head_dim
        needs_grad = q.requires_grad or k.requires_grad or v.requires_grad
        out_bytes = s.compute_bytes
        math_fallback = s.on_cpu and arch.attention_dropout > 0
        if s.attention == "eager" or (s.attention == "sdpa" and math_fallback):
            return self._eager_attention(q, k, v, math_kernel=s.attention == "sdpa")
        if needs_grad:
            for tensor in (q, k, v):
                self.save(self.autocast_input(tensor))
            out = self.new(q_width, out_bytes, True)
            self.save(out)  # kept by the kernel
            self.save(self.new(arch.heads, 4, True))  # log-sum-exp, fp32
            # the kernel's backward: the output's gradient, then q's, k's and v's
            self.mark((2 * q_width + 2 * arch.kv_heads * arch.head_dim) * s.compute_bytes)
            if arch.rotary_cat:  # q came from a cat: the output is not laid out as (b, s, a, d); copy
                return self.new(q_width, out_bytes, True)
            return out  # already laid out as the output projection's input
        return self.new(q_width, out_bytes, False)

    def _eager_attention(self, q: Tensor, k: Tensor, v: Tensor, math_kernel: bool = False) -> Tensor:
        s, arch = self.setup, self.setup.arch
        q_width = arch.heads * arch.head_dim
        # bmm keeps contiguous (and GQA-repeated) copies: q's for k's gradient and k's for q's.
        if k.requires_grad:
            self.save(self.new(q_width, s.compute_bytes, True))
        if q.requires_grad:
            self.save(self.new(q_width, s.compute_bytes, True))
        probs_grad = q.requires_grad or k.requires_grad
        probs_width = arch.heads * s.seq_len
        if probs_grad and arch.attn_softcap:
            self.save(self.new(probs_width, 4, True))  # tanh output of the logit soft-capping
        # the forward's softmax: its output and the scores it reads (fp32 on the CPU), beside what is saved
        # q, k and v are alive too (a view keeps its whole storage): saved, or held as the layer's locals
        self.mark_forward(arch.eager_forward_scores * probs_width * 4 + self.unsaved_bytes(q, k, v))
        if probs_grad:
            self.save(self.new(probs_width, 4, True))  # softmax output (fp32)
            # softmax's backward holds the probabilities' gradient and its own output at once: fp32,
            # or a 16-bit gradient beside two fp32 ones under 16-bit compute (softmax runs in fp32)
            self.mark(probs_width * (8 if s.compute_bytes == 4 else 10))
            if s.recipe != "fp32":
                self.save(self.new(probs_width, 2, True))  # its 16-bit copy for the matmul with v
            if arch.attention_dropout > 0:
                self.save(self.new(probs_width, s.mask_bytes(s.compute_bytes), False))
                # dropout's backward: the dropped probabilities' gradient and its product with the
                # mask; the dropped probabilities themselves were freed with the matmul's backward
                self.mark(probs_width * 2 * s.compute_bytes)
                self.save(self.new(probs_width, s.compute_bytes, True))
        if probs_grad or v.requires_grad:
            if probs_grad:  # v, for the probabilities' gradient: a contiguous copy, except that SDPA's
                # math kernel hands v to its matmul as a view where (batch x heads) folds without a copy
                # (one sequence or one head): a view that keeps all of a fused qkv alive
                v_as_view = math_kernel and arch.kv_heads == arch.heads and (arch.heads == 1 or s.tokens == s.seq_len)
                self.save(v if v_as_view else self.new(q_width, s.compute_bytes, True))
                # the matmul's backward: the probabilities' gradient made while they (and v) are still
                # saved, beside the output's gradient and v's
                self.mark(probs_width * s.compute_bytes + 2 * q_width * s.compute_bytes)
            # the transposed, contiguous output is kept only if the output projection needs it
            return self.new(q_width, s.compute_bytes, True)
        return self.new(q_width, s.compute_bytes, False)

    def rotary(self, x: Tensor) -> Tensor:
        # q * cos + rotate_half(q) * sin keeps only cos and sin (shared by all layers).
        return self.new(x.width, max(x.nbytes, self.setup.residual_bytes), x.requires_grad)
