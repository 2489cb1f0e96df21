"""The decision tree's rules as ordered data (the lecture's two steps, extended to several GPUs).

Step 1 (0 -> 1) walks STATIC_LADDER top-down and takes the first rung whose memory at
micro-batch 1, with gradient checkpointing (the cheapest activations), fits the budget: so a
rung is never skipped for one that only adds throughput, and quantization is never chosen to
grow the batch. Step 2 (activations: 0 -> 1, then 1 -> n) then turns checkpointing off if
micro-batch 1 fits without it, grows the micro-batch while predicted tokens/s rises, and makes
up the effective batch with gradient accumulation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rung:
    name: str
    method: str  # full | lora | ia3 | qlora
    sharding: str  # replicated ("none" on one GPU, "ddp" on several) or "fsdp"
    optimizer: str  # adamw | adamw_8bit
    multi_gpu_only: bool  # the rung exists only with several GPUs
    why: str  # what this rung buys, for the decision record


STATIC_LADDER: tuple[Rung, ...] = (
    Rung("full", "full", "replicated", "adamw", False,
         "full fine-tuning: every weight learns; needs weights + gradients + AdamW state for all"),
    Rung("lora", "lora", "replicated", "adamw", False,
         "LoRA: frozen 16-bit base, gradients and optimizer state only for the adapters"),
    Rung("full-fsdp", "full", "fsdp", "adamw", True,
         "full fine-tuning sharded with FSDP: weights, gradients and optimizer state split over the GPUs"),
    Rung("lora-fsdp", "lora", "fsdp", "adamw", True,
         "LoRA with the frozen base sharded over the GPUs (FSDP): several GPUs make quantization unnecessary"),
    Rung("qlora", "qlora", "replicated", "adamw", False,
         "QLoRA: the base's Linear weights in 4-bit NF4 (double quantization), adapters in fp32"),
    Rung("qlora-8bit-adam", "qlora", "replicated", "adamw_8bit", False,
         "QLoRA with 8-bit AdamW: optimizer state at 2 bytes per trained parameter"),
)
# Full fine-tuning on FSDP is tried only when the user pinned method: full (the lecture prefers
# LoRA over sharding a full fine-tune); `full-fsdp` is skipped for method: auto.
AUTO_SKIPS = {"full-fsdp"}

MIN_THROUGHPUT_GAIN = 0.03  # a larger micro-batch must raise predicted tokens/s by 3 % to be taken
# objective throughput (a busy cluster): a smaller micro-batch may cost the job this much of its tokens/s
THROUGHPUT_COST = 0.10
