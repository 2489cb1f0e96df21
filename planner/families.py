"""Model families as data: how a Hugging Face config maps to layers, modules and parameters.

Each family turns a config dict into an `Arch`: the numbers the memory and FLOP models need and
the Linear modules of one decoder layer (the modules LoRA and IA3 adapt). Parameter counts are
derived from that, and tests compare them with what transformers counts for the same config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Linear:
    name: str  # module name inside a layer, e.g. "self_attn.q_proj"
    in_features: int
    out_features: int
    bias: bool
    feedforward: bool = False  # an MLP output projection (IA3 scales its input instead of its output)

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class Arch:
    """The architecture of a decoder-only model, normalised across families."""

    family: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_positions: int
    tied_embeddings: bool
    norm: str  # "rms" or "layer"
    norms_per_layer: int
    qk_norm: bool  # per-head RMSNorm on queries and keys (Qwen3, Gemma3)
    mlp: str  # "gated" (gate/up/down) or "plain" (fc1/fc2)
    activation: str  # the config's activation name
    fused_qkv: bool  # one projection makes q, k and v (views of one tensor)
    parallel_residual: bool  # attention and MLP both read the layer input (GPT-NeoX)
    linears: tuple[Linear, ...]  # Linear modules of one decoder layer
    position_embeddings: int  # learned position-embedding rows (0 with rotary)
    embed_dim: int  # width of the token embedding (OPT may project it)
    extra_linears: tuple[Linear, ...]  # model-level Linear modules outside the layers (OPT's projections)
    final_norm: bool
    attention_dropout: float
    hidden_dropout: float  # residual / MLP dropout inside each layer
    embedding_dropout: float
    lm_head_bias: bool = False
    rotary_cat: bool = False  # partial rotary built with a cat (Phi-3, GPT-NeoX): q is laid out (b, a, s, d)
    attn_softcap: bool = False  # tanh soft-capping of attention logits (Gemma2)
    final_softcap: bool = False  # tanh soft-capping of the output logits (Gemma2)

    @property
    def norm_params_per_layer(self) -> int:
        per_norm = self.hidden * (2 if self.norm == "layer" else 1)
        return self.norms_per_layer * per_norm + (2 * self.head_dim if self.qk_norm else 0)

    @property
    def layer_params(self) -> int:
        return sum(linear.params for linear in self.linears) + self.norm_params_per_layer

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.embed_dim + self.position_embeddings * self.hidden

    @property
    def lm_head_params(self) -> int:
        """0 when tied: the embedding matrix is reused."""
        return 0 if self.tied_embeddings else self.vocab * self.embed_dim + (self.vocab if self.lm_head_bias else 0)

    @property
    def final_norm_params(self) -> int:
        return self.hidden * (2 if self.norm == "layer" else 1) if self.final_norm else 0

    @property
    def total_params(self) -> int:
        return (self.embedding_params + self.layers * self.layer_params + self.final_norm_params
                + self.lm_head_params + sum(linear.params for linear in self.extra_linears))

    @property
    def linear_params(self) -> int:
        """Parameters in the decoder layers' Linear modules: what QLoRA quantizes."""
        return self.layers * sum(linear.params for linear in self.linears)

    @property
    def gqa_groups(self) -> int:
        return self.heads // self.kv_heads


def _get(config: dict, *keys, default=None):
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def _common(config: dict) -> dict:
    hidden = _get(config, "hidden_size", "n_embd", "d_model")
    heads = _get(config, "num_attention_heads", "n_head")
    return {
        "hidden": hidden,
        "layers": _get(config, "num_hidden_layers", "n_layer"),
        "heads": heads,
        "kv_heads": _get(config, "num_key_value_heads", default=heads),
        "head_dim": _get(config, "head_dim", default=hidden // heads),
        "vocab": config["vocab_size"],
        "max_positions": _get(config, "max_position_embeddings", "n_positions", default=2048),
    }


def _attention_linears(c: dict, q_bias: bool, o_bias: bool, prefix="self_attn.", names=("q_proj", "k_proj",
                       "v_proj", "o_proj")) -> list[Linear]:
    q_width, kv_width = c["heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"]
    q, k, v, o = names
    return [Linear(prefix + q, c["hidden"], q_width, q_bias), Linear(prefix + k, c["hidden"], kv_width, q_bias),
            Linear(prefix + v, c["hidden"], kv_width, q_bias), Linear(prefix + o, q_width, c["hidden"], o_bias)]


def _gated_mlp(hidden: int, intermediate: int, bias: bool) -> list[Linear]:
    return [Linear("mlp.gate_proj", hidden, intermediate, bias), Linear("mlp.up_proj", hidden, intermediate, bias),
            Linear("mlp.down_proj", intermediate, hidden, bias, feedforward=True)]


def _llama_like(config: dict, family: str, *, qkv_bias: bool = False, qk_norm: bool = False,
                norms_per_layer: int = 2, tied_default: bool = False) -> Arch:
    softcaps = {"attn_softcap": bool(config.get("attn_logit_softcapping")),
                "final_softcap": bool(config.get("final_logit_softcapping"))}
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
                hidden_dropout=0.0, embedding_dropout=0.0, **softcaps)


def _phi3(config: dict) -> Arch:
    c = _common(config)
    intermediate = config["intermediate_size"]
    qkv_width = (c["heads"] + 2 * c["kv_heads"]) * c["head_dim"]
    linears = (Linear("self_attn.qkv_proj", c["hidden"], qkv_width, False),
               Linear("self_attn.o_proj", c["heads"] * c["head_dim"], c["hidden"], False),
               Linear("mlp.gate_up_proj", c["hidden"], 2 * intermediate, False),
               Linear("mlp.down_proj", intermediate, c["hidden"], False, feedforward=True))
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
    linears = (Linear("attn.c_attn", h, 3 * h, True), Linear("attn.c_proj", h, h, True),
               Linear("mlp.c_fc", h, intermediate, True), Linear("mlp.c_proj", intermediate, h, True,
                                                                  feedforward=True))
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
    linears = (Linear("attention.query_key_value", h, 3 * h, bias), Linear("attention.dense", h, h, bias),
               Linear("mlp.dense_h_to_4h", h, intermediate, True),
               Linear("mlp.dense_4h_to_h", intermediate, h, True, feedforward=True))
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
               Linear("fc1", h, ffn, bias), Linear("fc2", ffn, h, bias, feedforward=True))
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
}


def arch_from_config(config: dict) -> Arch:
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise ValueError(f"model_type {model_type!r} is not supported yet; supported: {known}")
    return FAMILIES[model_type](config)
