"""The layer walk of the families in planner/families_more.py and of the generic profile.

Same Tape, same saving rules as planner/activations.py; the layer is assembled from the Arch's
flags instead of one fixed layout: parallel attention and MLP (from one norm or two), norms
after the sublayers (OLMo2), q/k norms over a head or the whole projection, Falcon's fused
projection with k and v copied out of it, and mixture-of-experts MLPs.

A mixture-of-experts MLP runs transformers 5's grouped_mm experts: every token is copied once per
routed expert (top_k rows per token), sorted by expert; each expert's matmuls see only its own
rows, so the experts' activations total top_k x tokens x the expert width, whatever the number of
experts. A shared expert sees every token. All experts' weights stay in memory (Arch.layer_params).
"""

from __future__ import annotations

from planner.activations import Tape, Tensor
from planner.arch import Linear

INDEX_BYTES = 8  # int64 indices that gather / scatter backward keeps


def walk_extended_layer(tape: Tape, x: Tensor) -> Tensor:
    arch = tape.setup.arch
    roles = {linear.role: linear for linear in arch.linears}
    pre = arch.norm_placement == "pre"
    h = tape.norm(x) if pre else x
    attn = walk_attention(tape, h, roles)
    if not pre:
        attn = tape.norm(attn)
    if arch.parallel_residual:
        mlp_in = h if arch.shared_norm else tape.norm(x)
        if arch.family != "falcon":  # Phi drops out each branch; Falcon drops out their sum, below
            attn = tape.dropout(attn, arch.hidden_dropout)
        m = walk_ffn(tape, mlp_in, roles)
        if arch.family == "falcon":
            return tape.add(tape.dropout(tape.add(m, attn), arch.hidden_dropout), x)
        return tape.add(tape.add(attn, tape.dropout(m, arch.hidden_dropout)), x)
    attn = tape.dropout(attn, arch.attention_dropout if arch.family == "falcon" else arch.hidden_dropout)
    h1 = tape.add(x, attn)
    m = walk_ffn(tape, tape.norm(h1) if pre else h1, roles)
    if not pre:
        m = tape.norm(m)
    return tape.add(h1, tape.dropout(m, arch.hidden_dropout))


# -- attention --------------------------------------------------------------------------------

