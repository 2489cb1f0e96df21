"""Tiny configs of each supported family, built with transformers' own config classes."""

import transformers

SMALL = dict(vocab_size=1000, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2)


def family_configs():
    t = transformers
    return {
        "llama": t.LlamaConfig(**SMALL),
        "llama-bias-tied": t.LlamaConfig(**SMALL, attention_bias=True, tie_word_embeddings=True),
        "mistral": t.MistralConfig(**SMALL),
        "qwen2": t.Qwen2Config(**SMALL),
        "qwen3": t.Qwen3Config(**SMALL, head_dim=32),
        "gemma": t.GemmaConfig(**SMALL, head_dim=16),
        "gemma2": t.Gemma2Config(**SMALL, head_dim=16),
        "phi3": t.Phi3Config(**SMALL, pad_token_id=0),
        "gpt2": t.GPT2Config(vocab_size=1000, n_embd=64, n_layer=2, n_head=4),
        "gpt_neox": t.GPTNeoXConfig(vocab_size=1000, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                                    num_attention_heads=4),
        "opt": t.OPTConfig(vocab_size=1000, hidden_size=64, ffn_dim=256, num_hidden_layers=2, num_attention_heads=4,
                           word_embed_proj_dim=32),
    }


def random_family_config(family: str, *, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int,
                         vocab: int, tied: bool, positions: int):
    """A config of `family` with the given shape; families without GQA use `heads` for keys and values."""
    t = transformers
    shape = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                 num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=positions,
                 tie_word_embeddings=tied)
    head_dim = hidden // heads
    builders = {
        "llama": lambda: t.LlamaConfig(**shape),
        "mistral": lambda: t.MistralConfig(**shape),
        "qwen2": lambda: t.Qwen2Config(**shape),
        "qwen3": lambda: t.Qwen3Config(**shape, head_dim=head_dim),
        "gemma": lambda: t.GemmaConfig(**shape, head_dim=head_dim),
        "gemma2": lambda: t.Gemma2Config(**shape, head_dim=head_dim),
        "gemma3_text": lambda: t.Gemma3TextConfig(**shape, head_dim=head_dim),
        "phi3": lambda: t.Phi3Config(**shape, pad_token_id=0),
        "gpt2": lambda: t.GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=heads,
                                     n_inner=intermediate, n_positions=positions, tie_word_embeddings=tied),
        "gpt_neox": lambda: t.GPTNeoXConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                                            num_hidden_layers=layers, num_attention_heads=heads,
                                            max_position_embeddings=positions, tie_word_embeddings=tied),
        "opt": lambda: t.OPTConfig(vocab_size=vocab, hidden_size=hidden, ffn_dim=intermediate,
                                   num_hidden_layers=layers, num_attention_heads=heads,
                                   max_position_embeddings=positions, tie_word_embeddings=tied),
        "phi": lambda: t.PhiConfig(**shape, partial_rotary_factor=0.25 if hidden % 128 else 0.5),
        "falcon": lambda: _falcon(shape, kv_heads, heads, layers),
        "mixtral": lambda: t.MixtralConfig(**shape, **_experts(intermediate, "num_local_experts")),
        "qwen2_moe": lambda: t.Qwen2MoeConfig(**shape, **_experts(intermediate, "num_experts"),
                                              moe_intermediate_size=intermediate // 2,
                                              shared_expert_intermediate_size=intermediate),
        "starcoder2": lambda: t.Starcoder2Config(**shape),
        "olmo2": lambda: t.Olmo2Config(**shape, pad_token_id=0),
    }
    return builders[family]()


def _experts(intermediate: int, count_key: str) -> dict:
    """2 to 8 experts, 1 or 2 per token, varied with the drawn width."""
    count = 2 + (intermediate // 8) % 7
    return {count_key: count, "num_experts_per_tok": min(count, 1 + (intermediate // 8) % 2)}


def _falcon(shape: dict, kv_heads: int, heads: int, layers: int):
    """Falcon's three layouts: multi-query (7B), grouped k/v in the new decoder (40B), or one k/v per head."""
    config = {key: value for key, value in shape.items() if key not in ("num_key_value_heads", "intermediate_size")}
    config["ffn_hidden_size"] = shape["intermediate_size"]
    if kv_heads == 1:
        config.update(multi_query=True, new_decoder_architecture=False, parallel_attn=True)
    elif kv_heads < heads:
        config.update(new_decoder_architecture=True, num_kv_heads=kv_heads)
    else:
        config.update(multi_query=False, new_decoder_architecture=False, parallel_attn=layers % 2 == 0)
    return transformers.FalconConfig(**config)
