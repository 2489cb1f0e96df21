"""The run's final artifact: the PEFT adapter folder or the full model, and optionally a merged model."""

from __future__ import annotations

from pathlib import Path

import torch

from planner.plan import RunSettings
from worker.model import DTYPES, load_base_model


def merge_adapter(settings: RunSettings, adapter_dir: Path, merged_dir: Path) -> Path:
    """Reload the base unquantized in the compute dtype, fold the adapter in, save a plain model."""
    from peft import PeftModel

    base = load_base_model(settings, torch.device("cpu"), dtype=DTYPES[settings.precision], quantize=False)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(merged_dir)
    return merged_dir


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measured_terms(model, optimizer) -> dict[str, int]:
    """The memory terms that can be counted tensor by tensor after a run (the rest are peaks)."""
    params = list(model.parameters())
    optimizer_tensors = [v for state in (optimizer.state.values() if optimizer else [])
                         for v in state.values() if torch.is_tensor(v)]
    return {"weights": tensor_bytes(params) + tensor_bytes(model.buffers()),
            "gradients": tensor_bytes(p for p in params if p.requires_grad),
            "optimizer": tensor_bytes(optimizer_tensors)}


def weights_checksum(model) -> float:
    """A cheap fingerprint of the trained weights: equal on every data-parallel rank after a step. A sharded
    (FSDP) parameter counts whole: every rank gathers it, so every rank calls this."""
    from torch.distributed.tensor import DTensor

    with torch.no_grad():
        whole = (p.full_tensor() if isinstance(p, DTensor) else p for p in model.parameters() if p.requires_grad)
        return float(sum(p.detach().double().sum() + p.detach().double().square().sum() for p in whole))
