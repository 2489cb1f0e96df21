"""Model profile: the architecture and parameter counts of a model, read from its config.json.

The config comes from a local folder, the Hugging Face cache (for a hub id), or effft's copy of
a popular model's config, in that order. Reading a file is the only I/O; no torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from planner.errors import ModelProfileError
from planner.families import Arch, arch_from_config
from planner.known_models import KNOWN_CONFIGS


@dataclass(frozen=True)
class ModelProfile:
    source: str  # the model as the job named it
    config_origin: str  # where the config was read from
    arch: Arch

    @property
    def total_params(self) -> int:
        return self.arch.total_params

    def components(self) -> dict[str, int]:
        """Parameter count per component, summed over layers; they add up to `total_params`."""
        arch = self.arch
        parts = {"embeddings": arch.embedding_params}
        moe_layers = arch.layers - arch.dense_layers  # all layers, unless an MoE model keeps dense ones
        linear_counts = [(linear, moe_layers) for linear in arch.linears] + [
            (linear, arch.dense_layers) for linear in arch.attention_linears + arch.dense_linears]
        for linear, layers in linear_counts:
            if layers:
                name = linear.name.split(".")[-1]
                parts[name] = parts.get(name, 0) + layers * linear.params
        if arch.experts:
            parts["experts"] = moe_layers * arch.expert_params_per_layer  # fused experts and the router
        parts["norms"] = arch.layers * arch.norm_params_per_layer + arch.final_norm_params
        parts["lm_head"] = arch.lm_head_params
        if arch.extra_linears:
            parts["projections"] = sum(linear.params for linear in arch.extra_linears)
        return parts


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home) / "hub"


def _cached_config(hub_id: str, revision: str | None) -> Path | None:
    repo = hf_cache_dir() / ("models--" + hub_id.replace("/", "--"))
    ref = repo / "refs" / (revision or "main")
    snapshot = ref.read_text().strip() if _inside(ref, repo) and ref.is_file() else (revision or "")
    candidates = [repo / "snapshots" / snapshot / "config.json"] if snapshot else []
    candidates += sorted((repo / "snapshots").glob("*/config.json")) if not revision else []
    # a revision or a ref's content names a folder: never one outside this model's cache folder
    return next((path for path in candidates if _inside(path, repo) and path.is_file()), None)


def _inside(path: Path, folder: Path) -> bool:
    return os.path.normpath(path).startswith(os.path.normpath(folder) + os.sep)


def read_config(source: str, revision: str | None = None) -> tuple[dict, str]:
    """The model's config dict and where it came from."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        path = folder / "config.json"
        if not path.is_file():
            raise ModelProfileError(f"model {source!r}: the folder has no config.json; point `model` at a "
                                    "folder written by save_pretrained, or at a Hugging Face id")
        return _load_json(path), str(path)
    cached = _cached_config(source, revision)
    if cached is not None:
        return _load_json(cached), str(cached)
    if source in KNOWN_CONFIGS:
        return dict(KNOWN_CONFIGS[source]), "effft's built-in copy of the config"
    raise ModelProfileError(f"model {source!r}: not a local folder, not in the Hugging Face cache "
                            f"({hf_cache_dir()}) and not a model effft knows; download its config first "
                            f"(`huggingface-cli download {source} config.json`) or give a local folder")


def _load_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # ValueError: bad UTF-8, bad JSON
        raise ModelProfileError(f"cannot read {path}: {type(error).__name__}") from None
    if not isinstance(config, dict):
        raise ModelProfileError(f"cannot read {path}: a config.json holds a JSON object")
    return config


def profile_from_config(config: dict, source: str = "<config>", origin: str = "<dict>") -> ModelProfile:
    try:
        # Multimodal wrappers keep the language model's config under text_config.
        if "text_config" in config and "vocab_size" not in config:
            config = {**config["text_config"], "tie_word_embeddings": config.get("tie_word_embeddings", False)}
        arch = arch_from_config(config)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError, OverflowError) as error:
        raise ModelProfileError(f"model {source!r}: cannot read its config ({origin}): {error}") from None
    if arch.generic:  # the plan says so: its numbers rest on a layout guessed from standard fields
        origin += (f"; generic causal-LM profile: model_type {arch.model_type!r} has no family of its own, "
                   "so its layer is assumed Llama-like (a best effort)")
    return ModelProfile(source=source, config_origin=origin, arch=arch)


def load_profile(source: str, revision: str | None = None) -> ModelProfile:
    config, origin = read_config(source, revision)
    return profile_from_config(config, source, origin)
