"""`effft plan`: exit codes, JSON, speed, and no torch on the way."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from service.cli import app

runner = CliRunner()


def test_plan_table_on_cpu(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    result = runner.invoke(app, ["plan", "examples/jobs/tiny-lora.yaml", "--gpu", "cpu"])
    assert result.exit_code == 0, result.output
    assert "tokens/s" in result.output and "MFU" in result.output and "budget" in result.output


def test_plan_json_has_memory_settings_decisions(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    result = runner.invoke(app, ["plan", "examples/jobs/llama2-7b-lora.yaml", "--gpu", "A10G", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["settings"]["method"] == "lora" and data["gpu"] == "A10G"
    assert data["memory"]["total"] <= data["memory"]["budget"]
    assert "gradient_accumulation_steps" in data["settings"] and "sharding" in data["settings"]


def test_bad_spec_exits_2_naming_the_field(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("name: x\nmodel: gpt2\ndataset: d.jsonl\nmethod: lorax\ntraining: {max_steps: 0}\n")
    result = runner.invoke(app, ["plan", str(job), "--gpu", "A10G"])
    assert result.exit_code == 2
    assert "method" in result.output and "training.max_steps" in result.output


def test_infeasible_exits_2_with_numbers_in_gb(repo_root, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("name: big\nmodel: meta-llama/Llama-2-70b-hf\ndataset: d.jsonl\nmethod: lora\n"
                   "seq_len: 2048\ntraining: {max_steps: 10}\n")
    result = runner.invoke(app, ["plan", str(job), "--gpu", "T4"])
    assert result.exit_code == 2
    assert "GB" in result.output and "does not fit" in result.output


def test_unknown_gpu_exits_2(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    result = runner.invoke(app, ["plan", "examples/jobs/tiny-lora.yaml", "--gpu", "Voodoo2"])
    assert result.exit_code == 2 and "known" in result.output


def test_plan_never_imports_torch_or_ray(repo_root):
    """`effft plan` is pure planning: the heavy runtimes stay unloaded (its speed is bench/planner_speed.py's)."""
    code = ("import sys; from service.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['plan', 'examples/jobs/llama2-13b-qlora.yaml', '--gpu', 'A10G', '--json']); "
            "assert r.exit_code == 0, r.output; print('torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    torch_loaded, ray_loaded = out.stdout.split()
    assert torch_loaded == "False" and ray_loaded == "False"


def test_the_previewed_plan_is_the_plan_the_scheduler_stores(tmp_path, tiny_model, chat_data):
    """seq_len auto: `effft plan` profiles the dataset as the scheduler does, on the same machine's inventory."""
    import yaml

    from planner import load_job
    from service.cli import local_inventory
    from service.db import make_engine
    from service.migrate import upgrade
    from service.scheduler import Scheduler
    from service.settings import Settings
    from service.store import JobStore
    from tests.service.conftest import FakeCluster, job_spec

    body = job_spec(tiny_model, chat_data, "preview", seq_len="auto")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(body))
    previewed = runner.invoke(app, ["plan", str(job), "--json"])
    assert previewed.exit_code == 0, previewed.output
    preview = json.loads(previewed.stdout)
    assert preview["settings"]["seq_len"] < 2048  # profiled, not the unprofiled default
    url = f"sqlite:///{tmp_path / 'effft.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        store = JobStore(engine)
        job_id = store.submit("alice", load_job(job).model_dump(mode="json"))[0].id
        settings = Settings(data_dir=tmp_path / "data", dataset_roots=[tiny_model, chat_data.parent])
        Scheduler(store, settings, FakeCluster(local_inventory(None, None)), "http://t").tick(wait=60)
        stored = store.get(job_id)
        assert stored.plan is not None, stored.message
        assert stored.plan == preview
    finally:
        engine.dispose()


def test_an_unreachable_dataset_is_planned_at_the_default_and_says_so(tmp_path, tiny_model):
    import yaml

    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "x", "model": str(tiny_model), "dataset": str(tmp_path / "none.jsonl"),
                                   "training": {"max_steps": 2}}))
    result = runner.invoke(app, ["plan", str(job), "--gpu", "cpu"])
    assert result.exit_code == 0, result.output
    assert "not profiled" in result.output


def test_plan_applies_the_local_run_history_unless_told_not_to(repo_root, monkeypatch, tmp_path):
    import pytest

    from planner.plan import load_plan
    from service.calibration import record_local_run

    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("EFFFT_DATA_DIR", str(tmp_path))

    def planned(*flags) -> dict:
        result = runner.invoke(app, ["plan", "examples/jobs/tiny-lora.yaml", "--gpu", "cpu", "--json", *flags])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    raw = planned()
    # `effft run` measured the predicted peak and half the predicted tokens/s
    record_local_run(tmp_path, load_plan(raw), {"memory_peak_bytes": raw["memory"]["total"],
                                                "tokens_per_second": raw["throughput"]["tokens_per_second"] / 2})
    corrected = planned()
    assert corrected["throughput"]["tokens_per_second"] == pytest.approx(
        raw["throughput"]["tokens_per_second"] * 0.5 ** (1 / 1.02))
    assert planned("--no-calibration") == raw
