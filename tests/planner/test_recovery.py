"""Re-planning after out-of-memory, over wide ranges: the training is kept, and each re-plan is lighter and fits."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.calibration import EMPTY
from planner.catalog import Inventory, parse_gpu_name
from planner.errors import InfeasibleError
from planner.profile import load_profile
from planner.recovery import MemoryEvidence, replan
from planner.spec import parse_job
from planner.tree import make_plan
from tests.planner.test_decisions import BASE, MODELS

SAME_TRAINING = ("seq_len", "packing", "precision", "precision_recipe", "attention", "training", "sharding")


def evidence_for(plan, ratio: float, step: int) -> MemoryEvidence:
    """An OOM `ratio` x the prediction into a step: what was in use plus the refused allocation."""
    needed = int(plan.memory.total * ratio)
    return MemoryEvidence(kind="oom", step=step, phase="backward", in_use_bytes=needed - needed // 10,
                          requested_bytes=needed // 10, limit_bytes=plan.memory.budget, peak_bytes=needed // 2,
                          predicted_bytes=plan.memory.total, device="cuda")


def lightness(plan) -> tuple:
    s = plan.settings
    return (s.micro_batch_size, not s.gradient_checkpointing, s.optimizer == "adamw", s.method != "qlora")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(sorted(MODELS)), gpu=st.sampled_from(["A10G", "L4", "A100-80GB", "H100-80GB"]),
       method=st.sampled_from(["auto", "lora", "full"]), seq_len=st.sampled_from([256, 512, 1024, 2048, 4096]),
       effective=st.sampled_from([8, 16, 32, 64]), ratio=st.floats(1.01, 4.0), step=st.integers(1, 500))
def test_a_replan_keeps_the_training_and_is_lighter_and_fits(model, gpu, method, seq_len, effective, ratio, step):
    spec = parse_job({**BASE, "model": MODELS[model], "method": method, "seq_len": seq_len,
                      "training": {**BASE["training"], "effective_batch_size": effective}})
    profile, inventory = load_profile(spec.model.path), Inventory.single(parse_gpu_name(gpu), 1)
    try:
        first = make_plan(spec, profile, inventory, calibration=EMPTY)
    except InfeasibleError:
        return
    evidence = evidence_for(first, ratio, step)
    try:
        result = replan(spec, profile, inventory, first, evidence, EMPTY)
    except InfeasibleError as error:
        assert f"out of memory at step {step}" in str(error)  # a refusal names the evidence
        return
    new = result.plan
    for field in SAME_TRAINING:
        assert getattr(new.settings, field) == getattr(first.settings, field), field
    assert (new.gpu, new.gpus) == (first.gpu, first.gpus)
    # what the device gave, when it refused below the budget
    assert new.memory.budget == min(first.memory.budget, evidence.needed_bytes)
    effective_of = [p.settings.micro_batch_size * p.settings.gradient_accumulation_steps for p in (first, new)]
    assert effective_of == [effective, effective]
    # lighter in every setting that moved, never heavier in one
    assert new.settings.micro_batch_size <= first.settings.micro_batch_size
    assert new.settings.gradient_checkpointing >= first.settings.gradient_checkpointing
    assert lightness(new) != lightness(first)
    if method != "auto":
        assert new.settings.method == first.settings.method
    # it fits with the evidence counted: the failed settings' factor is applied to the new estimate
    assert result.memory_factor >= evidence.needed_bytes / (first.memory.total / first.memory.calibration) * 0.999
    assert new.memory.budgeted <= new.memory.budget
    assert f"effective batch {effective} unchanged" in result.describe()
    assert new.decisions[-1].setting == "re-plan" and f"step {step}" in new.decisions[-1].reason


def test_the_ladder_halves_the_micro_batch_before_it_turns_checkpointing_on():
    spec = parse_job({**BASE, "model": MODELS["1B"], "method": "lora", "seq_len": 1024})
    profile, inventory = load_profile(spec.model.path), Inventory.single(parse_gpu_name("A100-80GB"), 1)
    first = make_plan(spec, profile, inventory)
    assert first.settings.micro_batch_size >= 2 and not first.settings.gradient_checkpointing
    ratio = first.memory.budget / first.memory.total * 1.05  # a real OOM: what it needed is over the budget
    new = replan(spec, profile, inventory, first, evidence_for(first, ratio, 37), EMPTY).plan
    assert new.settings.micro_batch_size < first.settings.micro_batch_size and not new.settings.gradient_checkpointing
    assert new.settings.method == "lora" and new.settings.optimizer == "adamw"


def test_a_lighter_method_never_buys_a_larger_micro_batch():
    # LoRA at micro-batch 1 on an L4 runs out; QLoRA frees room the tree would spend on micro-batch 2
    spec = parse_job({**BASE, "model": MODELS["7B"], "method": "auto", "seq_len": 512})
    profile, inventory = load_profile(spec.model.path), Inventory.single(parse_gpu_name("L4"), 1)
    first = make_plan(spec, profile, inventory)
    assert (first.settings.method, first.settings.micro_batch_size) == ("lora", 1)
    ratio = first.memory.budget / first.memory.total * 2.0
    new = replan(spec, profile, inventory, first, evidence_for(first, ratio, 5), EMPTY).plan
    assert new.settings.method == "qlora" and new.settings.micro_batch_size == 1
