"""Loading the model and tokenizer, and applying the plan: precision, QLoRA, checkpointing, adapters.

The plan's settings are the only input: the worker never plans again.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

import torch

from planner.plan import RunSettings
from planner.spec import ModelSource
from worker.errors import ModelError

log = logging.getLogger("effft.worker")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """How a recipe maps onto loading and the HF Trainer's flags."""

    load_dtype: torch.dtype  # the dtype the base weights are loaded in
    compute_dtype: torch.dtype
    amp: str | None  # "bf16" | "fp16": the Trainer's autocast (fp16 adds loss scaling); None: no autocast
    adapters_fp32: bool  # peft keeps adapter weights in fp32 (AMP) or in the load dtype (pure)


def precision_of(settings: RunSettings) -> Precision:
    precision, recipe, method = settings.precision, settings.precision_recipe, settings.method
    compute = DTYPES[precision]
    if precision == "fp32":
        return Precision(torch.float32, torch.float32, None, True)
    if recipe == "pure":
        return Precision(compute, compute, None, False)
    # AMP: trained weights in fp32; a frozen base is stored in 16-bit (what the planner counts)
    return Precision(torch.float32 if method == "full" else compute, compute, precision, True)


def attention_implementation(requested: str) -> str:
    """flash_attention_2 where its package is installed, else SDPA; eager only when asked for."""
    if requested == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        log.warning("attention: flash_attention_2 planned but flash-attn is not installed; using sdpa")
        return "sdpa"
    return requested


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, revision=source.revision,
                                                  trust_remote_code=source.trust_remote_code)
    except (OSError, ValueError) as error:  # no tokenizer files, or files transformers cannot read
        first_line = str(error).strip().splitlines()[-1][:200] if str(error).strip() else type(error).__name__
        raise ModelError("model.path", source.path, "cannot load a tokenizer from it; a model folder needs its "
                         f"tokenizer files (tokenizer.json or tokenizer.model) beside config.json ({first_line})") \
            from None
    if tokenizer.pad_token is None:  # many base models ship without one; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(settings: RunSettings, precision: Precision):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=precision.compute_dtype)


def load_base_model(settings: RunSettings, device: torch.device, dtype: torch.dtype | None = None,
                    quantize: bool = True):
    """The base model as the plan wants it loaded (4-bit for QLoRA), on `device`."""
    from transformers import AutoModelForCausalLM

    source, precision = settings.model, precision_of(settings)
    kwargs = {"dtype": dtype or precision.load_dtype, "revision": source.revision,
              "trust_remote_code": source.trust_remote_code,
              "attn_implementation": attention_implementation(settings.attention)}
    if settings.method == "qlora" and quantize:
        kwargs["quantization_config"] = quantization_config(settings, precision)
        kwargs["device_map"] = {"": device}  # bitsandbytes quantizes while it places the weights
    model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    model.config.use_cache = False  # the KV cache only costs memory in training
    return model


def adapter_config(settings: RunSettings):
    from peft import IA3Config, LoraConfig

    if settings.method in ("lora", "qlora"):
        lora = settings.lora
        targets = lora.target_modules
        return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules="all-linear" if targets == "all-linear" else list(targets),
                          bias="none", task_type="CAUSAL_LM")
    ia3 = settings.ia3
    targets, feedforward = ia3.target_modules, ia3.feedforward_modules
    return IA3Config(target_modules=None if targets == "auto" else list(targets),
                     feedforward_modules=None if feedforward == "auto" else list(feedforward), task_type="CAUSAL_LM")


CHECKPOINTING = {"use_reentrant": False}  # reentrant checkpointing silently drops adapter gradients


def prepare_model(settings: RunSettings, device: torch.device, base=None):
    """Load and apply the plan; the result is what the Trainer trains.

    `base`: the base model already on `device` as `load_base_model` would leave it (dtype, 4-bit for QLoRA,
    attention, no KV cache); bench/gpu_check builds one from a config with random weights. None: loaded."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = base if base is not None else load_base_model(settings, device)
    checkpointing, method = settings.gradient_checkpointing, settings.method
    if method == "qlora":
        # freezes the base, upcasts its unquantized params to fp32, enables input grads and checkpointing
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                                gradient_checkpointing_kwargs=CHECKPOINTING)
    elif checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name; the old one warns
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=CHECKPOINTING)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING)
        if method != "full":
            # a frozen embedding makes the checkpointed blocks' inputs need no grad; force it so
            # the adapters inside them still learn
            model.enable_input_require_grads()
    if method == "full":
        return model
    return get_peft_model(model, adapter_config(settings), autocast_adapter_dtype=precision_of(settings).adapters_fp32)


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
