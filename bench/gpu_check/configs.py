"""What the GPU proof measures: model shapes, the memory grid, the speed pairs and the auto jobs.

Two sets: the real one for one H200 (0.5B-8B shapes, bf16) and the dry run's (2-layer shapes,
seq 64, fp32 as the planner picks on a CPU) that runs the same pipeline on a CPU in seconds.
Shapes are configs only: the children build random weights on the device, and the planner reads
the same dicts.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.known_models import KNOWN_CONFIGS


@dataclass(frozen=True)
class Shape:
    name: str  # short label in the tables
    source: str  # the job spec's model path (a hub id the planner knows offline, or a label)
    config: dict  # the HF config fields, model_type included

    @property
    def vocab(self) -> int:
        return self.config["vocab_size"]


@dataclass(frozen=True)
class MemoryCase:
    shape: Shape
    method: str  # full | lora | qlora
    checkpointing: bool
    seq_len: int
    micro_batch: int

    @property
    def label(self) -> str:
        return (f"{self.shape.name} {self.method} gc={'on' if self.checkpointing else 'off'} "
                f"seq={self.seq_len} mb={self.micro_batch}")


@dataclass(frozen=True)
class SpeedCase:
    """One model trained three ways: effft's worker, a plain HF Trainer with its settings, a naive default."""

    shape: Shape
    method: str
    seq_len: int
    effective_batch: int


@dataclass(frozen=True)
class AutoJob:
    """A job left to the planner (micro-batch and checkpointing auto), then swept over the micro-batches that fit."""

    shape: Shape
    method: str  # "auto" or a pinned method
    seq_len: int
    effective_batch: int
    max_points: int  # sweep points, nearest the planner's choice first


@dataclass(frozen=True)
class Suite:
    dry_run: bool  # precision is the planner's everywhere: bf16 on the H200; fp32 on a CPU (QLoRA: bf16)
    memory: tuple[MemoryCase, ...]
    speed: tuple[SpeedCase, ...]
    auto: tuple[AutoJob, ...]
    memory_steps: int
    speed_steps: int
    auto_steps: int
    warmup_steps: int  # steps before the clock starts: the first (lazy init); on a CPU also the memory probe
    timeout_seconds: float  # one run, its process start included


def _known(name: str, hub_id: str) -> Shape:
    return Shape(name, hub_id, dict(KNOWN_CONFIGS[hub_id]))


QWEN_05B = _known("Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B")
LLAMA_1B = _known("Llama-3.2-1B", "meta-llama/Llama-3.2-1B")
LLAMA_3B = _known("Llama-3.2-3B", "meta-llama/Llama-3.2-3B")
LLAMA_8B = _known("Llama-3.1-8B", "meta-llama/Llama-3.1-8B")

# (shape, method, checkpointing, seq_len, micro-batch): every shape x method, checkpointing on and off,
# seq 512-4096, micro-batch 1-8; the 8B full rows and the 3B full row without checkpointing at 4096 x 8
# are ones the planner says do not fit: they run too (alone, capped at the budget) to confirm the OOM.
_GPU_MEMORY = (
    (QWEN_05B, "full", False, 512, 8), (QWEN_05B, "full", True, 4096, 4), (QWEN_05B, "lora", False, 2048, 4),
    (QWEN_05B, "lora", True, 1024, 1), (QWEN_05B, "lora", False, 512, 1), (QWEN_05B, "qlora", False, 1024, 2),
    (QWEN_05B, "qlora", True, 4096, 8),
    (LLAMA_1B, "full", False, 2048, 4), (LLAMA_1B, "full", True, 4096, 8), (LLAMA_1B, "lora", False, 1024, 8),
    (LLAMA_1B, "lora", True, 2048, 2), (LLAMA_1B, "qlora", False, 512, 4), (LLAMA_1B, "qlora", True, 4096, 1),
    (LLAMA_3B, "full", False, 1024, 2), (LLAMA_3B, "full", True, 2048, 4), (LLAMA_3B, "full", False, 4096, 8),
    (LLAMA_3B, "lora", False, 4096, 1), (LLAMA_3B, "lora", True, 4096, 8), (LLAMA_3B, "qlora", False, 2048, 2),
    (LLAMA_3B, "qlora", True, 1024, 8),
    (LLAMA_8B, "full", False, 512, 1), (LLAMA_8B, "full", True, 2048, 1), (LLAMA_8B, "lora", False, 512, 8),
    (LLAMA_8B, "lora", False, 2048, 2), (LLAMA_8B, "lora", True, 4096, 4), (LLAMA_8B, "qlora", False, 1024, 2),
    (LLAMA_8B, "qlora", True, 2048, 4), (LLAMA_8B, "qlora", True, 4096, 8),
)

GPU_SUITE = Suite(
    dry_run=False,
    memory=tuple(MemoryCase(*row) for row in _GPU_MEMORY),
    speed=(SpeedCase(LLAMA_1B, "full", 2048, 16), SpeedCase(LLAMA_8B, "lora", 2048, 16)),
    auto=(AutoJob(LLAMA_1B, "auto", 2048, 32, 5), AutoJob(LLAMA_3B, "lora", 2048, 32, 5)),
    memory_steps=4, speed_steps=5, auto_steps=4, warmup_steps=1, timeout_seconds=150,
)

# bitsandbytes' CPU 4-bit kernels need output sizes that are multiples of 32
_TINY = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 2048, "hidden_act": "silu"}
TINY_LLAMA = Shape("tiny-llama", "bench/tiny-llama", {"model_type": "llama", **_TINY, "tie_word_embeddings": False})
TINY_QWEN = Shape("tiny-qwen2", "bench/tiny-qwen2", {"model_type": "qwen2", **_TINY, "tie_word_embeddings": True})
# wide enough that full fine-tuning's static part (~90 MB) passes the dry run's 64 MiB budget: the OOM row
WIDE_LLAMA = Shape("wide-llama", "bench/wide-llama", {**TINY_LLAMA.config, "hidden_size": 256,
                                                      "intermediate_size": 704, "vocab_size": 8192})

DRY_SUITE = Suite(
    dry_run=True,
    memory=(MemoryCase(TINY_LLAMA, "full", False, 64, 2), MemoryCase(TINY_QWEN, "lora", True, 64, 4),
            MemoryCase(TINY_LLAMA, "qlora", True, 64, 2), MemoryCase(WIDE_LLAMA, "full", False, 64, 4)),
    speed=(SpeedCase(TINY_LLAMA, "full", 64, 4),),
    auto=(AutoJob(TINY_QWEN, "lora", 64, 8, 2),),
    # 3 steps where tokens/s counts: on a CPU the worker's second step is its memory probe (slower, left out)
    memory_steps=2, speed_steps=3, auto_steps=3, warmup_steps=2, timeout_seconds=180,
)
