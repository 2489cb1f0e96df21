"""Two Ray nodes on this machine (ray.cluster_utils.Cluster, one CPU each): a 2-worker run is placed across both,
records where each rank ran, and a node lost mid-run is a worker failure that resumes on a node that joins."""

from __future__ import annotations

import threading
import time

import pytest

from tests.worker.conftest import make_plan
from worker.jsonl import read_jsonl
from worker.ray_run import RayRun, ensure_ray, run_on_ray
from worker.sinks import JsonlSink
from worker.train import WorkerJob

pytestmark = pytest.mark.slow  # a Ray cluster of its own and two attempts of Ray training: about three minutes


@pytest.fixture
def two_nodes():
    """A head and a worker node of 1 CPU each; the session's own Ray (if any) comes back afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    had_ray = ray.is_initialized()
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    if had_ray:
        ensure_ray(num_cpus=2)


def remove_node_at_step(cluster, metrics, step: int, removed: list) -> threading.Thread:
    """Once rank 0 wrote `step`, the worker node goes (as a machine lost) and a fresh one joins in its place."""

    def watch():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if metrics.exists() and any(r.get("kind") == "step" and r.get("step", 0) >= step
                                        for r in read_jsonl(metrics)):
                node = cluster.list_all_nodes()[1]
                removed.append(node.node_id)
                cluster.remove_node(node, allow_graceful=False)
                cluster.add_node(num_cpus=1)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_two_node_fsdp_run_is_placed_across_both_and_resumes_after_losing_one(two_nodes, tiny_model, datasets,
                                                                                 tmp_path):
    import ray

    plan = make_plan(tiny_model, datasets["chat"], gpus=2, method="lora", sharding="fsdp",
                     gradient_checkpointing=True, training={"checkpoint_every_steps": 4})
    nodes_before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes_before) == 2
    metrics, removed = tmp_path / "metrics.jsonl", []
    watcher = remove_node_at_step(two_nodes, metrics, 6, removed)
    job = WorkerJob(plan, str(tmp_path / "out"), str(tmp_path / "work"))
    result = run_on_ray(RayRun(job, storage_path=str(tmp_path / "ray"), name="nodes", max_failures=1),
                        JsonlSink(metrics))
    watcher.join(timeout=5)
    assert result.error is None and removed
    records = read_jsonl(metrics)
    placements = [r for r in records if r["kind"] == "placement"]
    assert [p["attempt"] for p in placements] == [0, 1]
    first, second = ({r["node"] for r in p["ranks"]} for p in placements)
    assert first == nodes_before  # one rank on each node
    assert removed[0] in first and removed[0] not in second and len(second) == 2  # the lost node's rank moved
    assert [r["step"] for r in records if r["kind"] == "step" and r["attempt"] == 1] == list(range(5, 13))
    ranks = next(r for r in records if r["kind"] == "ranks")["ranks"]
    assert {r["node"] for r in ranks} == second and [r["step"] for r in ranks] == [12, 12]
    assert ranks[0]["weights_checksum"] == ranks[1]["weights_checksum"]
    print("placements:", [p["text"] for p in placements])
