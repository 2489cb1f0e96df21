"""The random ground-truth grid: a small random model, a pinned plan, and the worker's measured step.

One case space serves the tests (hypothesis draws from it, seeded) and bench/planner_truth.py
(a seeded `random.Random` draws many more). A case is planned by `make_plan` exactly as a job
is, and measured by `worker.memprobe.measure_step` from the plan's own settings, so the whole
path (profile, plan, settings, the worker's loading and training step) is what is compared.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

METHODS = ("full", "lora", "ia3", "qlora")
NO_SDPA = ("gemma2",)  # transformers refuses SDPA for soft-capped attention
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "gpt2", "gpt_neox", "opt",
            "phi", "falcon", "mixtral", "qwen2_moe", "starcoder2", "olmo2")


@dataclass(frozen=True)
class Case:
    family: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool
    method: str
    lora_dropout: float
    checkpointing: bool
    attention: str
    micro_batch: int
    seq_len: int

    def describe(self) -> str:
        return (f"{self.family} h{self.hidden} L{self.layers} a{self.heads}/{self.kv_heads} i{self.intermediate} "
                f"v{self.vocab}{' tied' if self.tied else ''} {self.method}"
                f"{f'(p={self.lora_dropout:g})' if self.method in ('lora', 'qlora') else ''}"
                f"{' gc' if self.checkpointing else ''} {self.attention} b{self.micro_batch} s{self.seq_len}")


class Chooser:
    """What a case space needs from a source of randomness: a choice and a whole number in a range."""

    def __init__(self, pick: Callable[[Sequence], object], between: Callable[[int, int], int]):
        self.pick, self.between = pick, between

    @classmethod
    def from_random(cls, rng: random.Random) -> Chooser:
        return cls(lambda options: rng.choice(list(options)), rng.randint)


def draw_case(choose: Chooser, families: Sequence[str], methods: Sequence[str] = METHODS,
              max_logit_elements: int = 2**23) -> Case:
    """A random case; the logits (tokens x vocab) are capped so one step stays quick on the CPU."""
    family = choose.pick(families)
    hidden = choose.pick((64, 96, 128, 192, 256, 384, 512))
    heads = choose.pick([a for a in (1, 2, 3, 4, 6, 8) if hidden % a == 0 and (hidden // a) % 16 == 0])
    kv_heads = choose.pick([k for k in (1, 2, 3, 4, 6, 8) if heads % k == 0])
    intermediate = 8 * choose.between(hidden // 8, hidden // 2)
    vocab = choose.pick((1000, 2000, 5000, 12000, 32000, 50000))
    seq_len = choose.pick((64, 128, 256, 512, 1024))
    micro_batch = choose.pick((1, 2, 4, 8))
    while micro_batch * seq_len * vocab > max_logit_elements and micro_batch * seq_len > 64:
        micro_batch, seq_len = (micro_batch // 2, seq_len) if micro_batch > 1 else (micro_batch, seq_len // 2)
    method = choose.pick(methods)
    return Case(family=family, hidden=hidden, layers=choose.between(1, 4), heads=heads, kv_heads=kv_heads,
                intermediate=intermediate, vocab=vocab, tied=bool(choose.pick((True, False))), method=method,
                lora_dropout=choose.pick((0.0, 0.05)) if method in ("lora", "qlora") else 0.0,
                checkpointing=bool(choose.pick((True, False))),
                attention="eager" if family in NO_SDPA else choose.pick(("sdpa", "eager")),
                micro_batch=micro_batch, seq_len=seq_len)


def hf_config(case: Case):
    """The case's model as a transformers config of its family."""
    from tests.planner.configs import random_family_config

    return random_family_config(case.family, hidden=case.hidden, layers=case.layers, heads=case.heads,
                                kv_heads=case.kv_heads, intermediate=case.intermediate, vocab=case.vocab,
                                tied=case.tied, positions=max(1024, case.seq_len))


def save_model(case: Case, folder: Path) -> None:
    """Random weights written by save_pretrained: the worker then loads the model as a user's."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(hf_config(case)).save_pretrained(folder)


# peft has no IA3 default for these families: the case names the modules, as a user would have to
IA3_TARGETS = {"phi3": {"target_modules": ["qkv_proj", "down_proj"], "feedforward_modules": ["down_proj"]},
               "qwen2_moe": {"target_modules": ["k_proj", "v_proj", "o_proj"], "feedforward_modules": ["o_proj"]},
               "starcoder2": {"target_modules": ["k_proj", "v_proj", "c_proj"], "feedforward_modules": ["c_proj"]},
               "olmo2": {"target_modules": ["k_proj", "v_proj", "down_proj"], "feedforward_modules": ["down_proj"]}}


def pinned_spec(case: Case, folder: Path):
    from planner.spec import JobSpec

    return JobSpec(name="truth", model={"path": str(folder)}, dataset={"path": "/data/truth.jsonl"},
                   seq_len=case.seq_len, packing=True, method=case.method, precision="fp32", optimizer="adamw",
                   micro_batch_size=case.micro_batch, gradient_checkpointing=case.checkpointing,
                   attention=case.attention, lora={"r": 8, "dropout": case.lora_dropout},
                   ia3=IA3_TARGETS.get(case.family, {}),
                   training={"max_steps": 2, "effective_batch_size": case.micro_batch})


@dataclass(frozen=True)
class Outcome:
    case: Case
    predicted: int
    measured: int
    predicted_phase: str
    measured_phase: str
    predicted_terms: dict
    measured_phases: dict
    margin: float  # the plan's stated margin for this case, as a share of the estimate

    @property
    def error(self) -> float:
        """Signed: > 0 when the plan predicted more than was measured."""
        return self.predicted / self.measured - 1

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "error": self.error})


def predict_and_measure(case: Case) -> Outcome:
    from planner.catalog import Inventory, cpu_with_memory
    from planner.profile import load_profile
    from planner.tree import make_plan
    from worker.memprobe import measure_step

    with tempfile.TemporaryDirectory() as folder:
        save_model(case, Path(folder))
        plan = make_plan(pinned_spec(case, Path(folder)), load_profile(folder),
                         Inventory.single(cpu_with_memory(64 * 2**30)))
        measured = measure_step(plan)
    memory = plan.memory
    return Outcome(case=case, predicted=memory.total, measured=measured.total, predicted_phase=memory.phase,
                   measured_phase=measured.peak_phase, predicted_terms=memory.terms(),
                   measured_phases=measured.phases, margin=memory.margin / memory.total)
