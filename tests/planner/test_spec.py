import pytest
import yaml

from planner.errors import SpecError
from planner.spec import load_job, parse_job

EXAMPLE = """
name: tiny-lora
model: examples/models/tiny-llama
dataset: {path: examples/data/tiny.jsonl, format: auto}
seq_len: 512
packing: auto
method: lora
lora: {r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}
precision: auto
precision_recipe: auto
optimizer: auto
micro_batch_size: auto
gradient_checkpointing: auto
attention: auto
training: {max_steps: 100, effective_batch_size: 16, learning_rate: 2.0e-4}
resources: {gpus: auto}
objective: fastest
"""


def test_issue_example_validates_as_written():
    spec = parse_job(yaml.safe_load(EXAMPLE))
    assert spec.model.path == "examples/models/tiny-llama"
    assert spec.model.trust_remote_code is False
    assert spec.dataset.format == "auto"
    assert spec.seq_len == 512 and spec.micro_batch_size == "auto"
    assert spec.training.max_steps == 100 and spec.training.epochs is None


def test_shipped_example_file_validates(repo_root):
    spec = load_job(repo_root / "examples/jobs/tiny-lora.yaml")
    assert spec.name == "tiny-lora"


def test_every_error_is_reported_at_once_with_its_path():
    data = yaml.safe_load(EXAMPLE)
    data.update(method="lorax", micro_batch_size=0, bogus=1, lora={"r": 0})
    data["training"] = {"max_steps": 0, "lr": 1}
    with pytest.raises(SpecError) as caught:
        parse_job(data)
    fields = {p.field for p in caught.value.problems}
    assert {"method", "micro_batch_size", "bogus", "lora.r", "training.max_steps", "training.lr"} <= fields
    text = str(caught.value)
    assert "'lorax'" in text and "allowed here" in text and "learning_rate" in text


def test_steps_or_epochs_exactly_one():
    data = yaml.safe_load(EXAMPLE)
    data["training"] = {"effective_batch_size": 16}
    with pytest.raises(SpecError, match="exactly one of training.max_steps and training.epochs"):
        parse_job(data)


@pytest.mark.parametrize(("changes", "field"), [
    ({"precision": "fp32", "precision_recipe": "pure"}, "precision_recipe"),
    ({"precision": "fp16", "precision_recipe": "pure"}, "precision_recipe"),
    ({"method": "qlora", "precision": "fp32"}, "precision"),
    ({"micro_batch_size": 32}, "micro_batch_size"),
])
def test_cross_field_rules(changes, field):
    data = {**yaml.safe_load(EXAMPLE), **changes}
    with pytest.raises(SpecError) as caught:
        parse_job(data)
    assert [p.field for p in caught.value.problems] == [field]


def test_shorthand_and_missing_fields():
    with pytest.raises(SpecError) as caught:
        parse_job({"name": "x", "model": "org/model"})
    assert {p.field for p in caught.value.problems} == {"dataset", "training"}
    assert "required" in str(caught.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_job(bad)
    with pytest.raises(SpecError, match="cannot read the job file"):
        load_job(tmp_path / "absent.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(SpecError):
        load_job(job)
