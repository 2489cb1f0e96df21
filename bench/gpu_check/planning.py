"""From the suite's cases to tasks, each planned by effft's own planner against the device: the verdict
(fits or not), the prediction per term, and the cap the run is held to. Pure: no torch here.

Caps: a memory row that fits runs under the whole device (its true peak is the measurement); one the
planner rejects runs alone under the budget the planner had (the OOM it predicts, or a fit that proves
it wrong). Speed and auto runs are the worker as it runs a job: the plan's budget and safety line.
"""

from __future__ import annotations

import math

from bench.gpu_check.configs import AutoJob, MemoryCase, Shape, SpeedCase, Suite
from bench.gpu_check.launch import Task
from planner import GpuSpec, InfeasibleError, Inventory, Plan, cpu_with_memory, make_plan, parse_gpu_name
from planner.adapters import lora_plan
from planner.catalog import CPU
from planner.memory import TERMS, optimizer_bytes, weight_bytes
from planner.profile import profile_from_config
from planner.setup import RunSetup
from planner.spec import JobSpec, parse_job

UNLIMITED_BUDGET = 10**15  # plans a config the planner rejects, for its prediction
DRY_BUDGET = 64 * 2**20  # the dry run's CPU "device": tiny rows fit, the wide full fine-tune does not
MEMORY_FRACTION = 0.9  # the job spec's default max_memory_fraction
PROCESS_OVERHEAD = 2 * 2**30  # per run beside the plan's estimate: CUDA context, kernels (admission only)
NO_CHECKPOINTS = 10**6  # steps between checkpoints: a benchmark saves none


def dry_device() -> GpuSpec:
    """A CPU whose budget (memory x 0.9 - its context) is DRY_BUDGET."""
    return cpu_with_memory(math.ceil((DRY_BUDGET + CPU.context_bytes) / MEMORY_FRACTION))


def device_spec(anchor: dict, dry_run: bool) -> GpuSpec:
    if dry_run:
        return dry_device()
    return parse_gpu_name(anchor["device_name"], anchor["device_total_bytes"])


def job_spec(name: str, shape: Shape, method: str, seq_len: int, micro_batch, checkpointing, effective_batch: int,
             steps: int) -> JobSpec:
    return parse_job({"name": name, "model": shape.source, "dataset": "random-token-ids", "seq_len": seq_len,
                      "method": method, "micro_batch_size": micro_batch, "gradient_checkpointing": checkpointing,
                      "packing": True, "training": {"max_steps": steps, "effective_batch_size": effective_batch,
                                                    "checkpoint_every_steps": NO_CHECKPOINTS}})


def plan_verdict(spec: JobSpec, shape: Shape, gpu: GpuSpec) -> tuple[Plan, bool]:
    """The plan and whether it fits the budget; a rejected config is planned without a limit for its numbers."""
    profile = profile_from_config(shape.config, shape.source, "bench/gpu_check shape")
    try:
        return make_plan(spec, profile, Inventory.single(gpu)), True
    except InfeasibleError:
        return make_plan(spec, profile, Inventory.single(gpu), budget_override=UNLIMITED_BUDGET), False


def budget_of(gpu: GpuSpec) -> int:
    return int(gpu.memory_bytes * MEMORY_FRACTION) - gpu.context_bytes


def plan_columns(plan: Plan) -> dict:
    memory, settings, throughput = plan.memory, plan.settings, plan.throughput
    return {"recipe": f"{settings.precision}/{settings.precision_recipe}", "optimizer": settings.optimizer,
            "attention": settings.attention, "micro_batch": settings.micro_batch_size,
            "accumulation": settings.gradient_accumulation_steps, "checkpointing": settings.gradient_checkpointing,
            "predicted_bytes": memory.total, "predicted_budgeted": memory.budgeted, "predicted_phase": memory.phase,
            **{f"predicted_{term}": getattr(memory, term) for term in TERMS},
            "predicted_tokens_per_second": throughput.tokens_per_second, "predicted_mfu": throughput.mfu,
            "model_flops_per_token": throughput.model_flops_per_token}


