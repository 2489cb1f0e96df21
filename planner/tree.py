"""The decision tree: spec + model profile + inventory -> Plan, every choice recorded with numbers."""

from __future__ import annotations

from planner.adapters import AdapterPlan, ia3_plan, lora_plan
from planner.attention_choice import attention_for, check_attention
from planner.calibration import EMPTY, CalibrationTable
from planner.catalog import Inventory
from planner.context import PlanContext, check_sharding, checkpoint_interval, choose_gpus
from planner.errors import FieldProblem, InfeasibleError, SpecError
from planner.layer_walk import estimate_activations
from planner.memory import MemoryBreakdown, estimate_memory
from planner.objective import Queue, resolved_objective
from planner.plan import Decision, ParamCounts, Plan, PlanMemory, PlanThroughput
from planner.profile import ModelProfile
from planner.rules import AUTO_SKIPS, MIN_THROUGHPUT_GAIN, STATIC_LADDER, THROUGHPUT_COST, Rung
from planner.settings_out import worker_settings
from planner.setup import RunSetup
from planner.spec import JobSpec
from planner.throughput import Throughput, estimate_throughput
from planner.units import size_text

DEFAULT_SEQ_LEN = 2048


def _precision(ctx: PlanContext) -> tuple[str, str]:
    spec, gpu = ctx.spec, ctx.gpu
    if spec.precision != "auto":
        precision = spec.precision
        if precision == "bf16" and not gpu.bf16 and not gpu.is_cpu:
            raise SpecError([FieldProblem("precision", "bf16", f"{gpu.name} has no bf16; use fp16 or auto")])
        ctx.decide("0->1 static", "precision", precision, "pinned", pinned=True)
    elif gpu.is_cpu:
        precision = "fp32"
        ctx.decide("0->1 static", "precision", "fp32", "this CPU has no fast bf16 (18-40x slower than fp32 here)")
    elif gpu.bf16:
        precision = "bf16"
        ctx.decide("0->1 static", "precision", "bf16", f"{gpu.name} computes bf16 on tensor cores",
                   bf16_flops=gpu.bf16_flops, fp32_flops=gpu.fp32_flops)
    else:
        precision = "fp16"
        ctx.decide("0->1 static", "precision", "fp16", f"{gpu.name} has no bf16: fp16 with dynamic loss scaling",
                   fp16_flops=gpu.fp16_flops)
    if precision == "fp32":
        return precision, "fp32"
    recipe = spec.precision_recipe if spec.precision_recipe != "auto" else "amp"
    ctx.decide("0->1 static", "precision_recipe", recipe,
               "pinned" if spec.precision_recipe != "auto" else
               "AMP: fp32 trained weights and optimizer state, 16-bit compute (stable; fp16 needs it for loss scaling)",
               pinned=spec.precision_recipe != "auto")
    return precision, recipe


def _adapter(spec: JobSpec, profile: ModelProfile, method: str) -> AdapterPlan | None:
    try:
        if method in ("lora", "qlora"):
            return lora_plan(profile.arch, spec.lora.r, spec.lora.dropout, spec.lora.target_modules)
        if method == "ia3":
            return ia3_plan(profile.arch, spec.ia3.target_modules, spec.ia3.feedforward_modules)
    except ValueError as error:
        field_name = "ia3.target_modules" if method == "ia3" else "lora.target_modules"
        raise SpecError([FieldProblem(field_name, getattr(spec, "ia3" if method == "ia3" else "lora")
                                      .target_modules, str(error))]) from None
    return None