def walk_attention(tape: Tape, h: Tensor, roles: dict[str, Linear]) -> Tensor:
    arch = tape.setup.arch
    q_width, kv_width = arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim
    if "qkv" in roles:
        q, k, v = _fused_qkv(tape, h, roles["qkv"].name, q_width, kv_width)
    else:
        q = tape.linear(h, roles["q"].name, q_width)
        k = tape.linear(h, roles["k"].name, kv_width)
        v = tape.linear(h, roles["v"].name, kv_width)
    if arch.qk_norm:  # over the whole projection (one group), or per head
        q = tape.norm(q, q.width, 1 if arch.qk_norm_full else arch.heads)
        k = tape.norm(k, k.width, 1 if arch.qk_norm_full else k.width // arch.head_dim)
    q, k = tape.rotary(q), tape.rotary(k)  # a partial rotary's cat also makes a new tensor
    return tape.linear(_attend(tape, q, k, v), roles["o"].name, arch.hidden)


def _attend(tape: Tape, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    arch, sdpa = tape.setup.arch, tape.setup.attention == "sdpa"
    if arch.family != "falcon" or not sdpa:
        return tape.attention(q, k, v)
    if arch.kv_heads == 1 < arch.heads:  # one k/v head against many q heads: SDPA's math fallback, as eager
        return tape._eager_attention(q, k, v)
    attn = tape.attention(q, k, v)
    if attn.requires_grad:  # Falcon always materialises its causal mask; SDPA keeps it in the compute dtype
        tape.save(tape.new(tape.setup.seq_len, tape.setup.compute_bytes, False))
    return attn


def _fused_qkv(tape: Tape, h: Tensor, module: str, q_width: int, kv_width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Falcon's query_key_value: q is a view of it; k and v are views, or copies (selected by an index list)."""
    arch = tape.setup.arch
    qkv = tape.linear(h, module, q_width + 2 * kv_width)
    if arch.kv_broadcast:  # new decoder: q, k and v are flattened out of a strided, broadcast view: copies
        return tuple(tape.new(q_width, qkv.nbytes, qkv.requires_grad) for _ in range(3))
    q = tape.view(qkv, q_width)
    if arch.family == "falcon" and arch.kv_heads == 1:  # multi-query: fused_qkv[..., [-2], :] copies
        return q, tape.new(kv_width, qkv.nbytes, qkv.requires_grad), tape.new(kv_width, qkv.nbytes, qkv.requires_grad)
    return q, tape.view(qkv, kv_width), tape.view(qkv, kv_width)


# -- MLP ------------------------------------------------------------------------------------------

def walk_ffn(tape: Tape, h: Tensor, roles: dict[str, Linear]) -> Tensor:
    arch = tape.setup.arch
    if arch.experts is None:
        return walk_dense_mlp(tape, h, roles, arch.intermediate)
    shared = walk_dense_mlp(tape, h, roles, 0, prefix="shared_") if "shared_down" in roles else None
    routed = walk_experts(tape, h)
    if shared is None:
        return routed
    if "shared_scale" in roles:  # sigmoid(shared_expert_gate(h)) * shared: sigmoid keeps its output
        scale = tape.linear(h, roles["shared_scale"].name, 1)
        gate = tape.new(1, scale.nbytes, scale.requires_grad)
        if scale.requires_grad:
            tape.save(gate)
        shared = tape.mul(gate, shared)
    return tape.add(routed, shared)


def walk_dense_mlp(tape: Tape, h: Tensor, roles: dict[str, Linear], width: int, prefix: str = "") -> Tensor:
    down = roles[prefix + "down"]
    width = width or down.in_features
    if prefix + "gate" in roles:
        gate = tape.linear(h, roles[prefix + "gate"].name, width)
        up = tape.linear(h, roles[prefix + "up"].name, width)
        hidden = tape.mul(tape.activation(gate), up)
    else:
        hidden = tape.activation(tape.linear(h, roles[prefix + "up"].name, width))
    return tape.linear(hidden, down.name, tape.setup.arch.hidden)


def walk_experts(tape: Tape, h: Tensor) -> Tensor:
    """Router, then grouped_mm experts over top_k copies of each token (widths here are per token)."""
    s, arch = tape.setup, tape.setup.arch
    experts, k = arch.experts, arch.experts.per_token
    weights = _route(tape, h)
    rows = tape.new(k * arch.hidden, h.nbytes, h.requires_grad)  # hidden_states[perm // top_k]
    _keep_index(tape, rows.requires_grad, k)
    up_width = (2 if experts.gated else 1) * experts.intermediate
    up = _grouped_matmul(tape, rows, k * up_width)
    if experts.gated:  # act(gate) * up on two halves (views) of one output
        gate_half, up_half = tape.view(up, k * experts.intermediate), tape.view(up, k * experts.intermediate)
        hidden = tape.mul(tape.activation(gate_half), up_half)
    else:
        hidden = tape.activation(up)
    out = _grouped_matmul(tape, hidden, k * arch.hidden)
    weighted = tape.mul(out, weights)  # times each row's routing weight
    _keep_index(tape, weighted.requires_grad, k)  # weighted_out[inv_perm]
    return tape.new(arch.hidden, max(weighted.nbytes, s.compute_bytes), weighted.requires_grad)  # sum over top_k


def _route(tape: Tape, h: Tensor) -> Tensor:
    """Router logits, fp32 softmax, top-k; returns the routing weights, one per copied row."""
    arch = tape.setup.arch
    experts, k = arch.experts, arch.experts.per_token
    logits = tape.linear(h, "mlp.gate", experts.count)  # a bare weight, never adapted: saves h when trained
    grad = logits.requires_grad
    probs = tape.new(experts.count, 4, grad)
    if grad:
        tape.save(probs)  # softmax keeps its output
    _keep_index(tape, grad, k)  # topk keeps the chosen indices
    top = tape.new(k, 4, grad)
    if experts.normalized and grad:  # top /= top.sum(-1): the division keeps both
        tape.save(top)
        tape.save(tape.new(1, 4, True))
    _keep_index(tape, grad, k)  # sample_weights[perm]
    return tape.new(k, top.nbytes, grad)


def _keep_index(tape: Tape, requires_grad: bool, rows: int) -> None:
    if requires_grad:
        tape.save(tape.new(rows, INDEX_BYTES, False))


def _grouped_matmul(tape: Tape, x: Tensor, out_width: int) -> Tensor:
    """grouped_mm over the experts' 3-D weights: keeps its input when the weights are trained."""
    s = tape.setup
    if s.train_base:
        tape.save(x)
    return tape.new(out_width, s.compute_bytes, x.requires_grad or s.train_base)
