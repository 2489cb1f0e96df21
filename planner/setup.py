"""The resolved knobs of one candidate run: what the memory and throughput models read."""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.activations import ActivationSetup
from planner.adapters import AdapterPlan
from planner.catalog import GpuSpec
from planner.families import Arch

# Bytes per parameter that QLoRA's NF4 with double quantization keeps: 4 bits, plus per block of
# 64 an 8-bit absmax, plus per 256 blocks an fp32 second-level absmax (QLoRA paper, sec. 3).
NF4_DOUBLE_QUANT_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)


@dataclass(frozen=True)
class RunSetup:
    arch: Arch
    device: GpuSpec
    method: str  # "full" | "lora" | "qlora" | "ia3"
    adapter: AdapterPlan | None
    precision: str  # "fp32" | "bf16" | "fp16": the compute dtype
    recipe: str  # "fp32" | "amp" (fp32 trainable weights, 16-bit compute) | "pure" (everything 16-bit)
    optimizer: str  # "adamw" | "adamw_8bit" | "paged_adamw_8bit"
    micro_batch: int
    seq_len: int
    attention: str  # "eager" | "sdpa" | "flash_attention_2"
    gradient_checkpointing: bool
    grad_accum: int = 1
    sharding: str = "none"  # "none" | "ddp" | "fsdp"
    gpus: int = 1
    double_quant: bool = True

    def with_(self, **changes) -> RunSetup:
        return replace(self, **changes)

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_len

    @property
    def train_base(self) -> bool:
        return self.method == "full"

    @property
    def trainable_params(self) -> int:
        return self.arch.total_params if self.train_base else self.adapter.trainable_params

    @property
    def trainable_bytes(self) -> int:
        """Bytes per trainable parameter: fp32 unless the recipe is pure 16-bit."""
        return 2 if self.recipe == "pure" else 4

    @property
    def frozen_bytes(self) -> int:
        """Bytes per frozen base parameter: 16-bit unless the whole run is fp32."""
        return 4 if self.recipe == "fp32" else 2

    @property
    def data_parallel(self) -> int:
        return self.gpus if self.sharding in ("ddp", "fsdp") else 1

    def activation_setup(self) -> ActivationSetup:
        return ActivationSetup(arch=self.arch, tokens=self.tokens, seq_len=self.seq_len, recipe=self.recipe,
                               attention=self.attention, on_cpu=self.device.is_cpu, train_base=self.train_base,
                               adapter=self.adapter, quantized=self.method == "qlora",
                               checkpointing=self.gradient_checkpointing,
                               # peft enables input grads for 4-bit models only under reentrant checkpointing
                               input_requires_grad=(self.gradient_checkpointing and not self.train_base
                                                    and self.method != "qlora"))
