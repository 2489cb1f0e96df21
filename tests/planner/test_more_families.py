"""Every family's parameter counts equal transformers' (meta device), for random shapes and real hub
configs; adapter counts equal peft's; `effft plan` answers for the real configs; other causal LMs
get a generic profile."""

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from planner.adapters import ia3_plan, lora_plan  # noqa: E402
from planner.families import FAMILIES  # noqa: E402
from planner.profile import load_profile, profile_from_config  # noqa: E402
from service.cli import app  # noqa: E402
from tests.planner.configs import random_family_config  # noqa: E402
from tests.planner.hub_configs import HUB_CONFIGS  # noqa: E402

NEW_FAMILIES = ("phi", "falcon", "mixtral", "qwen2_moe", "starcoder2", "olmo2")
ALL_FAMILIES = tuple(sorted(FAMILIES))


def _meta_params(config) -> int:
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config).num_parameters()


@st.composite
def shapes(draw, families=ALL_FAMILIES):
    """A family and a small shape it accepts: head widths of 16 or 32, k/v heads dividing the heads."""
    family = draw(st.sampled_from(families))
    head_dim = draw(st.sampled_from((16, 32)))
    heads = draw(st.sampled_from((1, 2, 3, 4, 6)))
    kv_heads = draw(st.sampled_from([k for k in (1, 2, 3, 4, 6) if heads % k == 0]))
    hidden = head_dim * heads
    return family, dict(hidden=hidden, layers=draw(st.integers(1, 3)), heads=heads, kv_heads=kv_heads,
                        intermediate=8 * draw(st.integers(2, hidden // 4)), vocab=draw(st.integers(50, 700)),
                        tied=draw(st.booleans()), positions=256)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes())
def test_every_family_counts_what_transformers_builds(case):
    family, shape = case
    config = random_family_config(family, **shape)
    profile = profile_from_config(config.to_dict())
    assert not profile.arch.generic
    assert profile.total_params == _meta_params(config)
    assert sum(profile.components().values()) == profile.total_params


def test_the_random_configs_cover_every_family():
    for family in FAMILIES:
        if family != "mistral":  # mistral is read by llama's builder; its config class is tested there
            config = random_family_config(family, hidden=64, layers=1, heads=2, kv_heads=1, intermediate=64,
                                          vocab=100, tied=False, positions=128)
            assert profile_from_config(config.to_dict()).arch.family in (family, "llama")


def test_qwen2_moe_dense_layers_are_counted():
    """mlp_only_layers and decoder_sparse_step give some layers a dense MLP instead of the experts."""
    for extra in ({"mlp_only_layers": [0]}, {"decoder_sparse_step": 2}, {"num_experts": 0}):
        config = transformers.Qwen2MoeConfig(vocab_size=100, hidden_size=64, intermediate_size=96,
                                             moe_intermediate_size=32, shared_expert_intermediate_size=64,
                                             num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                             **{"num_experts": 4, "num_experts_per_tok": 2, **extra})
        assert profile_from_config(config.to_dict()).total_params == _meta_params(config), extra


# -- the real models' configs ------------------------------------------------------------------

@pytest.fixture(params=sorted(HUB_CONFIGS))
def hub_folder(request, tmp_path):
    config, billions = HUB_CONFIGS[request.param]
    (tmp_path / "config.json").write_text(json.dumps(config))
    return request.param, tmp_path, billions


def test_hub_configs_count_what_transformers_builds(hub_folder):
    name, folder, billions = hub_folder
    profile = load_profile(str(folder))
    assert profile.arch.family == HUB_CONFIGS[name][0]["model_type"] and not profile.arch.generic
    assert profile.total_params == _meta_params(transformers.AutoConfig.from_pretrained(folder))
    assert profile.total_params / 1e9 == pytest.approx(billions, rel=0.01)  # the model card's size


def test_effft_plan_answers_for_hub_configs(hub_folder):
    name, folder, _ = hub_folder
    job = folder / "job.yaml"
    job.write_text(f"name: hub\nmodel: {folder}\ndataset: {folder / 'none.jsonl'}\nmethod: lora\nseq_len: 1024\n"
                   "training: {max_steps: 10}\n")
    gpus = "8" if "Mixtral" in name or "40b" in name else "1"  # bf16 weights of 47B / 41B need several GPUs
    result = CliRunner().invoke(app, ["plan", str(job), "--gpu", "H100-80GB", "--gpus", gpus, "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["params"]["total"] == load_profile(str(folder)).total_params
    assert 0 < plan["params"]["trainable"] < plan["params"]["total"] / 50
    assert plan["memory"]["total"] <= plan["memory"]["budget"]


def test_moe_flops_count_the_routed_experts_only():
    """Mixtral-8x7B: 46.7B parameters, 12.9B of them used per token (its card's figure)."""
    arch = profile_from_config(HUB_CONFIGS["mistralai/Mixtral-8x7B-v0.1"][0]).arch
    active = arch.active_linear_params + arch.embedding_params + arch.lm_head_params
    assert active / 1e9 == pytest.approx(12.9, rel=0.01)


# -- adapters ----------------------------------------------------------------------------------

def _peft_trainable(config, peft_config) -> int:
    torch.manual_seed(0)
    model = peft.get_peft_model(transformers.AutoModelForCausalLM.from_config(config), peft_config)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes(NEW_FAMILIES))
def test_lora_counts_equal_peft(case):
    """The plan resolves all-linear into module names, which the worker hands to peft: what peft then trains."""
    family, shape = case
    config = random_family_config(family, **{**shape, "vocab": 64})
    arch = profile_from_config(config.to_dict()).arch
    plan = lora_plan(arch, 4, 0.0, "all-linear")
    assert plan.trainable_params == _peft_trainable(config, peft.LoraConfig(r=4,
                                                                            target_modules=list(plan.layer_modules)))


@pytest.mark.parametrize("family", [f for f in NEW_FAMILIES if f not in ("mixtral",)])
def test_all_linear_is_every_nn_linear(family):
    """peft's own all-linear agrees, except on Mixtral: peft 0.21 maps Mixtral's transformers-4 expert
    names onto the fused 3-D experts and the router (target_parameters) and adapts them too."""
    config = random_family_config(family, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=96, vocab=64,
                                  tied=False, positions=128)
    arch = profile_from_config(config.to_dict()).arch
    assert lora_plan(arch, 4, 0.0, "all-linear").trainable_params == _peft_trainable(
        config, peft.LoraConfig(r=4, target_modules="all-linear"))


@pytest.mark.parametrize("family", ["phi", "falcon", "mixtral"])
def test_ia3_defaults_equal_peft(family):
    for kv_heads in (1, 2):
        config = random_family_config(family, hidden=64, layers=2, heads=4, kv_heads=kv_heads, intermediate=96,
                                      vocab=64, tied=False, positions=128)
        arch = profile_from_config(config.to_dict()).arch
        assert ia3_plan(arch, "auto", "auto").trainable_params == _peft_trainable(config, peft.IA3Config())


@pytest.mark.parametrize("family", ["qwen2_moe", "starcoder2", "olmo2"])
def test_ia3_without_peft_default_asks_for_targets(family):
    config = random_family_config(family, hidden=64, layers=1, heads=4, kv_heads=2, intermediate=96, vocab=64,
                                  tied=False, positions=128)
    arch = profile_from_config(config.to_dict()).arch
    with pytest.raises(ValueError, match="no IA3 default"):
        ia3_plan(arch, "auto", "auto")
    with pytest.raises(ValueError, match="Please specify `target_modules`"):
        _peft_trainable(config, peft.IA3Config())


# -- the generic profile -----------------------------------------------------------------------

LLAMA_LIKE = {"architectures": ["AcmeForCausalLM"], "model_type": "acme", "hidden_size": 256, "num_hidden_layers": 4,
              "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 688, "vocab_size": 1000,
              "hidden_act": "silu", "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
              "max_position_embeddings": 4096}


def test_an_unknown_llama_like_model_gets_a_generic_profile(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_LIKE))
    profile = load_profile(str(tmp_path))
    arch = profile.arch
    assert arch.generic and arch.model_type == "acme" and arch.mlp == "gated" and arch.norm == "rms"
    assert "generic" in profile.config_origin
    llama = profile_from_config({**LLAMA_LIKE, "model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    assert profile.total_params == llama.total_params == _meta_params(transformers.LlamaConfig(**{
        k: v for k, v in LLAMA_LIKE.items() if k not in ("architectures", "model_type")}))
    job = tmp_path / "job.yaml"
    job.write_text(f"name: acme\nmodel: {tmp_path}\ndataset: {tmp_path / 'none.jsonl'}\nmethod: lora\n"
                   "training: {max_steps: 10}\n")
    result = CliRunner().invoke(app, ["plan", str(job), "--gpu", "A10G", "--json"])
    assert result.exit_code == 0, result.output
    assert "generic" in json.loads(result.stdout)["config_origin"]


