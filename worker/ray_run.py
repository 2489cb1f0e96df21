"""All of effft's Ray code: the cluster's inventory, and a Plan run on Ray Train's TorchTrainer.

Metrics do not travel through `ray.train.report` (it blocks until the controller polls): rank 0
writes them straight to the sink. Ray gets a report only at each checkpoint (rank 0 attaches the
Trainer's checkpoint folder) and once at the end (every rank's step and weights fingerprint).
A checkpoint's upload to Ray's storage runs beside training (Ray's ASYNC upload mode); the Trainer's own
write stays on the step's path (transformers has no asynchronous save).
A restarted run, after a worker died (FailureConfig) or with the same name and storage path
after the driver died, resumes from the latest checkpoint Ray holds. Ray keeps the run's last N
checkpoints; effft keeps the one a run resumed from (worker/retention.py) and notes what was removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import ray
import ray.train
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    CheckpointUploadMode,
    FailureConfig,
    RunConfig,
    ScalingConfig,
    UserCallback,
)
from ray.train.torch import TorchConfig, TorchTrainer
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from planner.catalog import GpuGroup, Inventory, cpu_with_memory, parse_gpu_name
from worker.budget import OutOfMemory
from worker.host import host_memory_bytes
from worker.ranks import all_ranks, gather_rank_files
from worker.ray_env import PRIVATE_CLUSTER_ENV, TRAIN_ENV, report_poll_seconds, set_defaults
from worker.retention import RESUMED_FOLDER, CheckpointLedger, keep_resumed
from worker.sinks import MetricsSink
from worker.train import WorkerJob, train

HF_CHECKPOINT = "checkpoint"  # the Trainer's folder inside each Ray checkpoint
SETTLE_SECONDS = 300  # a failing attempt waits at most this long for its last checkpoint's upload


_CONNECTING = threading.Lock()  # the service's planning threads may all ask for the cluster at once


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to RAY_ADDRESS / `address`, or start a local Ray for this process (once, whichever thread asks)."""
    with _CONNECTING:
        _connect(address, num_cpus)


