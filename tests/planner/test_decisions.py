"""The decision tree, as a table of situations and the plan a careful engineer would choose."""

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.calibration import EMPTY
from planner.catalog import Inventory, parse_gpu_name
from planner.errors import InfeasibleError, SpecError
from planner.plan import load_plan
from planner.profile import load_profile
from planner.rules import MIN_THROUGHPUT_GAIN
from planner.spec import parse_job
from planner.tree import make_plan

BASE = {"name": "t", "dataset": {"path": "data.jsonl"}, "training": {"max_steps": 100, "effective_batch_size": 16}}
MODELS = {"1B": "meta-llama/Llama-3.2-1B", "7B": "meta-llama/Llama-2-7b-hf", "13B": "meta-llama/Llama-2-13b-hf",
          "70B": "meta-llama/Llama-2-70b-hf"}


def plan(model, gpu, gpus=1, calibration=EMPTY, **fields):
    spec = parse_job({**BASE, "model": MODELS[model], **fields})
    return make_plan(spec, load_profile(spec.model.path), Inventory.single(parse_gpu_name(gpu), gpus),
                     calibration=calibration)


CASES = [
    # model, gpu, gpus, fields, expected settings
    ("13B", "RTX4090", 1, {"seq_len": 1024}, {"method": "qlora"}),
    ("7B", "RTX4090", 1, {"seq_len": 2048}, {"method": "lora", "precision": "bf16", "gradient_checkpointing": True}),
    ("1B", "A100-80GB", 1, {"seq_len": 2048}, {"method": "full", "precision": "bf16"}),
    ("70B", "H100-80GB", 8, {"seq_len": 2048}, {"method": "lora", "sharding": "fsdp"}),
    ("7B", "T4", 1, {"seq_len": 512}, {"precision": "fp16", "precision_recipe": "amp"}),
    ("7B", "H100-80GB", 4, {"seq_len": 2048}, {"method": "lora", "sharding": "ddp"}),
]


@pytest.mark.parametrize(("model", "gpu", "gpus", "fields", "expected"), CASES)
def test_decision_table(model, gpu, gpus, fields, expected):
    result = plan(model, gpu, gpus, **fields)
    for key, value in expected.items():
        assert getattr(result.settings, key) == value, (key, result.decisions)
    assert result.memory.total <= result.memory.budget
    assert all(d.reason for d in result.decisions)


def test_13b_on_24gb_says_why_lora_does_not_fit():
    result = plan("13B", "RTX4090", seq_len=1024)
    refused = [d for d in result.decisions if d.choice == "not lora"]
    assert refused and refused[0].numbers["needed_bytes"] > refused[0].numbers["budget_bytes"]
    assert "weights 26" in refused[0].reason


def test_never_quantizes_to_grow_the_batch():
    # 7B LoRA fits at micro-batch 1 on 24 GB; QLoRA would allow a larger batch, but must not be chosen
    result = plan("7B", "RTX4090", seq_len=512)
    assert result.settings.method == "lora"
    assert result.settings.micro_batch_size * result.settings.gradient_accumulation_steps == 16


def test_gradient_accumulation_makes_up_the_effective_batch_exactly():
    for gpu, gpus in (("A100-80GB", 1), ("H100-80GB", 4)):
        s = plan("1B", gpu, gpus, seq_len=1024).settings
        data_parallel = gpus if s.sharding != "none" else 1
        assert s.micro_batch_size * s.gradient_accumulation_steps * data_parallel == 16


def predicted_tokens_per_second(model, gpu, gpus, seq_len, effective, micro_batch) -> float | None:
    """The planner's tokens/s with the micro-batch pinned (every other choice is made at micro-batch 1,
    so it stays what the auto plan chose); None when that micro-batch does not fit."""
    try:
        pinned = plan(model, gpu, gpus, seq_len=seq_len, micro_batch_size=micro_batch,
                      training={"max_steps": 100, "effective_batch_size": effective})
    except InfeasibleError:
        return None
    return pinned.throughput.tokens_per_second


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(model=st.sampled_from(["1B", "7B"]), gpu=st.sampled_from(["RTX4090", "L40S", "A100-80GB", "H100-80GB", "H200"]),
       gpus=st.sampled_from([1, 2, 4]), seq_len=st.sampled_from([64, 128, 256, 512, 1024, 2048, 4096]),
       effective=st.sampled_from([16, 32, 64, 128]))
