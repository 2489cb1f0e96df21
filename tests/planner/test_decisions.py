"""The decision tree, as a table of situations and the plan a careful engineer would choose."""

import pytest
import yaml

from planner.calibration import EMPTY
from planner.catalog import Inventory, parse_gpu_name
from planner.errors import InfeasibleError, SpecError
from planner.profile import load_profile
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


def test_micro_batch_grows_only_while_throughput_rises():
    result = plan("1B", "H100-80GB", seq_len=512)
    batch = [d for d in result.decisions if d.setting == "micro_batch_size"][0]
    assert "tokens/s" in batch.reason


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
    data = plan("7B", "A10G", seq_len=1024).to_dict()
    for key in ("weights", "gradients", "optimizer", "activations", "logits", "overhead", "total"):
        assert isinstance(data["memory"][key], int)
    assert data["memory"]["total"] == sum(data["memory"][k] for k in
                                          ("weights", "gradients", "optimizer", "activations", "logits", "overhead"))
    spec_fields = set(parse_job({**BASE, "model": MODELS["7B"]}).model_dump())
    assert spec_fields | {"sharding", "gradient_accumulation_steps"} <= set(data["settings"])
    assert data["decisions"] and yaml.safe_dump(data)
