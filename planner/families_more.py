"""More exact families: Phi, Falcon, Mixtral, Qwen2-MoE, StarCoder2 and OLMo2.

Module names and shapes follow transformers' modeling_<family>.py (5.x): LoRA and IA3 target
modules by name, so the names are the ones a peft model has. Their layers are walked by
planner/walk_families.py (layer_walk="extended"), except StarCoder2's, which is a classic
pre-norm layer with a plain MLP.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.arch import Arch, Experts, Linear, attention_linears, common_shape, gated_mlp, plain_mlp, rotary_share


def _dropouts(config: dict, attention: str = "attention_dropout", hidden: str | None = None,
              embedding: str | None = None) -> dict:
    """Dropout probabilities by the config's names for them; a family without one has 0."""
    def read(key):
        return float(config.get(key) or 0.0) if key else 0.0

    return {"attention_dropout": read(attention), "hidden_dropout": read(hidden), "embedding_dropout": read(embedding)}


def _base(config: dict, family: str, c: dict, **fields) -> dict:
    """The fields every family here sets the same way (rotary positions, token embedding = hidden)."""
    return {"family": family, "model_type": config["model_type"], **c, "position_embeddings": 0,
            "embed_dim": c["hidden"], "extra_linears": (), "final_norm": True, **fields}


def _phi(config: dict) -> Arch:
    """Phi-1/1.5/2: one LayerNorm feeds attention and the MLP in parallel; partial rotary; biased lm_head."""
    c = common_shape(config)
    h, intermediate = c["hidden"], config.get("intermediate_size") or 8192
    linears = (*attention_linears(c, True, True, names=("q_proj", "k_proj", "v_proj", "dense")),
               *plain_mlp(h, intermediate, True))
    partial = rotary_share(config, default=0.5)  # PhiConfig's default when the config omits it
    return Arch(**_base(config, "phi", c), intermediate=intermediate,
                tied_embeddings=bool(config.get("tie_word_embeddings", False)), norm="layer", norms_per_layer=1,
                qk_norm=bool(config.get("qk_layernorm", False)), mlp="plain",
                activation=config.get("hidden_act") or "gelu_new", fused_qkv=False, parallel_residual=True,
                linears=linears, **_dropouts(config, "attention_dropout", "resid_pdrop", "embd_pdrop"),
                lm_head_bias=True, rotary_cat=partial < 1, layer_walk="extended", partial_rotary=partial,
                shared_norm=True)


def _falcon_kv_heads(config: dict, heads: int) -> int:
    if config.get("new_decoder_architecture"):
        return config.get("num_kv_heads") or heads
    return 1 if config.get("multi_query", True) else heads


def _falcon(config: dict) -> Arch:
    """Falcon: fused query_key_value; multi-query (7B) or grouped with k/v copied per head (40B, new decoder)."""
    c = common_shape({**config, "num_key_value_heads": None, "head_dim": None})
    h, heads = c["hidden"], c["heads"]
    new_decoder = bool(config.get("new_decoder_architecture", False))
    kv_heads = _falcon_kv_heads(config, heads)
    parallel = bool(config.get("parallel_attn", True))
    norms_in_parallel = config.get("num_ln_in_parallel_attn") or (2 if new_decoder else 1)
    norms = 2 if not parallel or norms_in_parallel == 2 else 1
    bias, ffn = bool(config.get("bias", False)), config.get("ffn_hidden_size") or 4 * h
    linears = (Linear("self_attention.query_key_value", h, (heads + 2 * kv_heads) * c["head_dim"], bias, role="qkv"),
               Linear("self_attention.dense", h, h, bias, role="o"),
               Linear("mlp.dense_h_to_4h", h, ffn, bias, role="up"),
               Linear("mlp.dense_4h_to_h", ffn, h, bias, feedforward=True, role="down"))
    return Arch(**_base(config, "falcon", {**c, "kv_heads": kv_heads}), intermediate=ffn,
                tied_embeddings=bool(config.get("tie_word_embeddings", True)), norm="layer", norms_per_layer=norms,
                qk_norm=False, mlp="plain", activation=config.get("activation") or "gelu", fused_qkv=True,
                parallel_residual=parallel or new_decoder, linears=linears,
                **_dropouts(config, "attention_dropout", "hidden_dropout", "embedding_dropout"),
                layer_walk="extended", shared_norm=parallel and norms == 1, kv_broadcast=new_decoder,
                eager_forward_scores=2, holds_layer_probs=not config.get("alibi", False), bnb_quantizable=False)