def test_micro_batch_grows_only_while_predicted_tokens_per_second_rises_by_the_minimum_gain(model, gpu, gpus, seq_len,
                                                                                         effective):
    try:
        auto = plan(model, gpu, gpus, seq_len=seq_len, training={"max_steps": 100, "effective_batch_size": effective})
    except InfeasibleError:
        return
    chosen = auto.settings.micro_batch_size
    decision = next(d for d in auto.decisions if d.setting == "micro_batch_size")
    assert decision.numbers["tokens_per_second"] == pytest.approx(auto.throughput.tokens_per_second, rel=1e-12)
    per_gpu = effective // (gpus if auto.settings.sharding != "none" else 1)
    divisors = [m for m in range(1, per_gpu + 1) if per_gpu % m == 0]
    tps = {}
    for m in divisors[:divisors.index(chosen) + 2]:  # every size taken, and the first one refused
        tps[m] = predicted_tokens_per_second(model, gpu, gpus, seq_len, effective, m)
    taken = divisors[:divisors.index(chosen) + 1]
    for smaller, larger in itertools.pairwise(taken):  # each step up gained at least MIN_THROUGHPUT_GAIN
        assert tps[larger] >= tps[smaller] * (1 + MIN_THROUGHPUT_GAIN), (smaller, larger, tps)
    if chosen != divisors[-1]:  # the next size did not fit, or did not gain enough
        refused = divisors[divisors.index(chosen) + 1]
        assert tps[refused] is None or tps[refused] < tps[chosen] * (1 + MIN_THROUGHPUT_GAIN), (refused, tps)


def test_the_micro_batch_does_grow_where_throughput_rises():
    # the property above is not vacuous: a small model with short sequences on a large GPU grows its micro-batch
    result = plan("1B", "H100-80GB", seq_len=512)
    assert result.settings.micro_batch_size > 1


def test_pins_are_respected():
    result = plan("7B", "A100-80GB", seq_len=1024, method="qlora", micro_batch_size=2, gradient_checkpointing=False,
                  attention="eager", optimizer="adamw_8bit")
    s = result.settings
    assert (s.method, s.micro_batch_size, s.gradient_checkpointing, s.attention, s.optimizer) == \
        ("qlora", 2, False, "eager", "adamw_8bit")


def test_pinned_micro_batch_that_cannot_fit_is_a_clear_error():
    with pytest.raises(InfeasibleError) as caught:
        plan("7B", "RTX4090", seq_len=4096, method="lora", micro_batch_size=16, gradient_checkpointing=False,
             training={"max_steps": 10, "effective_batch_size": 16})
    message = str(caught.value)
    assert "GB" in message and "micro-batch 16" in message and "micro_batch_size=16" in message


def test_model_that_cannot_fit_names_the_numbers():
    with pytest.raises(InfeasibleError) as caught:
        plan("70B", "T4", seq_len=2048, method="lora")
    message = str(caught.value)
    assert "needs" in message and "GB" in message and "T4" in message and "QLoRA" in message


def test_pinned_micro_batch_must_divide_the_batch():
    with pytest.raises(SpecError, match="micro_batch_size"):
        plan("1B", "A100-80GB", seq_len=512, micro_batch_size=3)


@pytest.mark.parametrize("model", ["1B", "7B", "13B"])
def test_more_memory_never_gives_a_more_memory_saving_plan(model):
    order = {"full": 0, "lora": 1, "qlora": 2}
    ranks = []
    for gpu in ("T4", "RTX4090", "L40S", "A100-80GB", "H200"):
        try:
            s = plan(model, gpu, seq_len=1024).settings
        except InfeasibleError:
            ranks.append((9, 9))
            continue
        ranks.append((order[s.method], int(s.gradient_checkpointing)))
    assert ranks == sorted(ranks, reverse=True)


def test_plan_json_shape():
    original = plan("7B", "A10G", seq_len=1024)
    data = original.to_dict()
    for key in ("weights", "gradients", "optimizer", "activations", "logits", "overhead", "total"):
        assert isinstance(data["memory"][key], int)
    assert data["memory"]["total"] == sum(data["memory"][k] for k in
                                          ("weights", "gradients", "optimizer", "activations", "logits", "overhead"))
    spec_fields = set(parse_job({**BASE, "model": MODELS["7B"]}).model_dump())
    assert spec_fields | {"sharding", "gradient_accumulation_steps"} <= set(data["settings"])
    assert data["decisions"]
    # strict JSON (no NaN or Infinity) that reads back as the same Plan
    assert load_plan(json.loads(json.dumps(data, allow_nan=False))) == original


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(model=st.sampled_from(sorted(MODELS)), gpu=st.sampled_from(["T4", "A10G", "RTX4090", "L40S", "A100-40GB"]),
       gpus=st.sampled_from([1, 2]), seq_len=st.sampled_from([256, 512, 1024, 2048, 4096]),
       effective=st.sampled_from([1, 4, 16, 64]))
def test_a_plan_the_static_step_admits_fits_with_the_accumulation_it_gets(model, gpu, gpus, seq_len, effective):
    # step 1 picks the method at micro-batch 1 for the gradient accumulation the effective batch will need (its
    # earlier micro-batches' gradients stay through the step): it never hands on a run that then does not fit
    try:
        result = plan(model, gpu, gpus, seq_len=seq_len, training={"max_steps": 10, "effective_batch_size": effective})
    except InfeasibleError as error:
        assert "pinned" not in str(error), str(error)  # nothing was pinned
        return
    except SpecError:  # an effective batch the data-parallel GPUs cannot split
        return
    assert result.memory.budgeted <= result.memory.budget
