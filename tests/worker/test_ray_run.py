"""Runs on a real local Ray (2 CPUs) through Ray Train's TorchTrainer."""

from __future__ import annotations

import pytest
from ray.train import WorkerGroupError

from tests.worker.conftest import make_plan
from tests.worker.faults import KillAtStep
from worker.jsonl import read_jsonl
from worker.ray_run import RayRun, inventory, run_on_ray
from worker.sinks import JsonlSink, ListSink, last_per_step
from worker.train import WorkerJob, train

pytestmark = pytest.mark.usefixtures("ray_cluster")


def ray_run(plan, tmp_path, **options) -> tuple[list[dict], object]:
    job = WorkerJob(plan, str(tmp_path / "out"), str(tmp_path / "work"))
    result = run_on_ray(RayRun(job, storage_path=str(tmp_path / "ray"), name="test", **options),
                        JsonlSink(tmp_path / "metrics.jsonl"))
    return read_jsonl(tmp_path / "metrics.jsonl"), result


def test_the_cluster_without_gpus_is_a_cpu_inventory():
    from service.cli import local_inventory

    cluster, ray_names = inventory()
    assert [g.gpu.name for g in cluster.groups] == ["cpu"] and ray_names == {}
    assert cluster == local_inventory(None, None)  # the scheduler plans what `effft plan` previews


