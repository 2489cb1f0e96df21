"""Peak memory per GPU: one function per term, and the step's phases.

The peak is the largest of the phases of a training step (end of forward, start of backward,
inside backward, end of backward, optimizer step), each with the terms alive at that moment,
not a sum of everything. On a GPU the total predicts `torch.cuda.max_memory_reserved()`; on the
CPU it predicts the tensor bytes at the peak (what MemTracker counts), since the CPU allocator
returns memory to the OS and has no reserved pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.calibration import NEUTRAL, Calibration
from planner.fsdp import backward_layer, gathered_bytes, gradient_bytes_at
from planner.layer_walk import estimate_activations
from planner.margins import margin_for
from planner.optimizer_step import adamw_temporary_bytes
from planner.quant import dequant_transient_bytes, lm_head_autocast_bytes, qlora_base_bytes
from planner.setup import RunSetup

TERMS = ("weights", "gradients", "optimizer", "activations", "logits", "overhead")
ALLOCATOR_SLACK = 0.05  # the caching allocator's fragmentation over allocated bytes (measured 3-8 %)
CUBLAS_WORKSPACE = 32 * 2**20




@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per GPU at the peak phase, term by term; `phases` gives every phase's total."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int
    phase: str
    metric: str
    phases: dict[str, int] = field(default_factory=dict)
    margin: int = 0  # reserved beyond the estimate where the model is uncertain (planner/margins.py)
    margin_reasons: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """The estimate: what the measured peak is compared with."""
        return sum(getattr(self, name) for name in TERMS)

    @property
    def budgeted(self) -> int:
        """What the plan must fit in the budget: the estimate and its stated margin."""
        return self.total + self.margin

    def terms(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in TERMS}


# -- terms ---------------------------------------------------------------------------------

def weight_bytes(run: RunSetup) -> int:
    """Parameter storage per GPU: FSDP keeps 1/N of it (the units it gathers whole: planner/fsdp.py)."""
    arch = run.arch
    if run.method == "full":
        stored = arch.total_params * run.trainable_bytes
    elif run.method == "qlora":
        # 4-bit weights with their quant state; the rest upcast to fp32 by prepare_model_for_kbit_training
        stored = qlora_base_bytes(arch, run.precision, run.double_quant)
        stored += run.adapter.trainable_params * run.trainable_bytes
    else:
        stored = arch.total_params * run.frozen_bytes + run.adapter.trainable_params * run.trainable_bytes
    stored += arch.head_dim * 4 if not arch.position_embeddings else 0  # rotary inv_freq buffers
    if run.sharding == "fsdp":
        return -(-stored // run.gpus)
    return stored


def autocast_copy_bytes(run: RunSetup) -> int:
    """AMP casts each fp32 trained weight to 16-bit once per step and keeps it until backward ends."""
    if run.recipe != "amp":
        return 0
    if run.method == "full":
        matmul_params = run.arch.linear_params + run.arch.vocab * run.arch.embed_dim
        return matmul_params * 2 // (run.gpus if run.sharding == "fsdp" else 1)
    return run.adapter.trainable_params * 2


def gradient_bytes(run: RunSetup) -> int:
    """Gradients of the trained parameters, plus DDP's bucket copies (FSDP's, phase by phase: planner/fsdp.py)."""
    grads = run.trainable_params * run.trainable_bytes
    if run.sharding == "fsdp":
        return -(-grads // run.gpus)
    if run.sharding == "ddp":
        return 2 * grads  # DDP's buckets are separate from .grad unless gradient_as_bucket_view
    return grads


def layer_grad_bytes(run: RunSetup) -> int:
    """Gradients of one decoder layer's weights (full fine-tuning only)."""
    return (run.arch.layer_params if run.train_base else 0) * run.trainable_bytes


def optimizer_bytes(run: RunSetup) -> int:
    """AdamW keeps two moments per trained parameter: in the parameter's dtype, or 8-bit blockwise."""
    if run.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        per_param = 2 * (1 + 4 / 256)  # two uint8 moments plus an fp32 absmax per block of 256
    else:
        per_param = 2 * run.trainable_bytes
    state = int(run.trainable_params * per_param)
    return state // run.gpus if run.sharding == "fsdp" else state