def _connect(address: str | None, num_cpus: int | None) -> None:
    if ray.is_initialized():
        return
    set_defaults(TRAIN_ENV)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    set_defaults(PRIVATE_CLUSTER_ENV)  # a Ray of this process's own
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def inventory() -> tuple[Inventory, dict[str, str]]:
    """GPUs per node as Ray sees them, and each catalog name's Ray accelerator type; the CPU when none."""
    groups, ray_names = [], {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        gpus = int(resources.get("GPU", 0))
        kinds = [k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")]
        if gpus and kinds:
            spec = parse_gpu_name(kinds[0])
            ray_names[spec.name] = kinds[0]
            groups.append(GpuGroup(node["NodeID"][:12], spec, gpus))
    if groups:
        return Inventory(tuple(groups)), ray_names
    # the host's memory, not Ray's `memory` resource (a share of what was free when Ray started): the same
    # number `effft plan` uses, so a preview and the run plan alike
    return Inventory.single(cpu_with_memory(host_memory_bytes()), 1), ray_names


@dataclass(frozen=True)
class RayRun:
    job: WorkerJob
    storage_path: str  # Ray's checkpoints; shared storage (NFS, S3) when there are several nodes
    name: str
    accelerator_type: str | None = None  # Ray's name for the plan's GPU
    max_failures: int = 1
    # more Trainer callbacks for every attempt, on every rank (pickled to the workers): the seam through which
    # tests inject faults (tests/worker/faults.py); the service and `effft run` add none
    callbacks: tuple[TrainerCallback, ...] = ()
    attempt: int = 0  # how many times this run was re-planned (worker/recovery.py)
    device_share: float | None = None  # packed: the share of each GPU (or of the CPU's cores) to ask Ray for

    @property
    def on_gpu(self) -> bool:
        return self.job.plan.gpu != "cpu"

    def scaling(self) -> ScalingConfig:
        workers, share = self.job.plan.gpus, self.device_share
        if self.on_gpu:
            # packed: Ray's fractional GPUs never sum past 1 on a device, as the held bytes never pass its memory
            extra = {} if share is None else {"resources_per_worker": {"GPU": share}}
            return ScalingConfig(num_workers=workers, use_gpu=True, accelerator_type=self.accelerator_type, **extra)
        # Ray sets a worker's torch threads to its CPUs: give the CPU workers the whole cluster, or a packed job
        # the share of its cores that its share of the memory is
        total = int(ray.cluster_resources().get("CPU", 1))
        cpus = max(1, total // workers) if share is None else round(max(1e-4, total * share), 4)
        return ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": cpus})


class _CheckpointToRay(TrainerCallback):
    """After the Trainer saves, every rank reports; rank 0 attaches the checkpoint. Its upload runs beside
    training (ASYNC), from hard links in a folder of its own (the Trainer may rotate the checkpoint away
    meanwhile: the links keep its files), which Ray deletes once uploaded."""

    def __init__(self, handoff_root: str):
        self.handoff_root = handoff_root  # beside the attempts' work folders: on their file system
        self.uploading: list[Path] = []  # hand-off folders Ray has not uploaded yet, as far as we know
        self.reported_before: str | None = None  # the worker's latest checkpoint before the last hand-off

    def on_save(self, args, state, control, **kwargs):
        own = get_last_checkpoint(args.output_dir)
        rank_files = gather_rank_files(own)
        latest = own if state.is_world_process_zero else None
        metrics = {"step": state.global_step, "final": False}
        checkpoint = None
        if latest is not None:
            folder = Path(tempfile.mkdtemp(prefix="effft-upload-", dir=self.handoff_root))
            _link_or_copy(latest, folder / HF_CHECKPOINT)
            for name, data in rank_files.items():  # the other ranks' RNG states: a resumed rank draws as before
                if not (folder / HF_CHECKPOINT / name).exists():
                    (folder / HF_CHECKPOINT / name).write_bytes(data)
            checkpoint = Checkpoint.from_directory(str(folder))
            self.uploading.append(folder)
            self.reported_before = _path_of(ray.train.get_checkpoint())
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_mode=CheckpointUploadMode.ASYNC,
                         delete_local_checkpoint_after_upload=checkpoint is not None)

    def settle(self, seconds: float) -> None:
        """Before an attempt fails: wait (at most `seconds`) for the uploads still running, so the save just
        before the failure is the one a retry or a re-plan resumes from (Ray waits for them only when the
        training function ends well). An upload is done when Ray deleted its folder; its report is queued
        when the worker's latest checkpoint changes."""
        if not self.uploading:
            return
        deadline = time.monotonic() + seconds
        while any(folder.exists() for folder in self.uploading) and time.monotonic() < deadline:
            time.sleep(0.05)
        while _path_of(ray.train.get_checkpoint()) == self.reported_before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2 * report_poll_seconds())  # the controller takes the report at its next poll


def _path_of(checkpoint: Checkpoint | None) -> str | None:
    return checkpoint.path if checkpoint is not None else None


def _link_or_copy(source: str, target: Path) -> None:
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except OSError:  # a file system without hard links
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


class _RankReportsToSink(UserCallback):
    """Runs in Ray's controller, after Ray's own checkpoint manager: writes the checkpoints Ray (or a resume)
    removed, and at the end every rank's final step and weights fingerprint, to the sink."""

    def __init__(self, sink: MetricsSink, ledger: CheckpointLedger):
        self.sink, self.ledger = sink, ledger

    def after_report(self, run_context, metrics, checkpoint):
        final = bool(metrics) and all(m.get("final") for m in metrics)
        if (checkpoint is not None or final) and (removed := self.ledger.removed_since()) is not None:
            self.sink.write(removed)
        if final:
            self.sink.write({"kind": "ranks", "ranks": [dict(m) for m in metrics]})


def _ensure(folder: str) -> str:
    Path(folder).mkdir(parents=True, exist_ok=True)
    return folder


def evidence_path(run: RayRun) -> Path:
    """Where a run that ran out of memory leaves its evidence, per plan: beside Ray's checkpoints."""
    key = hashlib.sha256(run.job.plan.settings.model_dump_json().encode()).hexdigest()[:16]
    return Path(run.storage_path, "effft-oom", f"{run.name}-{key}.json")


def memory_evidence(run: RayRun) -> dict | None:
    path = evidence_path(run)
    return json.loads(path.read_text()) if path.exists() else None


def clear_memory_evidence(run: RayRun) -> None:
    evidence_path(run).unlink(missing_ok=True)


def resumed_root(run: RayRun) -> Path:
    """Where the checkpoint a run resumed from is kept, beside Ray's folder of the run."""
    return Path(run.storage_path, RESUMED_FOLDER, run.name)


def _keep_resumed(run: RayRun, checkpoint: Checkpoint) -> None:
    """Rank 0 keeps the checkpoint this attempt resumes from (Ray's retention would remove it in time)."""
    if ray.train.get_context().get_world_rank() == 0 and Path(checkpoint.path).is_dir():
        keep_resumed(Path(checkpoint.path), resumed_root(run))


def _train_loop(config: dict) -> None:
    run: RayRun = config["run"]
    sink = config["sink"]
    if (evidence := memory_evidence(run)) is not None:  # Ray's retry of a plan that ran out: it would again
        raise OutOfMemory(evidence)
    handoff = _CheckpointToRay(_ensure(run.job.work_dir))
    resume, callbacks = None, [handoff, *run.callbacks]
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        _keep_resumed(run, checkpoint)
        local = tempfile.mkdtemp(prefix="effft-resume-")
        checkpoint.to_directory(local)
        resume = str(Path(local, HF_CHECKPOINT))
        if run.job.fresh_optimizer:  # 8-bit AdamW cannot load AdamW's state: the Trainer then starts it afresh
            Path(resume, "optimizer.pt").unlink(missing_ok=True)
    placement = record_placement(sink, attempt=int(resume is not None))
    # a fresh folder per attempt: the Trainer's checkpoints of a dead attempt must not mix with this one's
    job = replace(run.job, work_dir=tempfile.mkdtemp(prefix="effft-work-", dir=_ensure(run.job.work_dir)))
    try:
        summary = _train_attempt(run, job, sink, callbacks, resume)
    except Exception as error:
        handoff.settle(SETTLE_SECONDS)
        shutil.rmtree(job.work_dir, ignore_errors=True)  # Ray holds the checkpoints that count: free the disk
        if isinstance(error, OutOfMemory):
            path = evidence_path(run)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(error.evidence))
        raise
    finally:
        if resume is not None:
            shutil.rmtree(Path(resume).parent, ignore_errors=True)  # the local copy of Ray's checkpoint
    shutil.rmtree(job.work_dir, ignore_errors=True)  # the Trainer's own checkpoints: Ray holds the ones that count
    # each rank's own measured peak beside the plan's per-rank prediction: sharded plans are checked per rank
    ray.train.report({"final": True, **placement, "step": summary["step"],
                      "weights_checksum": summary["weights_checksum"],
                      "memory_peak_bytes": summary["memory_peak_bytes"],
                      "memory_predicted_bytes": summary["memory_predicted_bytes"]}, checkpoint=None)


