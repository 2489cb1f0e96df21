"""The normalised architecture of a decoder-only model (`Arch`) and the config readers families share.

A family (planner/families.py, planner/families_more.py, planner/generic.py) turns a Hugging Face
config dict into an `Arch`: the numbers the memory and FLOP models need and the Linear modules of
one decoder layer (the modules LoRA and IA3 adapt). Parameter counts are derived from that, and
tests compare them with what transformers counts for the same config.
"""

from __future__ import annotations

from dataclasses import dataclass

ATTENTION_ROLES = ("q", "k", "v", "qkv", "o")


@dataclass(frozen=True)
class Linear:
    name: str  # module name inside a layer, e.g. "self_attn.q_proj"
    in_features: int
    out_features: int
    bias: bool
    feedforward: bool = False  # an MLP output projection (IA3 scales its input instead of its output)
    role: str = ""  # what it computes, for the layer walk: "q", "k", "v", "qkv", "o", "gate", "up", "down", ...

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class Experts:
    """The routed experts of a mixture-of-experts layer.

    transformers 5 keeps them as fused 3-D parameters (gate_up_proj: experts x 2I x h, down_proj:
    experts x h x I) and the router as a bare (experts x h) parameter: none is an nn.Linear, so
    LoRA's all-linear, IA3 and bitsandbytes leave them alone. Each token goes to `per_token` of them.
    """

    count: int
    per_token: int
    intermediate: int  # one expert's MLP width
    gated: bool = True  # gate and up projections (SwiGLU-style), or one up projection
    bias: bool = False
    normalized: bool = True  # the top-k routing weights are divided by their sum (Mixtral; Qwen2-MoE's norm_topk_prob)

    def expert_params(self, hidden: int) -> int:
        up = (2 if self.gated else 1) * self.intermediate
        return (up + self.intermediate) * hidden + ((up + hidden) if self.bias else 0)

    def params(self, hidden: int) -> int:
        """All experts' weights plus the router's, in one layer."""
        return self.count * self.expert_params(hidden) + self.count * hidden

    def matrices(self, hidden: int) -> tuple[int, ...]:
        """Elements of the router's and the experts' weights, in parameter order (router, gate_up, down)."""
        up = (2 if self.gated else 1) * self.intermediate
        return self.count * hidden, self.count * up * hidden, self.count * hidden * self.intermediate

    @property
    def widest_per_token(self) -> int:
        """The widest expert activation per token: top_k rows of the (gate and) up projection's output."""
        return self.per_token * (2 if self.gated else 1) * self.intermediate

    def active_params(self, hidden: int) -> int:
        """The weights one token's matmuls read: the router and its routed experts."""
        return self.per_token * self.expert_params(hidden) + self.count * hidden


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
    intermediate: int  # the MLP's width; with experts, the widest MLP activation per token (sizes backward's gradients)
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
    lm_head_bias: bool = False  # the lm_head has a bias (Phi): its own parameters even when the weight is tied
    rotary_cat: bool = False  # partial rotary built with a cat (Phi-3, GPT-NeoX): q is laid out (b, a, s, d)
    attn_softcap: bool = False  # tanh soft-capping of attention logits (Gemma2)
    final_softcap: bool = False  # tanh soft-capping of the output logits (Gemma2)
    # -- the families of planner/families_more.py and the generic profile -------------------
    generic: bool = False  # read by planner/generic.py: a best effort, not an exact family
    layer_walk: str = "classic"  # "extended": planner/walk_families.py walks the layer
    partial_rotary: float = 1.0  # share of each head's dims that rotary rotates (Phi: 0.4-0.5)
    qk_norm_full: bool = False  # the q/k norm spans the whole projection (OLMo2), not one head
    norm_placement: str = "pre"  # "pre" (before attention and MLP) or "post" (after them: OLMo2)
    norm_weight: bool = True  # False: a norm without parameters
    norm_bias: bool = True  # LayerNorm's bias (only with norm == "layer")
    shared_norm: bool = False  # parallel attention and MLP read one norm's output (Phi, Falcon-7B)
    kv_broadcast: bool = False  # Falcon's new decoder: k and v are copied to every query head
    experts: Experts | None = None  # mixture of experts in place of (or beside, when shared) the MLP
    dense_layers: int = 0  # MoE models: layers with a dense MLP instead (Qwen2-MoE's mlp_only_layers)
    dense_linears: tuple[Linear, ...] = ()  # those layers' MLP Linear modules
    # eager attention's forward: score-sized tensors alive at the softmax (its input and output; before
    # transformers 5.25 Falcon also kept the unmasked scores), and whether the decoder layer returns the
    # probabilities, which the model's loop holds (`outputs`) through the next layer's forward (Falcon's)
    eager_forward_scores: int = 2
    eager_masks: int = 1  # masks the model materializes for eager attention (b x 1 x s x s each)
    holds_layer_probs: bool = False
    bnb_quantizable: bool = True  # False: nn.Linear subclasses (FalconLinear), which bitsandbytes leaves alone

    @property
    def norm_params(self) -> int:
        """One norm over the hidden width."""
        if not self.norm_weight:
            return 0
        return self.hidden * (2 if self.norm == "layer" and self.norm_bias else 1)

    @property
    def qk_norm_params(self) -> int:
        if not self.qk_norm:
            return 0
        per_dim = 2 if self.norm == "layer" and self.norm_bias else 1  # Phi's qk_layernorm is a LayerNorm
        return per_dim * ((self.heads + self.kv_heads) * self.head_dim if self.qk_norm_full else 2 * self.head_dim)

    @property
    def norm_params_per_layer(self) -> int:
        return self.norms_per_layer * self.norm_params + self.qk_norm_params

    @property
    def expert_params_per_layer(self) -> int:
        return self.experts.params(self.hidden) if self.experts else 0

    @property
    def layer_params(self) -> int:
        """One decoder layer (an MoE layer where a model mixes MoE and dense layers)."""
        return sum(linear.params for linear in self.linears) + self.norm_params_per_layer + self.expert_params_per_layer

    @property
    def attention_linears(self) -> tuple[Linear, ...]:
        return tuple(linear for linear in self.linears if linear.role in ATTENTION_ROLES)

    @property
    def dense_layer_params(self) -> int:
        linears = self.attention_linears + self.dense_linears
        return sum(linear.params for linear in linears) + self.norm_params_per_layer

    @property
    def layers_params(self) -> int:
        """All decoder layers."""
        return (self.layers - self.dense_layers) * self.layer_params + self.dense_layers * self.dense_layer_params

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.embed_dim + self.position_embeddings * self.hidden

    @property
    def lm_head_params(self) -> int:
        """The weight is 0 when tied (the embedding matrix is reused); a bias stays the lm_head's own."""
        return (0 if self.tied_embeddings else self.vocab * self.embed_dim) + (self.vocab if self.lm_head_bias else 0)

    @property
    def final_norm_params(self) -> int:
        return self.norm_params if self.final_norm else 0

    @property
    def total_params(self) -> int:
        return (self.embedding_params + self.layers_params + self.final_norm_params
                + self.lm_head_params + sum(linear.params for linear in self.extra_linears))

    @property
    def linear_params(self) -> int:
        """Parameters in the decoder layers' Linear modules (not fused experts: they are no nn.Linear)."""
        moe_layer = sum(linear.params for linear in self.linears)
        dense_layer = sum(linear.params for linear in self.attention_linears + self.dense_linears)
        return (self.layers - self.dense_layers) * moe_layer + self.dense_layers * dense_layer

    @property
    def quantized_params(self) -> int:
        """What QLoRA's 4-bit loading quantizes: bitsandbytes replaces modules whose type is exactly nn.Linear."""
        return self.linear_params if self.bnb_quantizable else 0

    @property
    def matmul_weight_params(self) -> int:
        """Decoder-layer weights that matmuls read in one pass: the Linear modules and every expert."""
        return self.linear_params + (self.layers - self.dense_layers) * self.expert_params_per_layer

    @property
    def active_linear_params(self) -> int:
        """Decoder-layer weights one token's matmuls use (its FLOPs): Linear modules, router, routed experts."""
        routed = self.experts.active_params(self.hidden) if self.experts else 0
        return self.linear_params + (self.layers - self.dense_layers) * routed

    def weight_matrix_sizes(self) -> list[int]:
        """Elements of every decoder-layer weight matrix (no biases, no norms), layer by layer in the model's
        parameter order: attention, then the router and experts, then the other MLP Linears (dense layers first)."""
        attention = [lin.in_features * lin.out_features for lin in self.attention_linears]
        mlp = [lin.in_features * lin.out_features for lin in self.linears if lin.role not in ATTENTION_ROLES]
        dense = [lin.in_features * lin.out_features for lin in self.dense_linears]
        experts = list(self.experts.matrices(self.hidden)) if self.experts else []
        return (attention + dense) * self.dense_layers + (attention + experts + mlp) * (self.layers - self.dense_layers)

    @property
    def gqa_groups(self) -> int:
        return self.heads // self.kv_heads