def optimizer_temporary_bytes(run: RunSetup) -> int:
    adapter = run.adapter
    lora = adapter is not None and adapter.kind == "lora"
    temporary = adamw_temporary_bytes(run.arch, run.method, run.optimizer, run.device.is_cpu, run.trainable_bytes,
                                      lora_rank=adapter.rank if lora else 0,
                                      lora_modules=adapter.layer_modules if lora else ())
    return -(-temporary // run.gpus) if run.sharding == "fsdp" else temporary  # AdamW walks each rank's shards


def logits_bytes(run: RunSetup) -> int:
    """The loss in fp32 over batch x seq x vocab: log-softmax (kept), its gradient and the logits' gradient."""
    copies = 3 + (1 if run.arch.final_softcap else 0)
    return copies * run.tokens * run.arch.vocab * 4


def overhead_bytes(run: RunSetup, allocated: int) -> int:
    """Caching-allocator slack over allocated bytes and the cuBLAS workspace; none on the CPU."""
    if run.device.is_cpu:
        return 0
    return int(allocated * ALLOCATOR_SLACK) + CUBLAS_WORKSPACE


# -- phases --------------------------------------------------------------------------------

def step_phases(run: RunSetup) -> dict[str, dict[str, int]]:
    """The terms alive at each phase of one micro-batch step (before overhead)."""
    weights = weight_bytes(run)
    copies = autocast_copy_bytes(run)
    grads = gradient_bytes(run)
    state = optimizer_bytes(run)
    acts = estimate_activations(run.activation_setup())
    saved = acts.saved(run.gradient_checkpointing)
    loss = logits_bytes(run)
    lsm = run.tokens * run.arch.vocab * 4
    # With accumulation the gradients of earlier micro-batches stay through forward and backward;
    # DDP's buckets always exist.
    grads_before = grads if run.grad_accum > 1 else (grads // 2 if run.sharding == "ddp" else 0)
    # the lm_head's weight gradient is made first; a tied embedding's (the same weight) waits in
    # autograd's input buffer until the embedding's backward adds a second vocab x hidden to it
    head_grad = run.arch.vocab * run.arch.embed_dim * run.trainable_bytes if run.train_base else 0
    layer_grad = layer_grad_bytes(run)
    last_linear_grad = run.arch.linears[-1].params * run.trainable_bytes if run.train_base else 0
    embedding_grad = head_grad
    grads_before_embedding = max(grads_before, grads - (0 if run.arch.tied_embeddings else embedding_grad))
    if run.gradient_checkpointing:
        # each layer is recomputed before its backward: its activations live again beside the
        # checkpoints; the first layer's peak comes early in its backward (MLP), when only its
        # last Linear has a gradient yet
        last_layer = (acts.saved(True) - acts.model_level + acts.model_tail
                      + acts.backward_peak(first=acts.layers == 1))
        first_layer = (acts.layer_input + acts.checkpoint_inputs + acts.model_tail
                       + acts.backward_peak(first=True))
        first_layer_grads = max(grads_before, grads_before_embedding - layer_grad + last_linear_grad)
    else:
        last_alone = acts.saved(False) - (acts.first_layer if acts.layers == 1 else acts.per_layer)
        last_layer = last_alone + acts.backward_peak(first=acts.layers == 1)
        first_layer = acts.model_tail + acts.backward_peak(first=True)
        first_layer_grads = grads_before_embedding

    # inside the last layer's forward: the layers before it (their checkpoints, or all they saved);
    # a previous layer's held attention probabilities are among what it saved, unless checkpointed
    last = acts.layers == 1
    if run.gradient_checkpointing:
        before_last = acts.layers * acts.layer_input + acts.checkpoint_inputs + (0 if last else acts.held_probs)
    else:
        # eager attention's mask is not saved by anything but lives through the model's forward
        before_last = (acts.saved(False) - acts.model_level - (acts.first_layer if last else acts.per_layer)
                       + acts.checkpoint_inputs)
    last_layer_forward = before_last + acts.model_tail + acts.forward_peak(first=last)
    if run.method == "qlora":
        # a whole 4-bit weight dequantized in the compute dtype inside each Linear4bit's backward
        # (and recompute); the lm_head's autocast copy is saved from forward until its backward
        dequant = dequant_transient_bytes(run.arch, run.precision, run.double_quant)
        last_layer += dequant
        first_layer += dequant
        saved += lm_head_autocast_bytes(run.arch, run.recipe)

    def phase(gradients: int, activations: int, logits: int, optimizer_temp: int = 0, autocast: int = copies):
        return {"weights": weights + autocast, "gradients": gradients, "optimizer": state + optimizer_temp,
                "activations": activations, "logits": logits}

    phases = {
        "forward_last_layer": phase(grads_before, last_layer_forward, 0),
        "forward_end": phase(grads_before, saved, lsm + run.tokens * run.arch.vocab * (4 if run.recipe == "fp32"
                                                                                        else 6)),
        "backward_start": phase(grads_before, saved, loss),
        "backward_last_layer": phase(max(grads_before, head_grad), last_layer, 0),
        "backward_first_layer": phase(first_layer_grads, first_layer, 0),
        "backward_end": phase(max(grads_before, grads_before_embedding) + embedding_grad, acts.model_tail, 0),
        "optimizer_step": phase(grads, 0, 0, optimizer_temp=optimizer_temporary_bytes(run), autocast=0),
    }
    if run.sharding == "fsdp":
        _fsdp_phases(run, phases, last_layer, acts.layer_input if run.gradient_checkpointing else acts.per_layer,
                     acts.layer_input)
    return phases


def _fsdp_phases(run: RunSetup, phases: dict, last_layer: int, per_layer: int, residual: int) -> None:
    """FSDP's units gathered whole and its gradients, at each phase (planner/fsdp.py); a layer's backward
    further down the layers holds one layer's activations less and one layer's gradient shards more, so the
    layers between the last and the first are checked at their ends too (the next to last, the second).
    Below the last layer the gradient coming down the residual stream arrives twice (through the layer above
    and around it): one more hidden-sized tensor than in the last layer's backward (measured on 4 layers)."""
    accumulating = run.grad_accum > 1
    gathered, grads_at = gathered_bytes(run), gradient_bytes_at(run, accumulating)
    for name, terms in phases.items():
        if name in gathered:
            terms["weights"] += gathered[name]
            terms["gradients"] = grads_at[name]
    layers = run.arch.layers
    named = {"backward_last_layer": layers - 1, "backward_first_layer": 0}
    if layers >= 3:
        phases["backward_next_to_last_layer"] = dict(phases["backward_last_layer"],
                                                     activations=last_layer - per_layer + residual)
        phases["backward_second_layer"] = dict(phases["backward_last_layer"],
                                               activations=last_layer - (layers - 2) * per_layer + residual)
        named.update(backward_next_to_last_layer=layers - 2, backward_second_layer=1)
    for name, i in named.items():
        weights, grads = backward_layer(run, i, accumulating)
        phases[name]["weights"] += weights
        phases[name]["gradients"] = grads


CPU_METRIC = "tensor bytes at the peak of one steady-state step (MemTracker), cpu"
CUDA_METRIC = "torch.cuda.max_memory_reserved() per GPU"


def estimate_memory(run: RunSetup, calibration: Calibration = NEUTRAL) -> MemoryBreakdown:
    """The peak phase's terms; a calibration from measured runs scales each term by its memory factor."""
    raw = step_phases(run)
    phases = {name: {term: int(round(value * calibration.memory)) for term, value in terms.items()}
              for name, terms in raw.items()}
    peak_phase = max(phases, key=lambda name: sum(phases[name].values()))
    terms = phases[peak_phase]
    # scaled like the terms, so a plan's total divided by its factor is the raw model's (calibration's input)
    overhead = int(overhead_bytes(run, sum(raw[peak_phase].values())) * calibration.memory)
    metric = CPU_METRIC if run.device.is_cpu else CUDA_METRIC
    margin, reasons = margin_for(run, sum(terms.values()) + overhead)
    return MemoryBreakdown(**terms, overhead=overhead, phase=peak_phase, metric=metric,
                           phases={name: sum(t.values()) for name, t in phases.items()}, margin=margin,
                           margin_reasons=reasons)
