"""Which modules LoRA / IA3 adapt, and how many parameters they train (as peft counts them)."""

from __future__ import annotations

from dataclasses import dataclass

from planner.families import Arch, Linear

# peft's defaults when target_modules is not given (peft.utils.constants, IA3 mappings).
IA3_DEFAULT_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mistral": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen3": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma3_text": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gpt2": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
    "gpt_neox": (["query_key_value", "dense_4h_to_h"], ["dense_4h_to_h"]),
    "opt": (["q_proj", "k_proj", "fc2"], ["fc2"]),
    "phi": (["q_proj", "v_proj", "fc2"], ["fc2"]),
    "falcon": (["query_key_value", "dense_4h_to_h"], ["dense_4h_to_h"]),
    # w2 was Mixtral's per-expert nn.Linear; transformers 5 fuses the experts, so only k and v match
    "mixtral": (["k_proj", "v_proj", "w2"], ["w2"]),
}


def _matches(module_name: str, targets: list[str]) -> bool:
    # peft matches a target name against the end of the module's dotted name.
    full = "model.layers.0." + module_name
    return any(full == t or full.endswith("." + t) for t in targets)


@dataclass(frozen=True)
class AdapterPlan:
    """The adapted modules of one decoder layer (plus model-level ones) and the trainable count."""

    kind: str  # "lora" or "ia3"
    layer_modules: tuple[str, ...]  # names inside a layer, e.g. "self_attn.q_proj"
    model_modules: tuple[str, ...]  # model-level modules (OPT's projections under all-linear)
    feedforward: tuple[str, ...]  # IA3: modules whose input (not output) is scaled
    trainable_params: int
    rank: int = 0
    dropout: float = 0.0


def lora_plan(arch: Arch, r: int, dropout: float, target_modules: str | list[str]) -> AdapterPlan:
    if target_modules == "all-linear":
        layer = [linear for linear in arch.linears]
        extra = list(arch.extra_linears)
    else:
        layer = [linear for linear in arch.linears if _matches(linear.name, target_modules)]
        extra = [linear for linear in arch.extra_linears if linear.name in target_modules]
        if not layer and not extra:
            names = sorted({linear.name.split(".")[-1] for linear in arch.linears})
            raise ValueError(f"lora.target_modules {target_modules} match no module of this "
                             f"{arch.model_type} model; its Linear modules are: {', '.join(names)}")
    per_layer = sum(r * (lin.in_features + lin.out_features) for lin in layer)
    trainable = arch.layers * per_layer + sum(r * (lin.in_features + lin.out_features) for lin in extra)
    return AdapterPlan("lora", tuple(lin.name for lin in layer), tuple(lin.name for lin in extra), (),
                       trainable, rank=r, dropout=dropout)


def ia3_plan(arch: Arch, target_modules: str | list[str], feedforward_modules: str | list[str]) -> AdapterPlan:
    defaults = IA3_DEFAULT_TARGETS.get(arch.model_type)
    if (target_modules == "auto" or feedforward_modules == "auto") and defaults is None:
        raise ValueError(f"ia3.target_modules: peft has no IA3 default for model type {arch.model_type!r}; "
                         "list the modules in ia3.target_modules and ia3.feedforward_modules")
    targets = defaults[0] if target_modules == "auto" else target_modules
    feedforward = defaults[1] if feedforward_modules == "auto" else feedforward_modules
    layer: list[Linear] = [linear for linear in arch.linears if _matches(linear.name, targets)]
    if not layer:
        raise ValueError(f"ia3.target_modules {targets} match no module of this {arch.model_type} model")
    ff_names = tuple(lin.name for lin in layer if _matches(lin.name, feedforward))
    per_layer = sum(lin.in_features if lin.name in ff_names else lin.out_features for lin in layer)
    return AdapterPlan("ia3", tuple(lin.name for lin in layer), (), ff_names, arch.layers * per_layer)
