"""Tiny models built from configs, a tokenizer trained here, small datasets, plans, one shared local Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner import Inventory, cpu_with_memory, plan_job
from planner.spec import parse_job
from worker.synthetic import FORMATS, make_pairs
from worker.tiny import build_tiny_model, train_tokenizer

# bitsandbytes' CPU 4-bit kernels need output sizes that are multiples of 32
TEST_SHAPE = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2}
CPU = cpu_with_memory(16 * 2**30)


@pytest.fixture(scope="session")
def pairs():
    return make_pairs(400, seed=1)


@pytest.fixture(scope="session")
def tokenizer(pairs):
    return train_tokenizer([f"{q} {a}" for q, a in pairs], vocab_size=512)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tokenizer) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model"), tokenizer, TEST_SHAPE)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def datasets(tmp_path_factory, pairs) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    return {fmt: write_jsonl(folder / f"{fmt}.jsonl", [to_row(q, a) for q, a in pairs])
            for fmt, to_row in FORMATS.items()}


def make_plan(model: Path, data: Path, gpus: int = 1, **fields):
    """A plan for the CPU; `fields` override the job spec (training.* through a `training` dict)."""
    training = {"max_steps": 12, "effective_batch_size": 4, "learning_rate": 1e-2, **fields.pop("training", {})}
    job = {"name": "test", "model": str(model), "dataset": {"path": str(data)}, "seq_len": 64,
           "resources": {"gpus": gpus}, "training": training, **fields}
    return plan_job(parse_job(job), Inventory.single(CPU, gpus))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray (2 CPUs) for the whole test session: starting one costs seconds."""
    import ray

    from worker.ray_run import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()
