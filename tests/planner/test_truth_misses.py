"""The cases the random grid once missed, pinned: each names the effect that was not modeled.

The property test draws new shapes; these keep the shapes that exposed a gap, so a change that
drops one of the rules fails here by name (measured through the worker's own step, as the grid).
"""

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from tests.planner.truth_grid import Case, predict_and_measure  # noqa: E402

UNDER, WORST = 0.03, 0.08


def _case(**knobs) -> Case:
    base = dict(heads=4, kv_heads=4, tied=False, lora_dropout=0.0, micro_batch=1)
    return Case(**{**base, **knobs})


MISSES = {
    # the model's loop holds the previous layer's returned probabilities through the next layer's
    # forward, whose eager softmax reads the unmasked and masked scores: the forward peaks (was -16.5 %)
    "falcon returns its attention probabilities": _case(
        family="falcon", hidden=384, layers=4, heads=8, kv_heads=2, intermediate=384, vocab=1000, method="lora",
        checkpointing=True, attention="eager", seq_len=512),
    # SDPA's math kernel (CPU, attention dropout) scales q and k into new tensors and keeps a
    # single head's v as a view of the fused qkv (was -4.0 %)
    "gpt2's math kernel keeps the fused qkv": _case(
        family="gpt2", hidden=384, layers=2, heads=1, kv_heads=1, intermediate=912, vocab=1000, tied=True,
        method="full", checkpointing=False, attention="sdpa", seq_len=1024),
    # a tied lm_head's gradient waits in autograd's input buffer from the first op of backward (was -4.1 %)
    "a tied head's gradient is made first": _case(
        family="gpt_neox", hidden=128, layers=4, intermediate=312, vocab=2000, tied=True, method="full",
        checkpointing=True, attention="eager", seq_len=512),
    # eager attention's mask lives through the model's forward, saved by nothing (was -8.5 %)
    "the eager mask lives through forward": _case(
        family="falcon", hidden=128, layers=1, heads=2, kv_heads=1, intermediate=240, vocab=1000, method="full",
        checkpointing=False, attention="eager", seq_len=1024),
    # Gemma2 builds a full and a sliding-window mask, and checkpointing keeps both (was -4.8 %)
    "gemma2 materializes two masks": _case(
        family="gemma2", hidden=64, layers=4, heads=1, kv_heads=1, intermediate=232, vocab=1000, tied=True,
        method="full", checkpointing=True, attention="eager", micro_batch=8, seq_len=256),
    # a 4-bit Linear's input gradient and the adapter's are summed out of place (was -7.9 %)
    "qlora sums the input gradients out of place": _case(
        family="starcoder2", hidden=512, layers=1, kv_heads=2, intermediate=1216, vocab=1000, tied=True,
        method="qlora", checkpointing=True, attention="sdpa", micro_batch=4, seq_len=1024),
}


@pytest.mark.parametrize("name", sorted(MISSES))
def test_a_once_missed_case_is_within_bounds(name):
    outcome = predict_and_measure(MISSES[name])
    detail = f"{name}: predicted {outcome.predicted}, measured {outcome.measured} ({outcome.predicted_phase})"
    assert -UNDER <= outcome.error <= WORST, detail
