"""Model families as data: how a Hugging Face config maps to layers, modules and parameters.

Each family turns a config dict into an `Arch` (planner/arch.py): the numbers the memory and FLOP
models need and the Linear modules of one decoder layer (the modules LoRA and IA3 adapt). The
families here are exact (tests compare their counts with transformers'); planner/families_more.py
adds more, and planner/generic.py reads any other causal LM as a best effort.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.arch import Arch, Experts, Linear
from planner.arch import attention_linears as _attention_linears
from planner.arch import common_shape as _common
from planner.arch import gated_mlp as _gated_mlp
from planner.arch import get_field as _get
from planner.families_more import MORE_FAMILIES
from planner.generic import generic_arch, is_causal_lm

__all__ = ["FAMILIES", "Arch", "Experts", "Linear", "arch_from_config"]


def _llama_like(config: dict, family: str, *, qkv_bias: bool = False, qk_norm: bool = False,
                norms_per_layer: int = 2, tied_default: bool = False) -> Arch:
    softcaps = {"attn_softcap": bool(config.get("attn_logit_softcapping")),
                "final_softcap": bool(config.get("final_logit_softcapping"))}
    # Gemma2/3 always build a full and a sliding-window mask; Qwen2/3 only with sliding layers
    sliding = family in ("gemma2", "gemma3_text") or "sliding_attention" in (config.get("layer_types") or ())
    c = _common(config)
    attention_bias = bool(config.get("attention_bias", qkv_bias))
    intermediate = config["intermediate_size"]
    mlp_bias = bool(config.get("mlp_bias", False))
    linears = _attention_linears(c, attention_bias or qkv_bias, attention_bias and family != "qwen2")
    return Arch(family=family, model_type=config["model_type"], **c, intermediate=intermediate,
                tied_embeddings=bool(config.get("tie_word_embeddings", tied_default)), norm="rms",
                norms_per_layer=norms_per_layer, qk_norm=qk_norm, mlp="gated",
                activation=_get(config, "hidden_act", "hidden_activation", default="silu"),
                fused_qkv=False, parallel_residual=False, linears=tuple(linears + _gated_mlp(c["hidden"],
                intermediate, mlp_bias)), position_embeddings=0, embed_dim=c["hidden"], extra_linears=(),
                final_norm=True, attention_dropout=float(config.get("attention_dropout", 0.0)),
                hidden_dropout=0.0, embedding_dropout=0.0, eager_masks=2 if sliding else 1, **softcaps)


def _phi3(config: dict) -> Arch:
    c = _common(config)
    intermediate = config["intermediate_size"]
    qkv_width = (c["heads"] + 2 * c["kv_heads"]) * c["head_dim"]
    linears = (Linear("self_attn.qkv_proj", c["hidden"], qkv_width, False, role="qkv"),
               Linear("self_attn.o_proj", c["heads"] * c["head_dim"], c["hidden"], False, role="o"),
               Linear("mlp.gate_up_proj", c["hidden"], 2 * intermediate, False, role="gate_up"),
               Linear("mlp.down_proj", intermediate, c["hidden"], False, feedforward=True, role="down"))
    return Arch(family="phi3", model_type="phi3", **c, intermediate=intermediate,
                tied_embeddings=bool(config.get("tie_word_embeddings", False)), norm="rms", norms_per_layer=2,
                qk_norm=False, mlp="gated", activation=config.get("hidden_act", "silu"), fused_qkv=True,
                parallel_residual=False, linears=linears, position_embeddings=0, embed_dim=c["hidden"],
                extra_linears=(), final_norm=True, attention_dropout=float(config.get("attention_dropout", 0.0)),
                hidden_dropout=float(config.get("resid_pdrop", 0.0)),
                embedding_dropout=float(config.get("embd_pdrop", 0.0)), rotary_cat=True)


def _gpt2(config: dict) -> Arch:
    c = _common(config)
    h = c["hidden"]
    intermediate = config.get("n_inner") or 4 * h
    linears = (Linear("attn.c_attn", h, 3 * h, True, role="qkv"), Linear("attn.c_proj", h, h, True, role="o"),
               Linear("mlp.c_fc", h, intermediate, True, role="up"),
               Linear("mlp.c_proj", intermediate, h, True, feedforward=True, role="down"))
    return Arch(family="gpt2", model_type="gpt2", **c, intermediate=intermediate,
                tied_embeddings=bool(config.get("tie_word_embeddings", True)),
                norm="layer", norms_per_layer=2, qk_norm=False, mlp="plain",
                activation=config.get("activation_function", "gelu_new"), fused_qkv=True,
                parallel_residual=False, linears=linears, position_embeddings=c["max_positions"], embed_dim=h,
                extra_linears=(), final_norm=True, attention_dropout=float(config.get("attn_pdrop", 0.1)),
                hidden_dropout=float(config.get("resid_pdrop", 0.1)),
                embedding_dropout=float(config.get("embd_pdrop", 0.1)))


def _gpt_neox(config: dict) -> Arch:
    c = _common(config)
    h, intermediate = c["hidden"], config["intermediate_size"]
    bias = bool(config.get("attention_bias", True))
    linears = (Linear("attention.query_key_value", h, 3 * h, bias, role="qkv"),
               Linear("attention.dense", h, h, bias, role="o"),
               Linear("mlp.dense_h_to_4h", h, intermediate, True, role="up"),
               Linear("mlp.dense_4h_to_h", intermediate, h, True, feedforward=True, role="down"))
    return Arch(family="gpt_neox", model_type="gpt_neox", **c, intermediate=intermediate,
                tied_embeddings=bool(config.get("tie_word_embeddings", False)), norm="layer", norms_per_layer=2,
                qk_norm=False, mlp="plain", activation=config.get("hidden_act", "gelu"), fused_qkv=True,
                parallel_residual=bool(config.get("use_parallel_residual", True)), linears=linears,
                position_embeddings=0, embed_dim=h, extra_linears=(), final_norm=True,
                attention_dropout=float(config.get("attention_dropout", 0.0)),
                hidden_dropout=float(config.get("hidden_dropout", 0.0)), embedding_dropout=0.0, rotary_cat=True)


def _opt(config: dict) -> Arch:
    c = _common(config)
    h, ffn = c["hidden"], config["ffn_dim"]
    bias = bool(config.get("enable_bias", True))
    embed_dim = config.get("word_embed_proj_dim") or h
    projections = (Linear("project_in", embed_dim, h, False), Linear("project_out", h, embed_dim, False))
    linears = (*_attention_linears(c, bias, bias, names=("q_proj", "k_proj", "v_proj", "out_proj")),
               Linear("fc1", h, ffn, bias, role="up"), Linear("fc2", ffn, h, bias, feedforward=True, role="down"))
    final_norm = bool(config.get("do_layer_norm_before", True)) and not config.get("_remove_final_layer_norm", False)
    return Arch(family="opt", model_type="opt", **c, intermediate=ffn,
                tied_embeddings=bool(config.get("tie_word_embeddings", True)), norm="layer", norms_per_layer=2,
                qk_norm=False, mlp="plain", activation=config.get("activation_function", "relu"), fused_qkv=False,
                parallel_residual=False, linears=linears, position_embeddings=c["max_positions"] + 2,
                embed_dim=embed_dim, extra_linears=projections if embed_dim != h else (), final_norm=final_norm,
                attention_dropout=float(config.get("attention_dropout", 0.0)),
                hidden_dropout=float(config.get("dropout", 0.1)), embedding_dropout=float(config.get("dropout", 0.1)))


# model_type -> how to read it. Families share code where their layers are the same.
FAMILIES: dict[str, Callable[[dict], Arch]] = {
    "llama": lambda c: _llama_like(c, "llama"),
    "mistral": lambda c: _llama_like(c, "llama"),
    "qwen2": lambda c: _llama_like(c, "qwen2", qkv_bias=True),
    "qwen3": lambda c: _llama_like(c, "qwen3", qk_norm=True),
    "gemma": lambda c: _llama_like(c, "gemma", tied_default=True),
    "gemma2": lambda c: _llama_like(c, "gemma2", norms_per_layer=4, tied_default=True),
    "gemma3_text": lambda c: _llama_like(c, "gemma3_text", qk_norm=True, norms_per_layer=4, tied_default=True),
    "phi3": _phi3,
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "opt": _opt,
    **MORE_FAMILIES,
}


def arch_from_config(config: dict) -> Arch:
    model_type = config.get("model_type")
    if model_type in FAMILIES:
        return FAMILIES[model_type](config)
    if is_causal_lm(config):
        return generic_arch(config)
    known = ", ".join(sorted(FAMILIES))
    raise ValueError(f"model_type {model_type!r} is not supported yet; supported: {known}; other causal LMs "
                     "(architectures *ForCausalLM) get a generic profile")