def _mixtral(config: dict) -> Arch:
    """Mixtral: Mistral's attention; every layer's MLP is a router over fused experts."""
    c = common_shape(config)
    intermediate = config.get("intermediate_size") or 14336
    experts = Experts(count=config.get("num_local_experts") or 8, per_token=config.get("num_experts_per_tok") or 2,
                      intermediate=intermediate)
    return Arch(**_base(config, "mixtral", c), intermediate=experts.widest_per_token,
                tied_embeddings=bool(config.get("tie_word_embeddings", False)), norm="rms", norms_per_layer=2,
                qk_norm=False, mlp="gated", activation=config.get("hidden_act") or "silu", fused_qkv=False,
                parallel_residual=False, linears=tuple(attention_linears(c, False, False)),
                **_dropouts(config), layer_walk="extended", experts=experts)


def _qwen2_moe_dense_layers(config: dict, layers: int, experts: int) -> int:
    """Layers whose MLP is dense: listed in mlp_only_layers, or off the decoder_sparse_step grid."""
    only = set(config.get("mlp_only_layers") or ())
    step = config.get("decoder_sparse_step") or 1
    return sum(1 for i in range(layers) if i in only or experts == 0 or (i + 1) % step != 0)


def _qwen2_moe(config: dict) -> Arch:
    """Qwen2-MoE (Qwen1.5-MoE-A2.7B): routed experts plus a shared expert scaled by its own sigmoid gate."""
    c = common_shape(config)
    h = c["hidden"]
    count = config.get("num_experts", 60)
    intermediate = config.get("intermediate_size") or 5632
    shared = config.get("shared_expert_intermediate_size") or 5632
    experts = Experts(count=count, per_token=config.get("num_experts_per_tok") or 4,
                      intermediate=config.get("moe_intermediate_size") or 1408,
                      normalized=bool(config.get("norm_topk_prob", False)))
    attention = attention_linears(c, bool(config.get("qkv_bias", True)), False)
    moe_linears = (*gated_mlp(h, shared, False, prefix="mlp.shared_expert.", role_prefix="shared_"),
                   Linear("mlp.shared_expert_gate", h, 1, False, role="shared_scale"))
    dense = _qwen2_moe_dense_layers(config, c["layers"], count)
    all_dense = dense == c["layers"]
    linears = (*attention, *(gated_mlp(h, intermediate, False) if all_dense else moe_linears))
    widest = intermediate if all_dense else max(intermediate if dense else 0, shared, experts.widest_per_token)
    return Arch(**_base(config, "qwen2_moe", c), intermediate=widest,
                tied_embeddings=bool(config.get("tie_word_embeddings", False)), norm="rms", norms_per_layer=2,
                qk_norm=False, mlp="gated", activation=config.get("hidden_act") or "silu", fused_qkv=False,
                parallel_residual=False, linears=linears, **_dropouts(config),
                layer_walk="extended", experts=None if all_dense else experts,
                dense_layers=0 if all_dense else dense,
                dense_linears=tuple(gated_mlp(h, intermediate, False)) if dense and not all_dense else ())


def _starcoder2(config: dict) -> Arch:
    """StarCoder2: grouped attention and a plain c_fc/c_proj MLP, biased (use_bias); LayerNorms with bias."""
    c = common_shape(config)
    h, intermediate = c["hidden"], config.get("intermediate_size") or 12288
    bias = bool(config.get("use_bias", True))
    linears = (*attention_linears(c, bias, bias), *plain_mlp(h, intermediate, bias, names=("c_fc", "c_proj")))
    return Arch(**_base(config, "starcoder2", c), intermediate=intermediate,
                tied_embeddings=bool(config.get("tie_word_embeddings", True)), norm="layer", norms_per_layer=2,
                qk_norm=False, mlp="plain", activation=config.get("hidden_act") or "gelu_pytorch_tanh",
                fused_qkv=False, parallel_residual=False, linears=linears,
                **_dropouts(config, "attention_dropout", "residual_dropout", "embedding_dropout"))


def _olmo2(config: dict) -> Arch:
    """OLMo2: norms after attention and after the MLP (none before); q/k RMSNorm over the whole projection."""
    c = common_shape(config)
    bias = bool(config.get("attention_bias", False))
    intermediate = config.get("intermediate_size") or 11008
    linears = (*attention_linears(c, bias, bias), *gated_mlp(c["hidden"], intermediate, False))
    return Arch(**_base(config, "olmo2", c), intermediate=intermediate,
                tied_embeddings=bool(config.get("tie_word_embeddings", False)), norm="rms", norms_per_layer=2,
                qk_norm=True, mlp="gated", activation=config.get("hidden_act") or "silu", fused_qkv=False,
                parallel_residual=False, linears=linears, **_dropouts(config),
                layer_walk="extended", qk_norm_full=True, norm_placement="post")


MORE_FAMILIES: dict[str, Callable[[dict], Arch]] = {
    "phi": _phi,
    "falcon": _falcon,
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
    "starcoder2": _starcoder2,
    "olmo2": _olmo2,
}