def test_two_ddp_workers_end_at_the_same_step_with_identical_weights(tiny_model, datasets, tmp_path):
    plan = make_plan(tiny_model, datasets["chat"], gpus=2, method="lora")
    assert plan.gpus == 2 and plan.settings.sharding == "ddp"
    records, result = ray_run(plan, tmp_path)
    assert result.error is None
    ranks = next(r for r in records if r["kind"] == "ranks")["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert {r["step"] for r in ranks} == {12}
    assert ranks[0]["weights_checksum"] == ranks[1]["weights_checksum"]
    summary = next(r for r in records if r["kind"] == "summary")
    # both ranks' tokens count: 4 samples of 64 tokens per step, over 12 steps (less the padding of
    # the dataset's last, partly filled block where an epoch ended)
    assert 12 * 4 * 64 - 64 < summary["tokens"] <= 12 * 4 * 64
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


@pytest.mark.slow  # a minute or more of Ray training: `make test-all`
def test_a_killed_worker_resumes_from_its_checkpoint_and_ends_at_exactly_max_steps(tiny_model, datasets, tmp_path):
    plan = make_plan(tiny_model, datasets["chat"], method="lora", training={"checkpoint_every_steps": 4})
    records, result = ray_run(plan, tmp_path, callbacks=(KillAtStep(6),), max_failures=1)
    assert result.error is None
    starts = [r for r in records if r["kind"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from"] and starts[1]["attempt"] == 1
    resumed = [r["step"] for r in records if r["kind"] == "step" and r["attempt"] == 1]
    assert resumed == list(range(5, 13))  # from the step-4 checkpoint to the end, nothing more
    assert [r["step"] for r in last_per_step(records)] == list(range(1, 13))
    summary = next(r for r in records if r["kind"] == "summary")
    assert summary["step"] == 12
    # the resumed run replays the lost steps exactly: same losses as the first attempt had
    first = {r["step"]: r["loss"] for r in records if r["kind"] == "step" and r["attempt"] == 0}
    assert first[5] == pytest.approx(next(r["loss"] for r in records if r.get("attempt") == 1 and r.get("step") == 5))
    # ... and ends with the weights of a run that was never killed (the same code, in-process)
    straight = train(WorkerJob(plan, str(tmp_path / "out2"), str(tmp_path / "work2")), ListSink())
    assert summary["weights_checksum"] == pytest.approx(straight["weights_checksum"], rel=1e-5)


@pytest.mark.slow  # a minute or more of Ray training: `make test-all`
def test_a_run_started_again_after_its_driver_failed_resumes_from_ray_storage(tiny_model, datasets, tmp_path):
    plan = make_plan(tiny_model, datasets["chat"], method="lora", training={"checkpoint_every_steps": 4})
    with pytest.raises(WorkerGroupError):  # no retries allowed: the run fails with its worker
        ray_run(plan, tmp_path, callbacks=(KillAtStep(6),), max_failures=0)
    records, result = ray_run(plan, tmp_path)  # the same name and storage path, as `effft run` again does
    assert result.error is None
    second = records[[i for i, r in enumerate(records) if r["kind"] == "start"][-1]:]
    assert second[0]["resumed_from"]
    assert [r["step"] for r in second if r["kind"] == "step"] == list(range(5, 13))


FSDP_BAND = 0.85  # measured / predicted per rank: never above 1 (the plan is an upper bound), at most 15 % over


def assert_per_rank_bound(ranks: list[dict]) -> list[float]:
    """Each rank's measured peak within the plan's per-rank prediction, and close to it."""
    ratios = [r["memory_peak_bytes"] / r["memory_predicted_bytes"] for r in ranks]
    assert all(FSDP_BAND <= ratio <= 1 for ratio in ratios), ratios
    return ratios


def output_checksum(folder) -> float:
    """sum + sum of squares over every tensor written: the weights_checksum of the trained parameters."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    assert len(files) == 1, files  # one file, written once (by rank 0)
    return float(sum(t.double().sum() + t.double().square().sum() for t in load_file(files[0]).values()))


@pytest.mark.parametrize("method", [pytest.param("full", marks=pytest.mark.slow), "lora"])
def test_fsdp_over_two_workers_trains_identical_ranks_and_writes_a_loadable_output_once(tiny_model, datasets,
                                                                                         tmp_path, method):
    plan = make_plan(tiny_model, datasets["chat"], gpus=2, method=method, sharding="fsdp",
                     gradient_checkpointing=True)
    assert plan.settings.sharding == "fsdp" and plan.gpus == 2
    records, result = ray_run(plan, tmp_path)
    assert result.error is None
    ranks = next(r for r in records if r["kind"] == "ranks")["ranks"]
    assert [r["step"] for r in ranks] == [12, 12] and ranks[0]["weights_checksum"] == ranks[1]["weights_checksum"]
    # each rank measured its own peak, held against the plan's per-rank prediction
    ratios = assert_per_rank_bound(ranks)
    print(f"FSDP {method}: per-rank measured / predicted: {[f'{r:.3f}' for r in ratios]} "
          f"({[r['memory_peak_bytes'] for r in ranks]} of {ranks[0]['memory_predicted_bytes']})")
    out = tmp_path / "out"
    assert output_checksum(out) == pytest.approx(ranks[0]["weights_checksum"], rel=1e-6)
    if method == "full":
        from transformers import AutoModelForCausalLM

        assert AutoModelForCausalLM.from_pretrained(out).num_parameters() == plan.params.total
    else:
        from peft import PeftConfig

        assert PeftConfig.from_pretrained(out).r == plan.settings.lora.r


@pytest.mark.slow  # two Ray runs of two workers: about three minutes
@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_killed_fsdp_worker_resumes_to_the_weights_of_an_uninterrupted_run(tiny_model, datasets, tmp_path, method):
    plan = make_plan(tiny_model, datasets["chat"], gpus=2, method=method, sharding="fsdp",
                     gradient_checkpointing=True, training={"checkpoint_every_steps": 4})
    straight, result = ray_run(plan, tmp_path / "straight")
    assert result.error is None
    records, result = ray_run(plan, tmp_path / "killed", callbacks=(KillAtStep(6),), max_failures=1)
    assert result.error is None
    starts = [r for r in records if r["kind"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from"] and starts[1]["world_size"] == 2
    assert [r["step"] for r in records if r["kind"] == "step" and r["attempt"] == 1] == list(range(5, 13))
    ranks = next(r for r in records if r["kind"] == "ranks")["ranks"]
    reference = next(r for r in straight if r["kind"] == "ranks")["ranks"]
    assert {r["weights_checksum"] for r in ranks} == {ranks[0]["weights_checksum"]}
    assert ranks[0]["weights_checksum"] == pytest.approx(reference[0]["weights_checksum"], rel=1e-6)
    assert output_checksum(tmp_path / "killed" / "out") == pytest.approx(ranks[0]["weights_checksum"], rel=1e-6)
    assert_per_rank_bound(ranks)
