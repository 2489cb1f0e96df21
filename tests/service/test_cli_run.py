"""`effft init-example` and `effft run`, as a user types them (subprocesses, a local Ray of their own)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml


def effft(bin_path, *args, cwd, timeout=600):
    return subprocess.run([bin_path, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # a minute or more of Ray training: `make test-all`
def test_init_example_then_run_trains_and_prints_the_summary(effft_bin, tmp_path):
    made = effft(effft_bin, "init-example", str(tmp_path / "ex"), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    for name in ("model/config.json", "model/tokenizer.json", "data/chat.jsonl", "data/alpaca.jsonl",
                 "data/text.jsonl", "job.yaml"):
        assert (tmp_path / "ex" / name).exists(), name
    job = yaml.safe_load((tmp_path / "ex" / "job.yaml").read_text())
    job["training"]["max_steps"] = 6  # the example's 120 steps take a minute; the path is the same
    (tmp_path / "ex" / "job.yaml").write_text(yaml.safe_dump(job))
    done = effft(effft_bin, "run", str(tmp_path / "ex" / "job.yaml"), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Run summary" in done.stdout and "6 / 6" in done.stdout and "exact match" in done.stdout
    assert "step 6/6 | loss " in done.stdout  # stdout is a pipe: plain progress lines, the last step's at least
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 7))
    assert (tmp_path / "run" / "output" / "model.safetensors").exists()


def test_run_with_bad_data_exits_2_naming_the_field(effft_bin, tmp_path, repo_root):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"question": "q", "answer": "a"}\n')
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "bad", "model": str(repo_root / "examples/models/tiny-llama"),
                                   "dataset": str(data), "training": {"max_steps": 2}}))
    done = effft(effft_bin, "run", str(job), cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "dataset.format" in done.stderr and "text_field" in done.stderr
