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
    }
    return builders[family]()