def stored_columns(plan: Plan, shape: Shape, gpu: GpuSpec) -> dict:
    """What the planner says stays stored through every phase: the weights (4-bit ones with their quant state)
    and the optimizer state. The plan's terms are those at its peak phase, with the step's transients in them
    (AMP's 16-bit weight copies, QLoRA's dequantized weight, AdamW's temporaries): the tensors a run leaves
    behind are counted against these instead."""
    settings = plan.settings
    arch = profile_from_config(shape.config, shape.source).arch
    lora = settings.lora
    adapter = lora_plan(arch, lora.r, lora.dropout, lora.target_modules) if settings.method != "full" else None
    run = RunSetup(arch=arch, device=gpu, method=settings.method, adapter=adapter, precision=settings.precision,
                   recipe=settings.precision_recipe, optimizer=settings.optimizer,
                   micro_batch=settings.micro_batch_size, seq_len=settings.seq_len, attention=settings.attention,
                   gradient_checkpointing=settings.gradient_checkpointing,
                   grad_accum=settings.gradient_accumulation_steps)
    return {"stored_weights": weight_bytes(run), "stored_optimizer": optimizer_bytes(run)}


def _job(kind: str, plan: Plan, shape: Shape, steps: int, suite: Suite, **extra) -> dict:
    return {"kind": kind, "plan": plan.to_dict(), "config": shape.config, "steps": steps,
            "warmup": suite.warmup_steps, **extra}


def memory_task(index: int, case: MemoryCase, suite: Suite, gpu: GpuSpec, device_total: int) -> Task:
    spec = job_spec(f"memory-{index}", case.shape, case.method, case.seq_len, case.micro_batch, case.checkpointing,
                    case.micro_batch, suite.memory_steps)
    plan, fits = plan_verdict(spec, case.shape, gpu)
    cap = device_total if fits else budget_of(gpu)
    job = _job("worker", plan, case.shape, suite.memory_steps, suite,
               worker_overrides={"memory_cap_bytes": cap, "memory_safety": None})
    row = {"label": case.label, "model": case.shape.name, "method": case.method, "seq_len": case.seq_len,
           "planner_fits": fits, "budget": budget_of(gpu), "cap_bytes": cap, **plan_columns(plan),
           **stored_columns(plan, case.shape, gpu), "plan": plan}
    return Task(f"memory-{index:02d}", "memory", job, row, alone=not fits,
                reserve_bytes=int(plan.memory.budgeted * 1.1) + PROCESS_OVERHEAD, timeout=suite.timeout_seconds)


def memory_tasks(suite: Suite, gpu: GpuSpec, device_total: int) -> list[Task]:
    tasks = [memory_task(i, case, suite, gpu, device_total) for i, case in enumerate(suite.memory)]
    # the largest first packs the device best; the OOM checks (alone) last
    return sorted(tasks, key=lambda t: (t.alone, -t.reserve_bytes))


def speed_tasks(suite: Suite, gpu: GpuSpec) -> list[Task]:
    """Per case: effft's worker on the planner's choice, a plain Trainer with its settings, a naive default."""
    tasks = []
    for index, case in enumerate(suite.speed):
        plan = _speed_plan(index, case, suite, gpu)
        settings = plan.settings
        row = {"label": f"{case.shape.name} {case.method} seq={case.seq_len}", "model": case.shape.name,
               "method": case.method, "seq_len": case.seq_len, **plan_columns(plan), "plan": plan}
        jobs = {"effft": _job("worker", plan, case.shape, suite.speed_steps, suite),
                "plain": _job("plain", plan, case.shape, suite.speed_steps, suite),
                "naive": _job("naive", plan, case.shape, suite.speed_steps, suite,
                              micro_batch=settings.micro_batch_size,
                              accumulation=settings.gradient_accumulation_steps)}
        rows = {"effft": {**row, "packing": True}, "plain": {**row, "packing": True},
                "naive": {**row, **_naive_columns(suite)}}
        tasks += [Task(f"speed-{index}-{variant}", "speed", job, {**rows[variant], "variant": variant}, alone=True,
                       timeout=suite.timeout_seconds) for variant, job in jobs.items()]
    return tasks


