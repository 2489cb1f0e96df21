"""Configs of popular models, so that `effft plan` works offline for their hub ids.

Only the architecture numbers the planner reads; a local folder or the HF cache wins over these.
"""

from __future__ import annotations


def _llama(hidden, intermediate, layers, heads, kv_heads, vocab, max_positions, tied=False, **extra):
    return {"model_type": "llama", "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "vocab_size": vocab, "max_position_embeddings": max_positions, "tie_word_embeddings": tied,
            "hidden_act": "silu", **extra}


KNOWN_CONFIGS: dict[str, dict] = {
    "meta-llama/Llama-2-7b-hf": _llama(4096, 11008, 32, 32, 32, 32000, 4096),
    "meta-llama/Llama-2-13b-hf": _llama(5120, 13824, 40, 40, 40, 32000, 4096),
    "meta-llama/Llama-2-70b-hf": _llama(8192, 28672, 80, 64, 8, 32000, 4096),
    "meta-llama/Llama-3.2-1B": _llama(2048, 8192, 16, 32, 8, 128256, 131072, tied=True, head_dim=64),
    "meta-llama/Llama-3.2-3B": _llama(3072, 8192, 28, 24, 8, 128256, 131072, tied=True, head_dim=128),
    "meta-llama/Llama-3.1-8B": _llama(4096, 14336, 32, 32, 8, 128256, 131072),
    "meta-llama/Llama-3.1-70B": _llama(8192, 28672, 80, 64, 8, 128256, 131072),
    "mistralai/Mistral-7B-v0.1": {**_llama(4096, 14336, 32, 32, 8, 32000, 32768), "model_type": "mistral"},
    "Qwen/Qwen2.5-0.5B": {**_llama(896, 4864, 24, 14, 2, 151936, 32768, tied=True), "model_type": "qwen2"},
    "Qwen/Qwen2.5-7B": {**_llama(3584, 18944, 28, 28, 4, 152064, 32768), "model_type": "qwen2"},
    "HuggingFaceTB/SmolLM2-135M-Instruct": _llama(576, 1536, 30, 9, 3, 49152, 8192, tied=True),
    "gpt2": {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
             "n_positions": 1024},
}
# Instruct / chat variants share the base model's architecture.
for _base, _variant in (("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf"),
                        ("meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-13b-chat-hf"),
                        ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct"),
                        ("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct"),
                        ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M"),
                        ("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct")):
    KNOWN_CONFIGS[_variant] = KNOWN_CONFIGS[_base]
