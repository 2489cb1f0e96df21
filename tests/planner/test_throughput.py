"""planner/throughput.py as properties over wide ranges of models, devices and shapes: what a roofline model
of one training step must satisfy whatever its constants."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from planner.adapters import lora_plan
from planner.catalog import CATALOG
from planner.families import arch_from_config
from planner.known_models import KNOWN_CONFIGS
from planner.layer_walk import estimate_activations
from planner.setup import RunSetup
from planner.throughput import CPU_MATMUL_EFFICIENCY, MATMUL_EFFICIENCY, Throughput, estimate_throughput
from tests.planner.hub_configs import HUB_CONFIGS

CONFIGS = {**KNOWN_CONFIGS, **{name: config for name, (config, _) in HUB_CONFIGS.items()}}  # dense, MoE, Falcon...
ARCHS = {name: arch_from_config(config) for name, config in CONFIGS.items()}
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)


@st.composite
def runs(draw, max_seq_len: int = 32768) -> RunSetup:
    arch = ARCHS[draw(st.sampled_from(sorted(ARCHS)))]
    device = CATALOG[draw(st.sampled_from(sorted(CATALOG)))]
    method = draw(st.sampled_from(["full", "lora", "qlora"]))
    adapter = None if method == "full" else lora_plan(arch, draw(st.sampled_from([1, 8, 64, 256])), 0.0, "all-linear")
    if device.is_cpu:
        precision, recipe = "fp32", "fp32"
    else:
        precision = "bf16" if device.bf16 else "fp16"
        recipe = draw(st.sampled_from(["amp", "pure"]))
    gpus, sharding = draw(st.sampled_from([(1, "none"), (2, "ddp"), (8, "ddp"), (2, "fsdp"), (8, "fsdp")]))
    return RunSetup(arch=arch, device=device, method=method, adapter=adapter, precision=precision, recipe=recipe,
                    optimizer="adamw", micro_batch=draw(st.integers(1, 64)),
                    seq_len=draw(st.integers(16, max_seq_len)), attention=draw(st.sampled_from(["sdpa", "eager"])),
                    gradient_checkpointing=draw(st.booleans()), grad_accum=draw(st.integers(1, 64)),
                    sharding=sharding, gpus=gpus)


def throughput(run: RunSetup) -> Throughput:
    """As the decision tree asks it: with the activations the planner estimates for the run."""
    return estimate_throughput(run, estimate_activations(run.activation_setup()).saved(run.gradient_checkpointing))


def scaled(run: RunSetup, flops: float = 1.0, bandwidth: float = 1.0, interconnect: float = 1.0) -> RunSetup:
    d = run.device
    return run.with_(device=replace(d, bf16_flops=d.bf16_flops * flops, fp16_flops=d.fp16_flops * flops,
                                    fp32_flops=d.fp32_flops * flops, bandwidth=d.bandwidth * bandwidth,
                                    interconnect=d.interconnect * interconnect))


@PROPERTY
@given(runs())
def test_mfu_is_a_share_of_the_peak_no_larger_than_the_matmul_efficiency(run):
    t = throughput(run)
    efficiency = CPU_MATMUL_EFFICIENCY if run.device.is_cpu else MATMUL_EFFICIENCY
    assert 0 < t.mfu <= efficiency <= 1
    assert t.tokens_per_second > 0 and t.samples_per_second == pytest.approx(t.tokens_per_second / run.seq_len)


@PROPERTY
@given(runs(max_seq_len=8192), st.integers(2, 8))
def test_tokens_per_second_falls_as_sequences_grow_at_fixed_tokens(run, factor):
    # the same tokens per micro-batch in fewer, longer sequences: attention's FLOPs (and eager's s^2
    # scores) grow with s, nothing shrinks
    short = run.with_(micro_batch=run.micro_batch * factor)
    long = run.with_(seq_len=run.seq_len * factor)
    assert short.tokens == long.tokens
    t_short, t_long = throughput(short), throughput(long)
    assert t_long.tokens_per_second <= t_short.tokens_per_second
    if t_long.bound == "math":
        assert t_long.tokens_per_second < t_short.tokens_per_second


@PROPERTY
@given(runs())
def test_a_larger_micro_batch_never_lowers_tokens_per_second_at_a_fixed_batch(run):
    # per token, max(T_math, T_mem) + latency only shrinks as the weight traffic and the launches amortise
    per_gpu = run.micro_batch * run.grad_accum
    sizes = [m for m in range(1, per_gpu + 1) if per_gpu % m == 0]
    speeds = [throughput(run.with_(micro_batch=m, grad_accum=per_gpu // m)).tokens_per_second for m in sizes]
    assert all(b >= a * (1 - 1e-12) for a, b in itertools.pairwise(speeds)), list(zip(sizes, speeds, strict=True))


@PROPERTY
@given(runs())
def test_memory_bound_turns_math_bound_once_as_the_micro_batch_grows(run):
    bounds = [throughput(run.with_(micro_batch=m)).bound for m in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)]
    assert bounds == sorted(bounds, key=lambda b: b == "math"), bounds  # memory ... memory, math ... math


def test_the_switch_happens_for_a_7b_lora_on_an_h100():
    run = RunSetup(arch=ARCHS["meta-llama/Llama-2-7b-hf"], device=CATALOG["H100-80GB"], method="lora",
                   adapter=lora_plan(ARCHS["meta-llama/Llama-2-7b-hf"], 16, 0.0, "all-linear"), precision="bf16",
                   recipe="amp", optimizer="adamw", micro_batch=1, seq_len=64, attention="sdpa",
                   gradient_checkpointing=False)
    assert throughput(run).bound == "memory"  # 64 tokens cannot amortise reading 13 GB of weights
    assert throughput(run.with_(micro_batch=64)).bound == "math"


@PROPERTY
@given(runs())
def test_the_bound_side_alone_sets_the_micro_batch_time(run):
    # memory-bound: twice the FLOP/s changes nothing; math-bound: twice the bandwidth changes nothing,
    # while the bound side's resource, doubled, makes the micro-batch faster
    t = throughput(run)
    if t.bound == "memory":
        assert throughput(scaled(run, flops=2)).micro_batch_seconds == pytest.approx(t.micro_batch_seconds)
        assert throughput(scaled(run, bandwidth=2)).micro_batch_seconds < t.micro_batch_seconds
    else:
        assert throughput(scaled(run, bandwidth=2)).micro_batch_seconds == pytest.approx(t.micro_batch_seconds)
        assert throughput(scaled(run, flops=2)).micro_batch_seconds < t.micro_batch_seconds


@PROPERTY
@given(runs(), st.sampled_from([(2, 1, 1), (1, 2, 1), (1, 1, 2)]))
def test_a_faster_device_is_never_slower(run, factors):
    assert throughput(scaled(run, *factors)).tokens_per_second >= throughput(run).tokens_per_second


@PROPERTY
@given(runs())
def test_ddp_syncs_once_a_step_and_fsdp_every_micro_batch(run):
    assume(run.sharding != "none")
    once, many = throughput(run.with_(grad_accum=1)), throughput(run.with_(grad_accum=4))
    if run.sharding == "ddp":  # one all-reduce per optimizer step, however many micro-batches
        assert many.comm_seconds == pytest.approx(once.comm_seconds)
    else:  # gathers and reduce-scatters in every micro-batch
        assert many.comm_seconds == pytest.approx(4 * once.comm_seconds)
    assert throughput(run.with_(gpus=1, sharding="none")).comm_seconds == 0


@PROPERTY
@given(runs())
def test_checkpointing_adds_one_forward_of_hardware_flops_and_no_model_flops(run):
    without = throughput(run.with_(gradient_checkpointing=False))
    with_ = throughput(run.with_(gradient_checkpointing=True))
    assert with_.model_flops_per_token == without.model_flops_per_token  # MFU does not count the recompute
    assert without.hardware_flops_per_token == without.model_flops_per_token
    forward = with_.hardware_flops_per_token - with_.model_flops_per_token
    assert 0 < forward < with_.model_flops_per_token / 2  # a forward is a third (full) to a half (adapters)


@PROPERTY
@given(runs())
def test_flops_per_token_are_6n_for_full_and_4n_for_adapters_plus_attention(run):
    # README ("Throughput"): ~6N full, ~4N with adapters (input gradients only, plus the adapters' 6 each);
    # attention: QK^T and PV, 4 L a d s forward, backward twice that
    arch = run.arch
    n = arch.active_linear_params + arch.vocab * arch.embed_dim
    attention = 4 * arch.layers * arch.heads * arch.head_dim * run.seq_len
    model = throughput(run).model_flops_per_token
    if run.method == "full":
        assert model == pytest.approx(6 * n + 3 * attention)
    else:
        assert model == pytest.approx(4 * n + 3 * attention + 6 * run.adapter.trainable_params)