def record_placement(sink, attempt: int) -> dict:
    """Where each rank of this attempt runs: rank 0 writes every rank's node (a note in the job's events); returns
    this rank's own."""
    mine = {"rank": ray.train.get_context().get_world_rank(), "node": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address()}
    ranks = all_ranks(mine)
    if mine["rank"] == 0:
        nodes = len({r["node"] for r in ranks})
        sink.write({"kind": "placement", "attempt": attempt, "ranks": ranks, "nodes": nodes, "time": time.time(),
                    "text": f"attempt {attempt}: {len(ranks)} ranks on {nodes} node(s): "
                            + ", ".join(f"rank {r['rank']} on {r['node'][:12]} ({r['node_ip']})" for r in ranks)})
    return mine


def _train_attempt(run: RayRun, job: WorkerJob, sink, callbacks, resume: str | None) -> dict:
    from ray.train.huggingface.transformers import prepare_trainer

    return train(job, sink, callbacks=callbacks, resume_from=resume, attempt=int(resume is not None),
                 plan_attempt=run.attempt, wrap_trainer=prepare_trainer)


def ledger(run: RayRun) -> CheckpointLedger:
    """What the run's storage holds now: each later report says what was removed since."""
    return CheckpointLedger(Path(run.storage_path, run.name), resumed_root(run), run.job.checkpoints_to_keep)


def run_on_ray(run: RayRun, sink: MetricsSink):
    """Run the plan to the end (resuming if Ray holds a checkpoint of this run); returns Ray's Result."""
    trainer = TorchTrainer(
        _train_loop, train_loop_config={"run": run, "sink": sink}, scaling_config=run.scaling(),
        torch_config=TorchConfig(backend="nccl" if run.on_gpu else "gloo"),
        run_config=RunConfig(name=run.name, storage_path=run.storage_path,
                             failure_config=FailureConfig(max_failures=run.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=run.job.checkpoints_to_keep),
                             callbacks=[_RankReportsToSink(sink, ledger(run))]))
    return trainer.fit()


# -- Ray Jobs: how the service runs a plan, so that training outlives the service's process ------------

def _jobs_client(dashboard_url: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard_url)


def submit_ray_job(dashboard_url: str, submission_id: str, entrypoint: str, env: dict[str, str]) -> str:
    return _jobs_client(dashboard_url).submit_job(entrypoint=entrypoint, submission_id=submission_id,
                                                  runtime_env={"env_vars": env})


def ray_job_status(dashboard_url: str, submission_id: str) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED; MISSING when Ray does not know the job."""
    try:
        return str(_jobs_client(dashboard_url).get_job_status(submission_id).value)
    except RuntimeError as error:  # the client raises RuntimeError for an unknown submission id
        if "does not exist" in str(error) or "404" in str(error):
            return "MISSING"
        raise


def ray_job_exit_code(dashboard_url: str, submission_id: str) -> int | None:
    """The driver's exit code as Ray recorded it (None while it runs, or when its supervisor died first)."""
    return _jobs_client(dashboard_url).get_job_info(submission_id).driver_exit_code


def stop_ray_job(dashboard_url: str, submission_id: str) -> None:
    _jobs_client(dashboard_url).stop_job(submission_id)


def ray_job_logs(dashboard_url: str, submission_id: str) -> str:
    return _jobs_client(dashboard_url).get_job_logs(submission_id)
