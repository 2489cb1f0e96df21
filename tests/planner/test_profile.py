"""Parameter counts equal transformers' (meta device) and peft's trainable counts."""

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from planner.adapters import ia3_plan, lora_plan  # noqa: E402
from planner.errors import ModelProfileError  # noqa: E402
from planner.profile import load_profile, profile_from_config  # noqa: E402
from tests.planner.configs import family_configs  # noqa: E402

CONFIGS = family_configs()


def _meta_model(config):
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_total_params_equal_transformers(name):
    config = CONFIGS[name]
    profile = profile_from_config(config.to_dict())
    assert profile.total_params == _meta_model(config).num_parameters()
    assert sum(profile.components().values()) == profile.total_params


def _lora_targets(model_type):
    return {"gpt2": ["c_attn"], "gpt_neox": ["query_key_value"], "phi3": ["qkv_proj"]}.get(model_type,
                                                                                          ["q_proj", "v_proj"])


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3", "gemma2", "phi3", "gpt2", "gpt_neox", "opt"])
def test_adapter_counts_equal_peft(name):
    config = CONFIGS[name]
    arch = profile_from_config(config.to_dict()).arch
    cases = [(peft.LoraConfig(r=4, target_modules="all-linear"), lora_plan(arch, 4, 0.0, "all-linear")),
             (peft.LoraConfig(r=8, target_modules=_lora_targets(config.model_type)),
              lora_plan(arch, 8, 0.0, _lora_targets(config.model_type)))]
    if config.model_type != "phi3":  # peft has no IA3 default for phi3
        cases.append((peft.IA3Config(), ia3_plan(arch, "auto", "auto")))
    for peft_config, ours in cases:
        model = peft.get_peft_model(transformers.AutoModelForCausalLM.from_config(config), peft_config)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert ours.trainable_params == trainable, peft_config


def test_profile_reads_a_saved_folder_and_the_hf_cache(tmp_path, monkeypatch):
    config = CONFIGS["qwen2"]
    config.save_pretrained(tmp_path / "local")
    assert load_profile(str(tmp_path / "local")).arch.family == "qwen2"
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(CONFIGS["llama"].to_dict()))
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    profile = load_profile("org/tiny")
    assert profile.arch.family == "llama" and "abc123" in profile.config_origin


def test_unknown_model_and_unsupported_family_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelProfileError, match="huggingface-cli download nobody/nothing config.json"):
        load_profile("nobody/nothing")
    with pytest.raises(ModelProfileError, match="not supported yet; supported: falcon, gemma"):
        profile_from_config({"model_type": "t5", "vocab_size": 10})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelProfileError, match="no config.json"):
        load_profile(str(tmp_path / "empty"))
