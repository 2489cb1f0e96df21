"""One decoder layer walked on the tape, and the activation estimate of a whole model built from it.

`walk_layer` and `walk_mlp` drive a `Tape` (planner/activations.py) through a family's layer;
`estimate_activations` walks the first and a later layer and the model-level tensors, and says
what each phase of the step holds (see planner/memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.activations import ACTIVATION_BACKWARD_GRADIENTS, ActivationSetup, Tape, Tensor
from planner.walk_families import walk_extended_layer


def walk_layer(tape: Tape, x: Tensor) -> Tensor:
    """One decoder layer; returns its output. Families differ in norms, MLP and residual layout.

    Arch.linears lists the attention projections first (q, k, v, o; or qkv, o), then the MLP.
    """
    arch = tape.setup.arch
    if arch.layer_walk == "extended":  # Phi, Falcon, MoE, OLMo2, generic: planner/walk_families.py
        return walk_extended_layer(tape, x)
    q_width, kv_width = arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim
    h = tape.norm(x)
    if arch.fused_qkv:
        qkv_proj, out_proj, mlp = arch.linears[0], arch.linears[1], arch.linears[2:]
        qkv = tape.linear(h, qkv_proj.name, q_width + 2 * kv_width)
        q, k, v = tape.view(qkv, q_width), tape.view(qkv, kv_width), tape.view(qkv, kv_width)
    else:
        q_proj, k_proj, v_proj, out_proj = arch.linears[:4]
        mlp = arch.linears[4:]
        q = tape.linear(h, q_proj.name, q_width)
        k = tape.linear(h, k_proj.name, kv_width)
        v = tape.linear(h, v_proj.name, kv_width)
    if arch.qk_norm:
        q, k = tape.norm(q, q_width, arch.heads), tape.norm(k, kv_width, arch.kv_heads)
    if arch.position_embeddings == 0:
        q, k = tape.rotary(q), tape.rotary(k)
    attn = tape.attention(q, k, v)
    o = tape.linear(attn, out_proj.name, arch.hidden)
    if arch.norms_per_layer == 4:  # Gemma2/3: a norm after attention and after the MLP
        o = tape.norm(o)
    o = tape.dropout(o, arch.hidden_dropout)
    if arch.parallel_residual:
        m = walk_mlp(tape, tape.norm(x), mlp)
        return tape.add(tape.add(x, o), m)
    h1 = tape.add(x, o)
    m = walk_mlp(tape, tape.norm(h1), mlp)
    return tape.add(h1, m)


def walk_mlp(tape: Tape, h: Tensor, mlp: tuple) -> Tensor:
    arch = tape.setup.arch
    if arch.mlp == "gated":
        if len(mlp) == 2:  # fused gate_up_proj (Phi-3): gate and up are views of one output
            gate_up = tape.linear(h, mlp[0].name, 2 * arch.intermediate)
            gate, up = tape.view(gate_up, arch.intermediate), tape.view(gate_up, arch.intermediate)
        else:
            gate = tape.linear(h, mlp[0].name, arch.intermediate)
            up = tape.linear(h, mlp[1].name, arch.intermediate)
        hidden = tape.mul(tape.activation(gate), up)
        # the product's backward: its output's gradient and both factors' gradients at once
        grads = 3 + ACTIVATION_BACKWARD_GRADIENTS.get(arch.activation, 2) - 2
        tape.mark(grads * arch.intermediate * tape.setup.compute_bytes)
    else:
        hidden = tape.activation(tape.linear(h, mlp[0].name, arch.intermediate))
        grads = ACTIVATION_BACKWARD_GRADIENTS.get(arch.activation, 2)
        tape.mark(grads * arch.intermediate * tape.setup.compute_bytes)  # the activation's gradients
    out = tape.linear(hidden, mlp[-1].name, arch.hidden)
    if arch.norms_per_layer == 4:
        out = tape.norm(out)
    return tape.dropout(out, arch.hidden_dropout)


@dataclass(frozen=True)
class ActivationEstimate:
    """Bytes for one micro-batch, per GPU."""

    first_layer: int  # the first layer may keep less: its input has no grad when embeddings are frozen
    per_layer: int  # what each later layer keeps for backward, without checkpointing
    layer_input: int  # what one layer keeps under checkpointing (its input)
    model_level: int  # embeddings, rotary tables, final norm, lm_head input (not the loss)
    model_tail: int  # what stays after the final norm's backward: token ids and rotary tables
    backward_transient: int  # gradients alive inside one layer's backward
    layers: int
    checkpoint_inputs: int = 0  # eager attention's materialized masks: every checkpointed layer holds them
    # the peak inside one layer's backward: its saved tensors not yet freed plus the live gradients
    first_layer_backward: int | None = None
    layer_backward: int | None = None
    # the peak inside one layer's forward (eager attention's scores), and what the model's loop holds
    # beside it: the previous layer's attention probabilities (planner.arch.Arch.holds_layer_probs)
    first_layer_forward: int = 0
    layer_forward: int = 0
    held_probs: int = 0

    def forward_peak(self, first: bool) -> int:
        return self.first_layer_forward if first else self.layer_forward

    def backward_peak(self, first: bool) -> int:
        peak = self.first_layer_backward if first else self.layer_backward
        if peak is None:  # a layer walked without marks: everything it saved plus the widest gradients
            return (self.first_layer if first else self.per_layer) + self.backward_transient
        return peak

    def saved(self, gradient_checkpointing: bool) -> int:
        if gradient_checkpointing:
            return self.layers * self.layer_input + self.model_level + self.checkpoint_inputs
        return self.first_layer + (self.layers - 1) * self.per_layer + self.model_level


def position_ids_bytes(setup: ActivationSetup) -> int:
    return 8 * setup.seq_len if setup.arch.position_embeddings and setup.train_base else 0


def estimate_activations(setup: ActivationSetup) -> ActivationEstimate:
    arch, tokens = setup.arch, setup.tokens
    x_requires_grad = setup.train_base or setup.input_requires_grad
    first = Tape(setup)
    x0 = first.new(arch.hidden, setup.residual_bytes, x_requires_grad)
    out0 = walk_layer(first, x0)
    rest = Tape(setup)
    x1 = rest.new(arch.hidden, max(out0.nbytes, setup.residual_bytes), True)
    out1 = walk_layer(rest, x1)
    # a layer's backward starts with everything it saved alive, its output's gradient arriving and
    # its last op's input gradient being made; under checkpointing the recompute ends the same way
    # (the last op is a norm or an add: its fp32 working copies are two more hidden-width tensors)
    for tape, out in ((first, out0), (rest, out1)):
        tape.mark(out.width * out.nbytes + 2 * arch.hidden * 4)

    model = Tape(setup)
    if setup.train_base:
        model.save(model.new(1, 8, False))  # the token ids, for the embedding's gradient
    position_ids = position_ids_bytes(setup)
    if arch.embedding_dropout > 0 and x_requires_grad:
        model.save(model.new(arch.hidden, setup.mask_bytes(setup.residual_bytes), False))
    final_in = model.new(arch.hidden, out1.nbytes, True)
    y = model.norm(final_in) if arch.final_norm else final_in
    if setup.train_base:
        model.save(model.autocast_input(y))  # lm_head's input, for its weight gradient
    tail = (8 * tokens if setup.train_base else 0) + position_ids_bytes(setup)
    rotary_tables = 0 if arch.position_embeddings else 2 * setup.seq_len * arch.head_dim * setup.residual_bytes

    # Inside one layer's backward: the residual's incoming and accumulating gradients, and the
    # widest intermediate gradients; gradients of deeper intermediates replace saved tensors that
    # are freed as their ops finish. Eager attention's softmax backward holds two gradients of the
    # a x s x s probabilities at once (its input's and its output's): fp32 in fp32, and a 16-bit
    # gradient beside two fp32 ones under 16-bit compute (softmax runs in fp32). Measured: a
    # checkpointed eager layer with 8 heads at s=1024 peaks 2 x 33.5 MB above its saved tensors.
    eager = setup.attention == "eager"
    probs_grads = arch.heads * setup.seq_len * (8 if setup.compute_bytes == 4 else 10) if eager else 0
    widest = max(arch.intermediate * setup.compute_bytes, probs_grads)
    residual_grads = arch.hidden * setup.residual_bytes  # the gradient flowing down the residual stream
    transient = (residual_grads + widest) * tokens
    first_peak, rest_peak = first.backward_peak_per_token(residual_grads), rest.backward_peak_per_token(residual_grads)
    # eager attention materializes the causal mask (batch x 1 x s x s, model dtype); non-reentrant
    # checkpointing keeps every layer's inputs, the mask among them, until that layer's backward
    mask = arch.eager_masks * tokens * setup.seq_len * setup.residual_bytes if eager else 0  # hidden states' dtype
    held_probs = tokens * arch.heads * setup.seq_len * setup.residual_bytes if eager and arch.holds_layer_probs else 0
    return ActivationEstimate(first_layer=first.saved_bytes_per_token() * tokens,
                              per_layer=rest.saved_bytes_per_token() * tokens,
                              layer_input=arch.hidden * setup.residual_bytes * tokens,
                              model_level=model.saved_bytes_per_token() * tokens + rotary_tables + position_ids,
                              model_tail=tail + rotary_tables,
                              backward_transient=transient, layers=arch.layers, checkpoint_inputs=mask,
                              first_layer_backward=first_peak * tokens if first_peak is not None else None,
                              layer_backward=rest_peak * tokens if rest_peak is not None else None,
                              first_layer_forward=(first.forward_peak_per_token() or 0) * tokens,
                              layer_forward=(rest.forward_peak_per_token() or 0) * tokens,
                              held_probs=held_probs)
