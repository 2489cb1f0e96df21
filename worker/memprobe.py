"""Measure one training step's memory on the CPU, phase by phase: the planner's ground truth.

The step is the worker's own: the model loaded and prepared by `worker.model.prepare_model` from
the plan's settings, the Trainer built from the worker's `training_arguments` (same optimizer,
same clipping), `Trainer.training_step` (forward with labels, backward), gradient clipping, the
optimizer step and `zero_grad`. One warm-up step runs first so the optimizer state exists, as in
every later step. MemTracker counts the bytes of live tensor storages: on the CPU that is what
the plan predicts (the CPU allocator keeps no reserved pool).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import torch
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

from planner.plan import Plan, RunSettings

PHASES = ("forward", "backward", "optimizer")


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

    def end_phase(self) -> dict[str, int]:
        """The peak snapshot since the last phase ended; the next phase starts from the current bytes."""
        peak = next(iter(self._peak_mem_snap.values()), {})
        current = self.get_tracker_snapshot("current")
        self._peak_mem_snap = current
        self._peak_mem = {dev: snap["Total"] for dev, snap in current.items()}
        return {_KIND_NAMES.get(kind, str(kind)): int(value) for kind, value in peak.items()}


_KIND_NAMES = {_MemRefType.PARAM: "parameters", _MemRefType.BUFFER: "buffers", _MemRefType.GRAD: "gradients",
               _MemRefType.OPT: "optimizer", _MemRefType.ACT: "activations", _MemRefType.TEMP: "temporaries",
               _MemRefType.OTH: "other", "Total": "total"}


@dataclass(frozen=True)
class StepMemory:
    """Peak tensor bytes of each phase of one steady-state step, by MemTracker's categories."""

    phases: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda name: self.phases[name].get("total", 0))

    @property
    def total(self) -> int:
        return self.phases[self.peak_phase]["total"]

    def at_peak(self, kind: str) -> int:
        return self.phases[self.peak_phase].get(kind, 0)


def quant_state_tensors(model) -> list[torch.Tensor]:
    """bitsandbytes keeps each 4-bit weight's scales outside the module's parameters and buffers."""
    tensors = []
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        while state is not None:
            tensors += [t for t in (state.absmax, getattr(state, "code", None)) if isinstance(t, torch.Tensor)]
            state = getattr(state, "state2", None)
    return tensors


def probe_batch(settings: RunSettings, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A packed block, as default_data_collator hands it to the model: ids, labels, an all-ones mask."""
    shape = (settings.micro_batch_size, settings.seq_len)
    ids = torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones(shape, dtype=torch.long)}


def measure_step(plan: Plan) -> StepMemory:
    """Prepare the model exactly as the worker does and measure one steady-state step on the CPU."""
    from transformers import Trainer

    from worker.model import prepare_model
    from worker.train import WorkerJob, training_arguments

    device, settings = torch.device("cpu"), plan.settings
    torch.manual_seed(settings.training.seed)
    model = prepare_model(settings, device)
    with tempfile.TemporaryDirectory() as work_dir:
        job = WorkerJob(plan=plan, output_dir=work_dir, work_dir=work_dir)
        trainer = Trainer(model=model, args=training_arguments(job, 2, device, False))
        # Trainer.train wraps the model so its forward runs under the plan's autocast (AMP)
        model = trainer.accelerator.prepare_model(model)
        optimizer = trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train's loop; one micro-batch here
        batch = probe_batch(settings, model.config.vocab_size)
        max_grad_norm = settings.training.max_grad_norm
        items = int((batch["labels"][:, 1:] != -100).sum())  # the loop counts the predicted tokens

        def step(tracker=None):
            trainer.training_step(model, dict(batch), num_items_in_batch=items)
            if tracker:
                phases["backward"] = tracker.end_phase()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            model.zero_grad(set_to_none=True)

        phases: dict[str, dict[str, int]] = {}
        step()  # warm-up: the optimizer state now exists
        tracker = FrozenAwareMemTracker()
        tracker.track_external(model, optimizer, *batch.values(), *quant_state_tensors(model))
        handle = model.register_forward_hook(lambda *_: phases.__setitem__("forward", tracker.end_phase()))
        with tracker:
            step(tracker)
            phases["optimizer"] = tracker.end_phase()
        handle.remove()
    return StepMemory(phases={name: phases[name] for name in PHASES})