# -- reading configs -------------------------------------------------------------------------

def get_field(config: dict, *keys, default=None):
    """The first of `keys` the config sets (not None), honouring its `attribute_map` aliases."""
    aliases = config.get("attribute_map") or {}
    for key in keys:
        for name in (key, aliases.get(key)):
            if name is not None and config.get(name) is not None:
                return config[name]
    return default


def common_shape(config: dict) -> dict:
    hidden = get_field(config, "hidden_size", "n_embd", "d_model")
    heads = get_field(config, "num_attention_heads", "n_head")
    return {
        "hidden": hidden,
        "layers": get_field(config, "num_hidden_layers", "n_layer"),
        "heads": heads,
        "kv_heads": get_field(config, "num_key_value_heads", default=heads),
        "head_dim": get_field(config, "head_dim", default=hidden // heads),
        "vocab": config["vocab_size"],
        "max_positions": get_field(config, "max_position_embeddings", "n_positions", default=2048),
    }


def rotary_share(config: dict, default: float = 1.0) -> float:
    """partial_rotary_factor: at the top level (hub configs) or in rope_parameters (transformers 5)."""
    for holder in (config, config.get("rope_parameters") or {}, config.get("rope_scaling") or {}):
        if isinstance(holder, dict) and holder.get("partial_rotary_factor") is not None:
            return float(holder["partial_rotary_factor"])
    return default


def attention_linears(c: dict, q_bias: bool, o_bias: bool, prefix="self_attn.", names=("q_proj", "k_proj",
                      "v_proj", "o_proj")) -> list[Linear]:
    q_width, kv_width = c["heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"]
    q, k, v, o = names
    return [Linear(prefix + q, c["hidden"], q_width, q_bias, role="q"),
            Linear(prefix + k, c["hidden"], kv_width, q_bias, role="k"),
            Linear(prefix + v, c["hidden"], kv_width, q_bias, role="v"),
            Linear(prefix + o, q_width, c["hidden"], o_bias, role="o")]


def gated_mlp(hidden: int, intermediate: int, bias: bool, prefix: str = "mlp.", role_prefix: str = "") -> list[Linear]:
    return [Linear(prefix + "gate_proj", hidden, intermediate, bias, role=role_prefix + "gate"),
            Linear(prefix + "up_proj", hidden, intermediate, bias, role=role_prefix + "up"),
            Linear(prefix + "down_proj", intermediate, hidden, bias, feedforward=True, role=role_prefix + "down")]


def plain_mlp(hidden: int, intermediate: int, bias: bool, names=("fc1", "fc2"), prefix: str = "mlp.") -> list[Linear]:
    return [Linear(prefix + names[0], hidden, intermediate, bias, role="up"),
            Linear(prefix + names[1], intermediate, hidden, bias, feedforward=True, role="down")]
