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


def replace_node_at_step(cluster, metrics, step: int, running: threading.Thread) -> str | None:
    """Once rank 0 wrote `step`, the worker node goes (as a machine lost) and a fresh one joins in its place (in the
    main thread: starting a node there); returns the removed node's id."""
    deadline = time.monotonic() + 900
    while running.is_alive() and time.monotonic() < deadline:
        if metrics.exists() and any(r.get("kind") == "step" and r.get("step", 0) >= step for r in read_jsonl(metrics)):
            node = cluster.list_all_nodes()[1]
            cluster.remove_node(node, allow_graceful=False)
            cluster.add_node(num_cpus=1)
            return node.node_id
        time.sleep(0.2)
    return None


def test_a_two_node_fsdp_run_is_placed_across_both_and_resumes_after_losing_one(two_nodes, tiny_model, datasets,
                                                                                 tmp_path):
    import ray

    plan = make_plan(tiny_model, datasets["chat"], gpus=2, method="lora", sharding="fsdp",
                     gradient_checkpointing=True, training={"checkpoint_every_steps": 2})
    nodes_before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes_before) == 2
    metrics, outcome = tmp_path / "metrics.jsonl", {}
    job = WorkerJob(plan, str(tmp_path / "out"), str(tmp_path / "work"))
    run = RayRun(job, storage_path=str(tmp_path / "ray"), name="nodes", max_failures=1)
    running = threading.Thread(target=lambda: outcome.update(result=run_on_ray(run, JsonlSink(metrics))), daemon=True)
    running.start()
    # a checkpoint reaches Ray's controller at its next poll (later under load): by step 8 one of them has
    removed = [replace_node_at_step(two_nodes, metrics, 8, running)]
    running.join(timeout=900)
    assert removed[0] is not None and outcome["result"].error is None
    records = read_jsonl(metrics)
    placements = [r for r in records if r["kind"] == "placement"]
    assert [p["attempt"] for p in placements] == [0, 1]
    first, second = ({r["node"] for r in p["ranks"]} for p in placements)
    assert first == nodes_before  # one rank on each node
    assert removed[0] in first and removed[0] not in second and len(second) == 2  # the lost node's rank moved
    resumed = [r for r in records if r["kind"] == "start"][-1]
    assert resumed["attempt"] == 1 and resumed["resumed_step"] >= 2  # the last checkpoint Ray's controller took
    assert [r["step"] for r in records if r["kind"] == "step" and r["attempt"] == 1] == list(
        range(resumed["resumed_step"] + 1, 13))
    ranks = next(r for r in records if r["kind"] == "ranks")["ranks"]
    assert {r["node"] for r in ranks} == second and [r["step"] for r in ranks] == [12, 12]
    assert ranks[0]["weights_checksum"] == ranks[1]["weights_checksum"]
    print("placements:", [p["text"] for p in placements])
