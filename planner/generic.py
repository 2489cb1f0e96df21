"""A generic profile for a causal LM whose model_type has no family of its own.

Read from the config's standard fields (and its attribute_map aliases); the layer is assumed to
look like most of transformers' decoders: Llama's module names (self_attn.q_proj ... mlp.down_proj),
rotary positions, pre-norms. Exact where a config says it all (shapes, biases, experts); heuristic:
  - gated vs plain MLP from the activation: silu / swish / swiglu / geglu -> gated (gate, up, down);
    gelu / relu / anything else -> plain (up, down). A gated-GELU model (Gemma-like) is misread.
  - the norm: RMSNorm unless the config names a LayerNorm epsilon (layer_norm_eps, norm_epsilon, ...).
  - parallel attention + MLP read one shared norm (GPT-J, Cohere), not two (GPT-NeoX).
  - mixture of experts: transformers 5's fused experts and bare router weight (no nn.Linear); a
    shared expert as Qwen2-MoE's (with its sigmoid gate) or DeepSeek's (n_shared_experts, no gate).
  - tie_word_embeddings absent means tied: transformers 4 omitted it from config.json when True.
"""

from __future__ import annotations

from planner.arch import Arch, Experts, Linear, attention_linears, gated_mlp, get_field, plain_mlp, rotary_share

HIDDEN = ("hidden_size", "n_embd", "d_model", "dim", "model_dim")
LAYERS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
HEADS = ("num_attention_heads", "n_head", "num_heads", "n_heads")
KV_HEADS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "multi_query_group_num")
INTERMEDIATE = ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size", "d_ff", "inner_dim")
ACTIVATION = ("hidden_act", "hidden_activation", "activation_function", "activation", "act_fn")
GATED_ACTIVATIONS = ("silu", "swish", "swiglu", "geglu", "silu_and_mul")
LAYER_NORM_EPS = ("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", "norm_eps")
EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
EXPERTS_PER_TOKEN = ("num_experts_per_tok", "moe_topk", "top_k", "num_selected_experts")


def is_causal_lm(config: dict) -> bool:
    """A decoder-only LM: its architectures name a *ForCausalLM, or (none listed) it has a decoder's fields."""
    architectures = config.get("architectures") or []
    if architectures:
        return any(str(name).endswith("ForCausalLM") for name in architectures)
    if config.get("is_encoder_decoder"):
        return False
    return "vocab_size" in config and all(get_field(config, *keys) is not None for keys in (HIDDEN, LAYERS, HEADS))


def _shape(config: dict) -> dict:
    hidden, heads = get_field(config, *HIDDEN), get_field(config, *HEADS)
    kv_heads = get_field(config, *KV_HEADS, default=1 if config.get("multi_query") else heads)
    return {"hidden": hidden, "layers": get_field(config, *LAYERS), "heads": heads, "kv_heads": kv_heads,
            "head_dim": get_field(config, "head_dim", "attention_head_dim", default=hidden // heads),
            "vocab": config["vocab_size"],
            "max_positions": get_field(config, "max_position_embeddings", "n_positions", "max_sequence_length",
                                       "seq_length", default=2048)}


def _bias(config: dict, key: str) -> bool:
    """A specific flag (attention_bias, mlp_bias) wins over the general ones (bias, use_bias)."""
    return bool(get_field(config, key, "bias", "use_bias", default=False))


def _experts(config: dict, intermediate: int) -> Experts | None:
    count = get_field(config, *EXPERTS, default=0)
    if not count:
        return None
    return Experts(count=count, per_token=get_field(config, *EXPERTS_PER_TOKEN, default=2),
                   intermediate=get_field(config, "moe_intermediate_size", "expert_intermediate_size",
                                          default=intermediate),
                   normalized=bool(config.get("norm_topk_prob", True)))


def _shared_expert(config: dict, hidden: int, experts: Experts | None) -> tuple[Linear, ...]:
    if experts is None:
        return ()
    if config.get("shared_expert_intermediate_size"):
        width = config["shared_expert_intermediate_size"]
        return (*gated_mlp(hidden, width, False, prefix="mlp.shared_expert.", role_prefix="shared_"),
                Linear("mlp.shared_expert_gate", hidden, 1, False, role="shared_scale"))
    if config.get("n_shared_experts"):
        width = config["n_shared_experts"] * experts.intermediate
        return tuple(gated_mlp(hidden, width, False, prefix="mlp.shared_experts.", role_prefix="shared_"))
    return ()


def _dense_layers(config: dict, layers: int) -> int:
    """MoE models often keep some dense layers: the first k (DeepSeek), a list, or off a step grid."""
    first = config.get("first_k_dense_replace") or 0
    only = set(config.get("mlp_only_layers") or ())
    step = config.get("decoder_sparse_step") or 1
    return sum(1 for i in range(layers) if i < first or i in only or (i + 1) % step != 0)


def generic_arch(config: dict) -> Arch:
    c = _shape(config)
    h = c["hidden"]
    intermediate = get_field(config, *INTERMEDIATE, default=4 * h)
    activation = str(get_field(config, *ACTIVATION, default="silu"))
    gated = activation in GATED_ACTIVATIONS
    attention_bias = _bias(config, "attention_bias") or bool(config.get("qkv_bias"))
    mlp = gated_mlp if gated else plain_mlp
    experts = _experts(config, intermediate)
    dense = _dense_layers(config, c["layers"]) if experts else 0
    mlp_linears = _shared_expert(config, h, experts) if experts else tuple(mlp(h, intermediate, _bias(config,
                                                                                                       "mlp_bias")))
    parallel = bool(get_field(config, "use_parallel_residual", "parallel_attn", "parallel_residual", default=False))
    norm = "layer" if get_field(config, *LAYER_NORM_EPS) is not None else "rms"
    partial = rotary_share(config, default=float(config.get("rotary_pct") or 1.0))
    widest = max(intermediate, experts.widest_per_token) if experts else intermediate
    return Arch(family="generic", model_type=str(config.get("model_type")), **c, intermediate=widest,
                tied_embeddings=bool(config.get("tie_word_embeddings", True)), norm=norm,
                norms_per_layer=1 if parallel else 2, qk_norm=bool(get_field(config, "qk_layernorm", "use_qk_norm")),
                mlp="gated" if gated else "plain", activation=activation, fused_qkv=False, parallel_residual=parallel,
                linears=(*attention_linears(c, attention_bias, _bias(config, "attention_bias")), *mlp_linears),
                position_embeddings=0, embed_dim=h, extra_linears=(), final_norm=True,
                attention_dropout=float(config.get("attention_dropout") or 0.0),
                hidden_dropout=float(get_field(config, "hidden_dropout", "resid_pdrop", default=0.0) or 0.0),
                embedding_dropout=float(get_field(config, "embedding_dropout", "embd_pdrop", default=0.0) or 0.0),
                rotary_cat=partial < 1, generic=True, layer_walk="extended", partial_rotary=partial,
                norm_bias=norm == "layer" and bool(get_field(config, "norm_bias", "layer_norm_bias", default=True)),
                shared_norm=parallel, experts=experts, dense_layers=dense,
                dense_linears=tuple(mlp(h, intermediate, _bias(config, "mlp_bias"))) if dense else ())
