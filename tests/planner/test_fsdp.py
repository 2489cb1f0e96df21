"""FSDP's per-rank memory (planner/fsdp.py) on real architectures: what every rank holds beyond its 1/N shares.
The measured side is tests/worker/test_fsdp_memory.py (2 CPU ranks, several shapes)."""

import pytest

from planner.adapters import lora_plan
from planner.catalog import CATALOG
from planner.families import arch_from_config
from planner.fsdp import units
from planner.known_models import KNOWN_CONFIGS
from planner.memory import estimate_memory, step_phases, weight_bytes
from planner.setup import RunSetup

MODELS = ["meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.2-1B"]  # 1B ties


def _run(name: str, method: str, gpus: int, sharding: str = "fsdp", checkpointing: bool = True) -> RunSetup:
    arch = arch_from_config(KNOWN_CONFIGS[name])
    adapter = lora_plan(arch, 16, 0.0, "all-linear") if method == "lora" else None
    return RunSetup(arch=arch, device=CATALOG["H100-80GB"], method=method, adapter=adapter, precision="bf16",
                    recipe="amp", optimizer="adamw", micro_batch=1, seq_len=2048, attention="sdpa",
                    gradient_checkpointing=checkpointing, sharding=sharding, gpus=gpus)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", ["full", "lora"])
def test_every_backward_phase_holds_a_whole_layer_beyond_the_shards(name, method):
    run = _run(name, method, 8)
    memory = estimate_memory(run)
    layer = units(run).layer
    assert layer > 0
    shards = weight_bytes(run)
    assert shards == pytest.approx(weight_bytes(run.with_(sharding="ddp", gpus=1)) / 8, abs=8)
    # in every layer's backward that layer is gathered whole and the next one's all-gather is issued
    layer_phases = {name: terms for name, terms in step_phases(run).items() if name.endswith("_layer")
                    and name.startswith("backward_")}
    assert len(layer_phases) == 4
    for terms in layer_phases.values():
        assert terms["weights"] >= shards + layer + min(layer, units(run).embed or units(run).tail)
    assert memory.weights >= shards


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", ["full", "lora"])
def test_more_ranks_hold_less_each_and_fsdp_less_than_a_replica(name, method):
    totals = [estimate_memory(_run(name, method, gpus)).total for gpus in (2, 4, 8)]
    assert totals[0] > totals[1] > totals[2]
    replica = estimate_memory(_run(name, method, 8, sharding="ddp")).total
    assert totals[2] < replica


def test_a_tied_embedding_is_gathered_with_the_lm_head_all_step():
    run = _run("meta-llama/Llama-3.2-1B", "full", 8)
    assert run.arch.tied_embeddings
    u = units(run)
    assert u.embed == 0 and u.tail >= run.arch.vocab * run.arch.embed_dim * 4  # the fp32 embedding, whole
    untied = _run("meta-llama/Llama-2-7b-hf", "full", 8)
    assert units(untied).embed == untied.arch.vocab * untied.arch.embed_dim * 4
    # the tied tail is held through the layers' backward; the untied lm_head is not
    tied_phases = estimate_memory(run).phases
    assert tied_phases["backward_first_layer"] - tied_phases["optimizer_step"] >= u.tail + u.layer


def test_more_layers_check_the_layers_between():
    """With three layers or more the next to last and the second layer's backward are phases of their own."""
    phases = estimate_memory(_run("meta-llama/Llama-2-7b-hf", "lora", 8)).phases
    assert {"backward_last_layer", "backward_next_to_last_layer", "backward_second_layer",
            "backward_first_layer"} <= set(phases)
