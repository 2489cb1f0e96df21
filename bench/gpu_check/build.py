"""Models and data made on the spot: random weights built from a config directly on the device, and
random token ids (no tokenizer, no files, no save/load round trip).

The base model comes out as `worker.model.load_base_model` leaves a loaded one (the plan's load dtype,
attention, 4-bit NF4 for QLoRA through transformers' own bitsandbytes loading, no KV cache), so
`worker.model.prepare_model(settings, device, base=...)` applies the plan to it exactly as it does
to a user's model.
"""

from __future__ import annotations

import gc

import torch

from planner.plan import RunSettings
from worker.formats import Example
from worker.model import attention_implementation, precision_of, quantization_config

MIN_EXAMPLE_TOKENS = 64  # the shortest example of the unpacked (naive) data


def hf_config(fields: dict):
    from transformers import AutoConfig

    fields = dict(fields)
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def random_model(fields: dict, dtype: torch.dtype, attention: str, device: torch.device):
    """Every weight made and initialised on `device` (an 8B model in seconds, no host copy)."""
    from transformers import AutoModelForCausalLM

    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_config(fields), dtype=dtype, attn_implementation=attention)
    model.config.use_cache = False  # the KV cache only costs memory in training
    return model


def random_base_model(settings: RunSettings, fields: dict, device: torch.device):
    """The base model the plan asks for, with random weights."""
    precision = precision_of(settings)
    attention = attention_implementation(settings.attention)
    model = random_model(fields, precision.load_dtype, attention, device)
    if settings.method != "qlora":
        return model
    # QLoRA: the random weights go through from_pretrained's quantizing loader, as a checkpoint's would
    state = model.state_dict()
    quantized = type(model).from_pretrained(None, config=model.config, state_dict=state, dtype=precision.load_dtype,
                                            quantization_config=quantization_config(settings, precision),
                                            device_map={"": device}, attn_implementation=attention)
    quantized.config.use_cache = False
    del state, model
    return quantized


def release_build_memory(device: torch.device) -> None:
    """What building left cached (the unquantized source of a QLoRA base) is not the run's: hand it back,
    so the run's peak counts training alone."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _random_ids(count: int, vocab: int, generator: torch.Generator) -> list[int]:
    return torch.randint(0, vocab, (count,), generator=generator).tolist()


def packed_blocks(blocks: int, seq_len: int, vocab: int, seed: int = 0) -> list[dict]:
    """`blocks` full blocks of random ids, every token trained: what packing hands the Trainer."""
    from worker.data import pack

    ids = _random_ids(blocks * seq_len, vocab, torch.Generator().manual_seed(seed))
    return pack([Example(ids, list(ids))], seq_len, pad_id=0)


def padded_blocks(blocks: int, seq_len: int, vocab: int, seed: int = 0) -> list[dict]:
    """One example per block, its length uniform in [64, seq_len], padded to seq_len: `packing: false`."""
    from worker.data import pad

    generator = torch.Generator().manual_seed(seed)
    shortest = min(MIN_EXAMPLE_TOKENS, seq_len)
    lengths = torch.randint(shortest, seq_len + 1, (blocks,), generator=generator).tolist()
    examples = []
    for length in lengths:
        ids = _random_ids(length, vocab, generator)
        examples.append(Example(ids, list(ids)))
    return pad(examples, seq_len, pad_id=0)