def _naive_columns(suite: Suite) -> dict:
    """How the naive run differs from the plan it shares a model, batch and steps with."""
    return {"recipe": "fp32" if suite.dry_run else "fp32 weights, bf16 autocast", "attention": "eager",
            "checkpointing": False, "packing": False, "optimizer": "HF default"}


def _speed_plan(index: int, case: SpeedCase, suite: Suite, gpu: GpuSpec) -> Plan:
    spec = job_spec(f"speed-{index}", case.shape, case.method, case.seq_len, "auto", "auto", case.effective_batch,
                    suite.speed_steps)
    return plan_verdict(spec, case.shape, gpu)[0]


def naive_retry(task: Task, result: dict) -> Task | None:
    """The naive default went out of memory: the same effective batch at half the micro-batch, once more."""
    job = task.job
    oom = result.get("outcome") == "OOM" or result.get("oom_in_log")
    if job["kind"] != "naive" or not oom or job["micro_batch"] <= 1:
        return None
    smaller = {**job, "micro_batch": job["micro_batch"] // 2, "accumulation": job["accumulation"] * 2}
    return Task(f"{task.id}-mb{smaller['micro_batch']}", task.section, smaller,
                {**task.row, "note": f"micro-batch {job['micro_batch']} went out of memory"}, alone=True,
                timeout=task.timeout)


def sweep_points(chosen: int, effective_batch: int, max_points: int, fits) -> tuple[list[int], int]:
    """Powers of two dividing the batch that the planner says fit, nearest the choice first (the larger of two
    as near: more often the faster); and the largest that fits."""
    candidates = {2**k for k in range(int(math.log2(effective_batch)) + 1) if effective_batch % 2**k == 0}
    fitting = sorted(m for m in candidates | {chosen} if m == chosen or fits(m))
    nearest = sorted(fitting, key=lambda m: (abs(math.log2(m / chosen)), -m))
    return nearest[:max_points], max(fitting)


def auto_tasks(suite: Suite, gpu: GpuSpec) -> list[Task]:
    """Every job's choice first, then each job's nearest neighbours in turn: a budget cut short keeps the
    comparisons that matter most."""
    per_job = [_auto_job_tasks(index, auto, suite, gpu) for index, auto in enumerate(suite.auto)]
    rounds = max((len(tasks) for tasks in per_job), default=0)
    return [tasks[rank] for rank in range(rounds) for tasks in per_job if rank < len(tasks)]


def _auto_job_tasks(index: int, auto: AutoJob, suite: Suite, gpu: GpuSpec) -> list[Task]:
    steps = suite.auto_steps
    spec = job_spec(f"auto-{index}", auto.shape, auto.method, auto.seq_len, "auto", "auto", auto.effective_batch,
                    steps)
    chosen = plan_verdict(spec, auto.shape, gpu)[0]
    settings = chosen.settings

    def pinned(micro_batch: int) -> tuple[Plan, bool]:
        return plan_verdict(job_spec(f"auto-{index}-mb{micro_batch}", auto.shape, settings.method, auto.seq_len,
                                     micro_batch, settings.gradient_checkpointing, auto.effective_batch, steps),
                            auto.shape, gpu)

    points, largest = sweep_points(settings.micro_batch_size, auto.effective_batch, auto.max_points,
                                   lambda m: pinned(m)[1])
    tasks = []
    for micro_batch in points:
        plan = chosen if micro_batch == settings.micro_batch_size else pinned(micro_batch)[0]
        row = {"label": f"{auto.shape.name} {auto.method} seq={auto.seq_len} batch={auto.effective_batch}",
               "job": index, "model": auto.shape.name, "chosen_method": settings.method,
               "chosen_micro_batch": settings.micro_batch_size, "is_choice": micro_batch == settings.micro_batch_size,
               "largest_fitting_micro_batch": largest, **plan_columns(plan), "plan": plan}
        tasks.append(Task(f"auto-{index}-mb{micro_batch}", "auto", _job("worker", plan, auto.shape, steps, suite),
                          row, alone=True, timeout=suite.timeout_seconds))
    return tasks


def anchor_task(suite: Suite) -> Task:
    return Task("anchor", "anchor", {"kind": "anchor"}, {"label": "anchor"}, alone=True, timeout=suite.timeout_seconds)
