"""Measure the peak tensor memory of one real training step on the CPU (the planner's ground truth).

The step is what the worker runs: forward with labels, backward, fused AdamW step, zero_grad
(set_to_none). One warm-up step runs first so that the optimizer state exists, as in every step
after the first; the tracked step is then a steady-state step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType
from transformers import AutoConfig, AutoModelForCausalLM


class FrozenAwareMemTracker(MemTracker):
    """MemTracker registers a grad hook on every parameter, which raises on frozen ones."""

    def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
        param_memory = 0
        for param in module.parameters():
            winfos = self._update_and_maybe_create_winfos(param, _MemRefType.PARAM)
            param_memory += sum(winfo.mem_consumed for winfo in winfos)
            if param.grad is not None:
                self._update_and_maybe_create_winfos(param.grad, _MemRefType.GRAD)
            if param.requires_grad and install_grad_hooks and self._param_to_grad_hook_handles.get(param) is None:
                def grad_hook(grad, tracker=self):
                    tracker._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

                self._param_to_grad_hook_handles[param] = (
                    param.register_hook(grad_hook),
                    param.register_post_accumulate_grad_hook(lambda p, hook=grad_hook: hook(p.grad)),
                )
        buffer_memory = 0
        for buffer in module.buffers():
            winfos = self._update_and_maybe_create_winfos(buffer, _MemRefType.BUFFER)
            buffer_memory += sum(winfo.mem_consumed for winfo in winfos)
        return param_memory, buffer_memory


@dataclass(frozen=True)
class MeasuredPeak:
    total: int
    parameters: int
    gradients: int
    optimizer: int
    activations: int
    temporaries: int
    other: int


def build_model(model_dir: Path, method: str, attention: str, gradient_checkpointing: bool,
                lora_r: int = 8, lora_dropout: float = 0.05):
    config = AutoConfig.from_pretrained(model_dir)
    config.use_cache = False
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attention, dtype=torch.float32)
    model.train()
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=lora_dropout,
                                                 target_modules="all-linear"))
    elif method == "ia3":
        from peft import IA3Config, get_peft_model

        model = get_peft_model(model, IA3Config())
    return model


def measure_step_peak(model, micro_batch: int, seq_len: int, vocab_size: int) -> MeasuredPeak:
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab_size, (micro_batch, seq_len), generator=generator)

    def step():
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: creates the optimizer state
    tracker = FrozenAwareMemTracker()
    tracker.track_external(model, optimizer, input_ids)
    with tracker:
        step()
    snapshot = next(iter(tracker.get_tracker_snapshot("peak").values()))

    def get(kind):
        return snapshot.get(kind, 0)

    return MeasuredPeak(
        total=snapshot["Total"],
        parameters=get(_MemRefType.PARAM) + get(_MemRefType.BUFFER),
        gradients=get(_MemRefType.GRAD),
        optimizer=get(_MemRefType.OPT),
        activations=get(_MemRefType.ACT),
        temporaries=get(_MemRefType.TEMP),
        other=get(_MemRefType.OTH),
    )
