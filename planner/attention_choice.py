"""Which attention kernel a run uses: SDPA unless the model cannot run it."""

from __future__ import annotations

from planner.errors import FieldProblem, SpecError
from planner.families import Arch
from planner.spec import JobSpec


def sdpa_supported(arch: Arch) -> bool:
    # SDPA cannot soft-cap attention logits: transformers refuses it for Gemma2 (flash-attn and eager can)
    return not arch.attn_softcap


def attention_for(spec: JobSpec, arch: Arch) -> str:
    if spec.attention != "auto":
        return spec.attention
    return "sdpa" if sdpa_supported(arch) else "eager"


def check_attention(spec: JobSpec, arch: Arch) -> None:
    if spec.attention == "sdpa" and not sdpa_supported(arch):
        raise SpecError([FieldProblem("attention", "sdpa", f"{arch.model_type} soft-caps its attention logits, "
                                      "which SDPA cannot do; use eager, flash_attention_2 (GPU) or auto")])