def test_generic_reads_aliases_bias_moe_and_plain_mlps():
    gpt_like = {"architectures": ["GizmoForCausalLM"], "model_type": "gizmo", "n_embd": 128, "n_layer": 2,
                "n_head": 4, "n_inner": 512, "vocab_size": 500, "activation_function": "gelu", "bias": True,
                "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}
    arch = profile_from_config(gpt_like).arch
    assert arch.mlp == "plain" and arch.norm == "layer" and all(linear.bias for linear in arch.linears)
    per_layer = 4 * (128 * 128 + 128) + 2 * 128 * 512 + 512 + 128 + 2 * 2 * 128
    assert arch.total_params == 500 * 128 + 2 * per_layer + 2 * 128
    aliased = {**LLAMA_LIKE, "attribute_map": {"hidden_size": "dim", "num_hidden_layers": "n_layers"}, "dim": 256,
               "n_layers": 4, "hidden_size": None, "num_hidden_layers": None}
    assert profile_from_config(aliased).total_params == profile_from_config(LLAMA_LIKE).total_params
    moe = profile_from_config({**LLAMA_LIKE, "num_experts": 8, "num_experts_per_tok": 2,
                               "moe_intermediate_size": 128, "shared_expert_intermediate_size": 256}).arch
    assert moe.experts.count == 8 and any(linear.role == "shared_scale" for linear in moe.linears)


@pytest.mark.parametrize("model_type", ["granite", "stablelm", "arcee", "nemotron", "granitemoe", "ernie4_5"])
def test_generic_is_exact_for_some_unsupported_transformers_families(model_type):
    """Families with no builder of their own whose configs say all the generic profile needs."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = transformers.AutoConfig.for_model(model_type, vocab_size=1000, hidden_size=64, intermediate_size=176,
                                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    data = {**config.to_dict(), "architectures": [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]]}
    arch = profile_from_config(data).arch
    assert arch.generic and arch.total_params == _meta_params(config)


def test_a_non_causal_config_is_still_refused():
    from planner.errors import ModelProfileError

    with pytest.raises(ModelProfileError, match="not supported yet"):
        profile_from_config({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "vocab_size": 10,
                             "d_model": 64, "num_layers": 2, "num_heads": 4})
