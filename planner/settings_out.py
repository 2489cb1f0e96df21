"""What the worker reads from a plan: the job spec with every choice of the run filled in."""

from __future__ import annotations

from planner.plan import RunSettings
from planner.setup import RunSetup
from planner.spec import JobSpec


def worker_settings(spec: JobSpec, run: RunSetup, seq_len: int, checkpoint_every_steps: int) -> RunSettings:
    """The plan's settings: the spec with every auto resolved to what the worker runs."""
    settings = spec.model_dump(mode="json")
    lora = settings["lora"]
    # all-linear becomes the module list the plan counted, except for a generic profile, whose module
    # names are guessed: there peft's own all-linear finds the real ones
    if run.adapter is not None and run.adapter.kind == "lora" and not run.arch.generic:
        lora["target_modules"] = list(run.adapter.layer_modules + run.adapter.model_modules) \
            if spec.lora.target_modules == "all-linear" else spec.lora.target_modules
    settings.update({
        "seq_len": seq_len, "packing": spec.packing if spec.packing != "auto" else True,
        "method": run.method, "precision": run.precision,
        "precision_recipe": run.recipe if run.precision != "fp32" else "fp32", "optimizer": run.optimizer,
        "micro_batch_size": run.micro_batch, "gradient_checkpointing": run.gradient_checkpointing,
        "attention": run.attention, "sharding": run.sharding, "gradient_accumulation_steps": run.grad_accum,
    })
    settings["resources"] = {**settings["resources"], "gpus": run.gpus if run.sharding != "none" else 1,
                             "gpu_type": run.device.name}
    settings["training"]["checkpoint_every_steps"] = checkpoint_every_steps
    return RunSettings.model_validate(settings)
