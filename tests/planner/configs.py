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