def _ladder(ctx: PlanContext) -> list[Rung]:
    spec = ctx.spec
    rungs = []
    for rung in STATIC_LADDER:
        if rung.multi_gpu_only and ctx.gpus < 2:
            continue
        if spec.method == "auto" and rung.name in AUTO_SKIPS:
            continue
        if spec.method == "ia3" and rung.method == "lora":
            rung = Rung(rung.name.replace("lora", "ia3"), "ia3", rung.sharding, rung.optimizer,
                        rung.multi_gpu_only, "IA3: learned scaling vectors on a frozen 16-bit base")
        if spec.method not in ("auto", rung.method):
            continue
        if spec.sharding != "auto" and (rung.sharding == "fsdp") != (spec.sharding == "fsdp"):
            continue
        if spec.optimizer != "auto":
            rung = Rung(rung.name, rung.method, rung.sharding, spec.optimizer, rung.multi_gpu_only, rung.why)
        if rung not in rungs:
            rungs.append(rung)
    return rungs


def _run_for(ctx: PlanContext, rung: Rung, precision: str, recipe: str, seq_len: int, **knobs) -> RunSetup:
    sharding = rung.sharding if rung.sharding == "fsdp" else ("ddp" if ctx.gpus > 1 else "none")
    # QLoRA computes in 16-bit, except where fp32 was asked for on a CPU (bitsandbytes runs fp32 there,
    # and this CPU's bf16 is 18-40x slower)
    if rung.method == "qlora" and precision == "fp32" and not (ctx.gpu.is_cpu and ctx.spec.precision == "fp32"):
        precision, recipe = ("bf16" if ctx.gpu.bf16 or ctx.gpu.is_cpu else "fp16"), "amp"
    micro_batch = knobs.get("micro_batch", 1)
    # the accumulation the effective batch will need at this micro-batch: with it, earlier micro-batches'
    # gradients stay through the step, so steps 1 and 2 must count them as the final plan does
    per_gpu = ctx.spec.training.effective_batch_size // (ctx.gpus if sharding != "none" else 1)
    return RunSetup(arch=ctx.profile.arch, device=ctx.gpu, method=rung.method,
                    adapter=_adapter(ctx.spec, ctx.profile, rung.method), precision=precision, recipe=recipe,
                    optimizer=rung.optimizer, micro_batch=micro_batch, seq_len=seq_len,
                    attention=attention_for(ctx.spec, ctx.profile.arch),
                    gradient_checkpointing=knobs.get("gradient_checkpointing", True),
                    grad_accum=max(1, per_gpu // micro_batch), sharding=sharding, gpus=ctx.gpus)


def _describe(memory: MemoryBreakdown) -> str:
    return ", ".join(f"{name} {size_text(value)}" for name, value in memory.terms().items() if value)


def _static_step(ctx: PlanContext, precision: str, recipe: str, seq_len: int) -> RunSetup:
    spec = ctx.spec
    gc_pinned = spec.gradient_checkpointing if spec.gradient_checkpointing != "auto" else None
    mb_pinned = spec.micro_batch_size if spec.micro_batch_size != "auto" else None
    tried: list[tuple[Rung, MemoryBreakdown]] = []
    for rung in _ladder(ctx):
        run = _run_for(ctx, rung, precision, recipe, seq_len, micro_batch=mb_pinned or 1,
                       gradient_checkpointing=True if gc_pinned is None else gc_pinned)
        ok, memory = ctx.fits(run)
        if ok:
            ctx.decide("0->1 static", "method", rung.method, rung.why, pinned=spec.method != "auto",
                       needed_bytes=memory.budgeted, budget_bytes=ctx.budget, rung=rung.name)
            if rung.optimizer != "adamw" or spec.optimizer != "auto":
                ctx.decide("0->1 static", "optimizer", rung.optimizer, "pinned" if spec.optimizer != "auto"
                           else "8-bit AdamW states make the static part fit", pinned=spec.optimizer != "auto")
            return run
        ctx.decide("0->1 static", "method", f"not {rung.name}",
                   f"needs {size_text(memory.budgeted)} at micro-batch {run.micro_batch} "
                   f"({_describe(memory)}); budget {size_text(ctx.budget)}", needed_bytes=memory.budgeted,
                   budget_bytes=ctx.budget)
        tried.append((rung, memory))
    raise _infeasible(ctx, tried, precision, recipe, seq_len)


def _infeasible(ctx: PlanContext, tried, precision: str, recipe: str, seq_len: int) -> InfeasibleError:
    spec = ctx.spec
    pins = [f"{name}={getattr(spec, name)}" for name in ("method", "micro_batch_size", "gradient_checkpointing",
                                                          "optimizer") if getattr(spec, name) != "auto"]
    rung, memory = tried[-1] if tried else (None, None)
    lines = [f"job {spec.name!r} does not fit: needs {size_text(memory.budgeted)} per GPU at micro-batch "
             f"{spec.micro_batch_size if spec.micro_batch_size != 'auto' else 1} with {rung.name} "
             f"({_describe(memory)}); the largest GPU ({ctx.gpu.name}) has {size_text(ctx.budget)} usable "
             f"({size_text(ctx.gpu.memory_bytes)} x {spec.resources.max_memory_fraction} - "
             f"{size_text(ctx.gpu.context_bytes)} CUDA context)"]
    if pins:
        free = spec.model_copy(update={"method": "auto", "micro_batch_size": "auto", "gradient_checkpointing": "auto",
                                       "optimizer": "auto"})
        try:
            alt = make_plan(free, ctx.profile, Inventory.single(ctx.gpu, ctx.gpus), ctx.budget_input,
                            ctx.calibration)
            lines.append(f"with pins {', '.join(pins)} removed, {alt.settings.method} at micro-batch "
                         f"{alt.settings.micro_batch_size} would need {size_text(alt.memory.budgeted)}")
        except (InfeasibleError, SpecError):
            pass
    qlora = RunSetup(arch=ctx.profile.arch, device=ctx.gpu, method="qlora",
                     adapter=_adapter(spec, ctx.profile, "qlora"),
                     precision="bf16" if ctx.gpu.bf16 or ctx.gpu.is_cpu else "fp16",
                     recipe="amp", optimizer="adamw_8bit", micro_batch=1, seq_len=seq_len,
                     attention=attention_for(spec, ctx.profile.arch),
                     gradient_checkpointing=True, grad_accum=spec.training.effective_batch_size)
    lines.append(f"QLoRA with 8-bit AdamW and checkpointing would need {size_text(estimate_memory(qlora).budgeted)} "
                 f"on one GPU; shorter seq_len, more GPUs or a larger GPU would help")
    return InfeasibleError("; ".join(lines), memory.budgeted if memory else 0, ctx.budget)


def _activation_step(ctx: PlanContext, run: RunSetup) -> RunSetup:
    spec = ctx.spec
    if spec.attention == "auto" and run.attention == "eager":
        ctx.decide("0->1 activations", "attention", "eager", f"{run.arch.model_type} soft-caps its attention "
                   "logits, which SDPA cannot do: eager keeps the a*s^2 probabilities")
    elif spec.attention == "auto":
        ctx.decide("0->1 activations", "attention", "sdpa", "SDPA (flash / memory-efficient kernels): no a*s^2 "
                   "probabilities kept; the lecture's default")
    else:
        ctx.decide("0->1 activations", "attention", spec.attention, "pinned", pinned=True)
    if spec.gradient_checkpointing != "auto":
        ctx.decide("0->1 activations", "gradient_checkpointing", spec.gradient_checkpointing, "pinned", pinned=True)
        return run
    without = run.with_(gradient_checkpointing=False)
    ok, memory = ctx.fits(without)
    least = spec.objective == "least_memory"
    if ok and not least:
        ctx.decide("0->1 activations", "gradient_checkpointing", False,
                   f"micro-batch {run.micro_batch} fits without it ({size_text(memory.budgeted)} of "
                   f"{size_text(ctx.budget)}); checkpointing would cost a recompute (~1/3 more FLOPs)",
                   needed_bytes=memory.budgeted)
        return without
    with_gc = ctx.fits(run)[1]
    reason = ("objective least_memory" if least else
              f"micro-batch {run.micro_batch} needs {size_text(memory.budgeted)} without it; "
              f"{size_text(with_gc.budgeted)} with it")
    ctx.decide("0->1 activations", "gradient_checkpointing", True, reason, needed_bytes=with_gc.budgeted,
               without_bytes=memory.budgeted)
    return run


def _throughput(run: RunSetup) -> Throughput:
    acts = estimate_activations(run.activation_setup()).saved(run.gradient_checkpointing)
    return estimate_throughput(run, acts)


def _batch_step(ctx: PlanContext, run: RunSetup) -> RunSetup:
    spec = ctx.spec
    effective = spec.training.effective_batch_size
    dp = run.data_parallel
    if effective % dp:
        raise SpecError([FieldProblem("training.effective_batch_size", effective,
                                      f"must be a multiple of the {dp} data-parallel GPUs; use "
                                      f"{(effective // dp + 1) * dp}, or set resources.gpus")])
    per_gpu = effective // dp
    if spec.micro_batch_size != "auto":
        mb = spec.micro_batch_size
        if per_gpu % mb:
            raise SpecError([FieldProblem("micro_batch_size", mb, f"must divide the per-GPU batch {per_gpu} "
                                          f"(effective {effective} over {dp} GPU(s)) so accumulation is exact")])
        ctx.decide("1->n", "micro_batch_size", mb, "pinned", pinned=True)
        best = run.with_(micro_batch=mb)
    else:
        best = run.with_(micro_batch=1, grad_accum=per_gpu)
        best_tps = _throughput(best).tokens_per_second
        reason = f"micro-batch 1 gives {best_tps:,.0f} tokens/s"
        evaluated = [(best, best_tps)]
        if spec.objective != "least_memory":
            for mb in (m for m in range(2, per_gpu + 1) if per_gpu % m == 0):
                candidate = run.with_(micro_batch=mb, grad_accum=per_gpu // mb)
                ok, memory = ctx.fits(candidate)
                if not ok:
                    reason += f"; {mb} would need {size_text(memory.budgeted)} > {size_text(ctx.budget)}"
                    break
                tps = _throughput(candidate).tokens_per_second
                if tps < best_tps * (1 + MIN_THROUGHPUT_GAIN):
                    reason += f"; {mb} would give only {tps:,.0f} (< +{MIN_THROUGHPUT_GAIN:.0%}): math-bound"
                    break
                best, best_tps = candidate, tps
                evaluated.append((candidate, tps))
                reason += f"; {mb} gives {tps:,.0f}"
        else:
            reason += "; objective least_memory keeps it at 1"
        if spec.objective == "throughput":
            best, best_tps, reason = _lighter_for_sharing(ctx, evaluated, best, best_tps, reason)
        ctx.decide("1->n", "micro_batch_size", best.micro_batch, reason, tokens_per_second=best_tps)
    best = best.with_(grad_accum=per_gpu // best.micro_batch)
    ok, memory = ctx.fits(best)
    if not ok:
        raise InfeasibleError(f"pinned micro_batch_size {best.micro_batch} does not fit: needs "
                              f"{size_text(memory.budgeted)} ({_describe(memory)}); budget {size_text(ctx.budget)} "
                              f"on {ctx.gpu.name}; "
                              f"micro-batch 1 needs {size_text(ctx.fits(best.with_(micro_batch=1))[1].budgeted)}",
                              memory.budgeted, ctx.budget)
    ctx.decide("1->n", "gradient_accumulation_steps", best.grad_accum,
               f"{best.micro_batch} x {best.grad_accum} steps x {dp} GPU(s) = effective batch {effective}")
    if spec.sharding != "auto":
        ctx.decide("1->n", "sharding", run.sharding, "pinned", pinned=True)
    elif run.sharding != "none":
        ctx.decide("1->n", "sharding", run.sharding, "FSDP: the static part does not fit replicated"
                   if run.sharding == "fsdp" else f"DDP: a replica per GPU, {ctx.gpus}x the samples per step")
    return best


def _lighter_for_sharing(ctx: PlanContext, evaluated, best: RunSetup, best_tps: float, reason: str):
    """objective throughput: the smallest micro-batch within THROUGHPUT_COST of the fastest, so that packed
    jobs leave more room beside them."""
    for candidate, tps in evaluated:
        if tps >= best_tps * (1 - THROUGHPUT_COST):
            if candidate.micro_batch != best.micro_batch:
                held, fastest = ctx.fits(candidate)[1].budgeted, ctx.fits(best)[1].budgeted
                reason += (f"; objective throughput takes {candidate.micro_batch}: {tps:,.0f} tokens/s is "
                           f"{tps / best_tps:.0%} of micro-batch {best.micro_batch}'s, in {size_text(held)} "
                           f"instead of {size_text(fastest)}, leaving room to pack other jobs beside it")
            return candidate, tps, reason
    return best, best_tps, reason


def make_plan(spec: JobSpec, profile: ModelProfile, inventory: Inventory, budget_override: int | None = None,
              calibration: CalibrationTable = EMPTY, seq_len: int | None = None, queue: Queue | None = None) -> Plan:
    decisions: list[Decision] = []
    objective, why, numbers = resolved_objective(spec, queue)
    decisions.append(Decision(step="resources", setting="objective", choice=objective, reason=why, numbers=numbers,
                              pinned=spec.objective != "auto"))
    spec = spec.model_copy(update={"objective": objective})
    check_attention(spec, profile.arch)
    gpu, count = choose_gpus(spec, inventory, decisions)
    check_sharding(spec, count)
    budget = budget_override or int(gpu.memory_bytes * spec.resources.max_memory_fraction) - gpu.context_bytes
    ctx = PlanContext(spec, profile, gpu, count, budget, calibration, budget_override, decisions)
    if spec.seq_len != "auto":
        length = spec.seq_len
        ctx.decide("0->1 static", "seq_len", length, "pinned", pinned=True)
    else:
        length = seq_len or min(DEFAULT_SEQ_LEN, profile.arch.max_positions)
        ctx.decide("0->1 static", "seq_len", length, "from the dataset's token lengths" if seq_len else
                   f"dataset not profiled: {length} (capped by the model's {profile.arch.max_positions} positions)")
    if length > profile.arch.max_positions:
        raise SpecError([FieldProblem("seq_len", length, f"longer than the model's {profile.arch.max_positions} "
                                      "positions; lower it or use 'auto'")])
    packing = spec.packing if spec.packing != "auto" else True
    ctx.decide("0->1 static", "packing", packing, "pinned" if spec.packing != "auto" else
               "pack samples into full sequences: no compute spent on padding", pinned=spec.packing != "auto")
    precision, recipe = _precision(ctx)
    run = _static_step(ctx, precision, recipe, length)
    run = _activation_step(ctx, run)
    run = _batch_step(ctx, run)
    corrected = ctx.calibration_for(run)
    ctx.decide("0->1 static", "calibration", f"memory x{corrected.memory:.2f}, tokens/s "
               f"x{corrected.tokens_per_second:.2f}", corrected.describe(), runs=corrected.runs,
               memory_factor=corrected.memory, tokens_per_second_factor=corrected.tokens_per_second)
    memory = estimate_memory(run, corrected)
    if memory.margin:
        ctx.decide("0->1 static", "memory margin", size_text(memory.margin), "; ".join(memory.margin_reasons),
                   margin_bytes=memory.margin, estimate_bytes=memory.total)
    throughput = _throughput(run)
    settings = worker_settings(spec, run, length, checkpoint_interval(ctx, throughput))
    return Plan(name=spec.name, model=profile.source, family=profile.arch.family, config_origin=profile.config_origin,
                params=ParamCounts(total=profile.total_params, trainable=run.trainable_params), gpu=gpu.name,
                gpus=count if run.sharding != "none" else 1,
                memory=PlanMemory.of(memory, budget, corrected.memory), settings=settings,
                throughput=PlanThroughput.of(throughput, spec.training.max_steps, corrected.tokens_per_second),
                decisions=list(ctx.decisions))
