"""objective throughput (a smaller memory share for at most 10 % of the job's tokens/s, said in numbers);
a pinned sharding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import InfeasibleError
from planner.rules import THROUGHPUT_COST
from tests.planner.test_decisions import MODELS, plan


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(sorted(MODELS)), gpu=st.sampled_from(["A10G", "L4", "A100-80GB", "H100-80GB", "H200"]),
       method=st.sampled_from(["auto", "lora", "full"]), seq_len=st.sampled_from([256, 512, 1024, 2048]))
def test_throughput_never_costs_more_than_its_share_and_never_holds_more(model, gpu, method, seq_len):
    try:
        fastest = plan(model, gpu, method=method, seq_len=seq_len)
    except InfeasibleError:
        return
    shared = plan(model, gpu, method=method, seq_len=seq_len, objective="throughput")
    assert shared.settings.micro_batch_size <= fastest.settings.micro_batch_size
    assert shared.memory.budgeted <= fastest.memory.budgeted
    assert shared.throughput.tokens_per_second >= fastest.throughput.tokens_per_second * (1 - THROUGHPUT_COST)
    effective = [p.settings.micro_batch_size * p.settings.gradient_accumulation_steps for p in (fastest, shared)]
    assert effective[0] == effective[1]
    if shared.settings.micro_batch_size != fastest.settings.micro_batch_size:
        reason = next(d.reason for d in shared.decisions if d.setting == "micro_batch_size")
        assert f"objective throughput takes {shared.settings.micro_batch_size}" in reason


def test_a_math_bound_job_gives_up_its_largest_micro_batch_for_room():
    fastest = plan("1B", "H100-80GB", method="lora", seq_len=512)
    shared = plan("1B", "H100-80GB", method="lora", seq_len=512, objective="throughput")
    assert shared.settings.micro_batch_size < fastest.settings.micro_batch_size
    assert shared.memory.budgeted < fastest.memory.budgeted


def test_a_pinned_sharding_is_kept_and_must_match_the_gpu_count():
    import pytest

    from planner.errors import SpecError

    sharded = plan("7B", "A100-80GB", gpus=2, method="lora", sharding="fsdp")
    assert sharded.settings.sharding == "fsdp"
    assert next(d for d in sharded.decisions if d.setting == "sharding").pinned
    assert plan("7B", "A100-80GB", gpus=2, method="lora", sharding="ddp").settings.sharding == "ddp"
    with pytest.raises(SpecError, match=r"sharding = 'fsdp'.*resources.gpus: 2 or more"):
        plan("7B", "A100-80GB", gpus=1, method="lora", sharding="fsdp")
    with pytest.raises(SpecError, match=r"sharding = 'none'.*resources.gpus: 1"):
        plan("7B", "A100-80GB", gpus=2, method="lora", sharding="none")


def queued_plan(model, gpu, queue, **fields):
    from planner import Inventory, load_profile, make_plan, parse_gpu_name, parse_job
    from tests.planner.test_decisions import BASE, MODELS

    spec = parse_job({**BASE, "model": MODELS[model], **fields})
    return make_plan(spec, load_profile(spec.model.path), Inventory.single(parse_gpu_name(gpu)), queue=queue)


@settings(max_examples=40, deadline=None)
@given(waiting=st.integers(1, 500), free=st.integers(0, 500), model=st.sampled_from(["1B", "7B"]),
       pinned=st.sampled_from([None, "fastest", "throughput", "least_memory"]))
def test_auto_is_throughput_exactly_while_more_jobs_wait_than_gpus_are_free(waiting, free, model, pinned):
    from planner import Queue

    fields = {"method": "lora", "seq_len": 512, **({"objective": pinned} if pinned else {})}
    made = queued_plan(model, "H100-80GB", Queue(waiting, free), **fields)
    decision = next(d for d in made.decisions if d.setting == "objective")
    expected = pinned or ("throughput" if waiting > free else "fastest")
    assert made.settings.objective == decision.choice == expected
    assert decision.pinned == (pinned is not None)
    if pinned is None and waiting > free:  # the reason rests on the queue's numbers
        assert decision.numbers == {"jobs_waiting": waiting, "free_gpus": free}
        assert f"{waiting} jobs wait for {free} free GPUs" in decision.reason
    alone = queued_plan(model, "H100-80GB", None, **fields)  # effft plan / effft run: no queue known
    assert alone.settings.objective == (pinned or "fastest")


def test_a_busy_queue_gives_a_job_the_plan_it_would_get_asking_for_throughput():
    from planner import Queue

    busy = queued_plan("1B", "H100-80GB", Queue(waiting=6, free_gpus=1), method="lora", seq_len=512)
    asked = plan("1B", "H100-80GB", method="lora", seq_len=512, objective="throughput")
    assert busy.settings.micro_batch_size == asked.settings.micro_batch_size
    assert busy.memory.budgeted == asked.memory.budgeted < plan("1B", "H100-80GB", method="lora",
                                                                 seq_len=512).memory.budgeted
