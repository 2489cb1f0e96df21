"""`effft plan --gpu cpu` against one real training step on this CPU, measured by MemTracker.

Tiny random Llama, Qwen2 and GPT-2 models; forward, backward, fused AdamW step, zero_grad. The
planner's total must be within 3 % of the measured peak, and each category close.

Known gap (kept visible by the second test): with gradient checkpointing, or eager attention,
the peak can fall inside a layer's backward, where the model estimates the live gradients of one
layer coarsely; there the error reaches about 10 %.
"""

import itertools

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from planner.adapters import ia3_plan, lora_plan  # noqa: E402
from planner.catalog import cpu_with_memory  # noqa: E402
from planner.memory import estimate_memory  # noqa: E402
from planner.profile import load_profile  # noqa: E402
from planner.setup import RunSetup  # noqa: E402
from tests.planner.memtrack import build_model, measure_step_peak  # noqa: E402

VOCAB = 1000


def _config(kind):
    small = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                 num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024)
    if kind == "llama":
        return transformers.LlamaConfig(**small)
    if kind == "qwen2":
        return transformers.Qwen2Config(**small)
    return transformers.GPT2Config(vocab_size=VOCAB, n_embd=128, n_layer=2, n_head=8, n_positions=1024)


def _predict_and_measure(tmp_path, kind, attention, method, gc, micro_batch, seq_len):
    _config(kind).save_pretrained(tmp_path)
    arch = load_profile(str(tmp_path)).arch
    adapter = {"lora": lambda: lora_plan(arch, 8, 0.05, "all-linear"), "ia3": lambda: ia3_plan(arch, "auto", "auto"),
               "full": lambda: None}[method]()
    run = RunSetup(arch=arch, device=cpu_with_memory(24 * 2**30), method=method, adapter=adapter, precision="fp32",
                   recipe="fp32", optimizer="adamw", micro_batch=micro_batch, seq_len=seq_len, attention=attention,
                   gradient_checkpointing=gc)
    predicted = estimate_memory(run)
    measured = measure_step_peak(build_model(tmp_path, method, attention, gc, lora_r=8, lora_dropout=0.05),
                                 micro_batch, seq_len, VOCAB)
    return predicted, measured


TIGHT = [(k, a, m, False, b, s) for k, a, m, (b, s) in
         itertools.product(["llama", "qwen2", "gpt2"], ["sdpa", "eager"], ["full", "lora", "ia3"], [(4, 128), (2, 64)])]
TIGHT += [(k, "sdpa", m, True, 4, 128) for k, m in itertools.product(["llama", "qwen2"], ["full", "lora", "ia3"])]


@pytest.mark.parametrize(("kind", "attention", "method", "gc", "micro_batch", "seq_len"), TIGHT)
def test_peak_within_3_percent(tmp_path, kind, attention, method, gc, micro_batch, seq_len):
    predicted, measured = _predict_and_measure(tmp_path, kind, attention, method, gc, micro_batch, seq_len)
    assert predicted.total == pytest.approx(measured.total, rel=0.03), predicted
    # categories: parameters and optimizer state to the byte (but rotary buffers and step counters),
    # activations (forward-made) + temporaries (backward-made) against activations + logits
    assert predicted.weights == pytest.approx(measured.parameters, rel=0.001)
    assert predicted.optimizer == pytest.approx(measured.optimizer, rel=0.001, abs=1024)
    assert predicted.gradients == pytest.approx(measured.gradients, rel=0.05, abs=4096)
    assert predicted.activations + predicted.logits == pytest.approx(measured.activations + measured.temporaries,
                                                                     rel=0.05)


LOOSE = [("gpt2", "sdpa", "lora", True, 4, 128), ("gpt2", "sdpa", "ia3", True, 4, 128),
         ("gpt2", "sdpa", "full", True, 1, 64), ("llama", "eager", "lora", True, 4, 128),
         ("llama", "eager", "full", False, 1, 64)]


@pytest.mark.parametrize(("kind", "attention", "method", "gc", "micro_batch", "seq_len"), LOOSE)
def test_peak_inside_backward_within_10_percent(tmp_path, kind, attention, method, gc, micro_batch, seq_len):
    predicted, measured = _predict_and_measure(tmp_path, kind, attention, method, gc, micro_batch, seq_len)
    assert predicted.total == pytest.approx(measured.total, rel=0.10)
