"""summary.md: the tables read for their verdicts, in numbers, beside the planner constants they speak to."""

from __future__ import annotations

import statistics
from collections import defaultdict

from bench.gpu_check.fold import factor_lines, read_observations
from planner.margins import MARGIN_RULES
from planner.memory import ALLOCATOR_SLACK
from planner.throughput import MATMUL_EFFICIENCY

AUTO_GOAL = 0.95  # the planner's micro-batch reaches this share of the best swept one's tokens/s


def _num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def gib(value) -> str:
    return f"{value / 2**30:.2f} GiB" if _num(value) else str(value)


def pct(value) -> str:
    return f"{100 * value:+.2f} %" if _num(value) else str(value)


def share(value) -> str:
    return f"{100 * value:.1f} %" if _num(value) else str(value)


def _error_stats(errors: list[float]) -> str:
    if not errors:
        return "none measured"
    worst = max(errors, key=abs)
    return (f"median |error| {100 * statistics.median(abs(e) for e in errors):.2f} %, worst {pct(worst)}, "
            f"under-predicted (measured above the plan) {sum(e > 0 for e in errors)} of {len(errors)}")


def memory_lines(rows: list[dict], metric: str) -> list[str]:
    fits = [r for r in rows if r.get("planner_fits")]
    ok = [r for r in fits if r.get("outcome") == "ok" and _num(r.get("peak_error"))]
    rejected = [r for r in rows if not r.get("planner_fits") and r.get("outcome") != "skipped"]
    lines = [f"## Memory: predicted vs measured peak ({metric})", "",
             f"{len(rows)} configs; {len(fits)} the planner says fit, {len(ok)} of them measured.",
             f"- peak vs predicted: {_error_stats([r['peak_error'] for r in ok])}",
             f"- above estimate + stated margin: {sum(r['measured_peak'] > r['predicted_budgeted'] for r in ok)}"]
    by_method = defaultdict(list)
    for r in ok:
        by_method[r["method"]].append(r["peak_error"])
    lines += [f"- {method}: {_error_stats(errors)}" for method, errors in sorted(by_method.items())]
    unexpected = [r["label"] for r in fits if r.get("outcome") in ("OOM", "pressure")]
    lines.append(f"- out of memory though the planner said it fits: {len(unexpected)} {unexpected or ''}".rstrip())
    confirmed = [r for r in rejected if r.get("outcome") == "OOM"]
    lines.append(f"- rejected by the planner and run under its budget: {len(rejected)}, out of memory as predicted: "
                 f"{len(confirmed)}" + "".join(f"; {r['label']} RAN (peak {gib(r.get('measured_peak'))})"
                                               for r in rejected if r.get("outcome") == "ok"))
    allocated = [r for r in ok if _num(r.get("measured_allocated"))]
    if allocated:
        slack = statistics.median(r["measured_reserved"] / r["measured_allocated"] - 1 for r in allocated)
        alloc_errors = [r["measured_allocated"] / r["predicted_bytes"] - 1 for r in allocated]
        lines += [f"- allocated vs predicted: {_error_stats(alloc_errors)}",
                  f"- allocator slack, reserved / allocated - 1: median {share(slack)} "
                  f"(planner/memory.py ALLOCATOR_SLACK {share(ALLOCATOR_SLACK)})"]
    for term in ("weights", "optimizer"):  # stored through every phase
        counted = [r[f"measured_{term}"] / r[f"stored_{term}"] - 1 for r in ok
                   if _num(r.get(f"measured_{term}")) and r.get(f"stored_{term}")]
        lines.append(f"- {term}, counted tensor by tensor after the run vs the planner's stored bytes: "
                     f"{_error_stats(counted)}")
    lines.append("- gradients and activations: peaks inside the step, in the total above (the plan's terms at its "
                 "peak phase are in memory.csv)")
    lines += [f"- not measured: {sum(r.get('outcome') in ('error', 'timeout', 'skipped') for r in rows)} "
              "(error, timeout or skipped; see memory.csv)", ""]
    return lines


def speed_lines(rows: list[dict], dry_run: bool) -> list[str]:
    lines = ["## Speed: effft's worker vs a plain HF Trainer vs a naive default", ""]
    if dry_run:
        lines += ["On a CPU effft's worker counts every tensor op's bytes (its memory cap; a GPU's allocator does "
                  "that for free), so its tokens/s here is not comparable.", ""]
    lines += ["| case | variant | micro-batch x accum | tokens/s | MFU | MFU vs matmul | measured / predicted | peak |",
              "|---|---|---|---|---|---|---|---|"]
    by_case = defaultdict(dict)
    for r in rows:
        by_case[r["label"]][r["variant"]] = r  # a naive retry at a smaller micro-batch replaces its OOM
        speed = r.get("tokens_per_second") if r.get("outcome") == "ok" else r.get("outcome")
        lines.append(f"| {r['label']} | {r['variant']} | {r.get('micro_batch')} x {r.get('accumulation')} | "
                     f"{_fmt(speed)} | {share(r.get('mfu'))} | {share(r.get('mfu_vs_matmul'))} | "
                     f"{_fmt(r.get('measured_over_predicted'), 3)} | {gib(r.get('measured_peak'))} |")
    lines.append("")
    for label, variants in by_case.items():
        effft = _speed(variants.get("effft"))
        ratios = [f"{name} {effft / other:.3f}x" for name in ("plain", "naive")
                  if effft and (other := _speed(variants.get(name)))]
        lines.append(f"- {label}: effft / {', effft / '.join(ratios) if ratios else 'n/a (a run is missing)'}")
    return [*lines, ""]


def _speed(row: dict | None) -> float | None:
    return row["tokens_per_second"] if row and row.get("outcome") == "ok" and _num(row.get("tokens_per_second")) \
        else None


def _fmt(value, digits: int = 0) -> str:
    return f"{value:,.{digits}f}" if _num(value) else str(value)


def auto_lines(rows: list[dict]) -> list[str]:
    lines = ["## The planner's own micro-batch vs a sweep of those that fit", ""]
    by_job = defaultdict(list)
    for r in rows:
        by_job[r["label"]].append(r)
    for label, points in by_job.items():
        measured = [(p["micro_batch"], _speed(p)) for p in points if _speed(p)]
        choice = next((p for p in points if p.get("is_choice")), None)
        ooms = [p["micro_batch"] for p in points if p.get("outcome") in ("OOM", "pressure")]
        sweep = ", ".join(f"{mb}: {speed:,.0f}" for mb, speed in sorted(measured))
        head = f"- {label}: planner chose {points[0].get('chosen_method')} micro-batch " \
               f"{points[0].get('chosen_micro_batch')} (checkpointing {points[0].get('checkpointing')}); " \
               f"tokens/s by micro-batch {sweep or 'none measured'}"
        if choice and _speed(choice) and measured:
            best_mb, best = max(measured, key=lambda item: item[1])
            ratio = _speed(choice) / best
            head += (f"; choice / best (micro-batch {best_mb}) = {share(ratio)}: goal >= {share(AUTO_GOAL)} "
                     f"{'met' if ratio >= AUTO_GOAL else 'NOT met'}")
        lines.append(head + f"; out of memory: {ooms or 'none'}")
    return [*lines, ""]


def anchor_lines(anchor: dict, peak_flops: float) -> list[str]:
    measured, total = anchor.get("matmul_flops"), anchor.get("device_total_bytes")
    reported = f"{gib(total)} reported" if _num(total) else "the dry run's CPU device"
    return ["## Anchors", "",
            f"- device: {anchor.get('device_name')}, {reported}; the catalog entry {anchor.get('catalog_name')} "
            f"plans with {gib(anchor.get('catalog_memory_bytes'))}",
            f"- matmul ({anchor.get('matmul')}): {_fmt(measured and measured / 1e12, 1)} TFLOP/s; the peak MFU "
            f"divides by: {peak_flops / 1e12:.1f} TFLOP/s; measured / peak {share(anchor.get('matmul_over_peak'))} "
            f"(planner/throughput.py MATMUL_EFFICIENCY, the share training matmuls reach: {share(MATMUL_EFFICIENCY)})",
            f"- versions: {anchor.get('versions')}", ""]


def constants_lines(rows_file) -> list[str]:
    margins = ", ".join(f"{rule.name} +{share(rule.share)}" for rule in MARGIN_RULES)
    return ["## Folding into the planner", "",
            "Calibration fitted from these runs (`python -m bench.gpu_check.fold OUT --history FILE` appends them "
            "to a calibration history):", *(f"- {line}" for line in factor_lines(read_observations(rows_file))),
            f"- stated margins now: {margins}", ""]


def fsdp_lines() -> list[str]:
    return ["## Multi-GPU (FSDP / NCCL)", "",
            "Not built: needs a machine with 2 or more GPUs (this one has one). Its place is the `fsdp` section "
            "of bench/gpu_check.sh (`--sections ...,fsdp`), which reports this line until it exists.", ""]


def write_summary(out, tables, anchor: dict, peak_flops: float, fsdp_asked: bool, dry_run: bool, elapsed: float,
                  budget: float) -> None:
    """Every section that has rows, read; rewritten after each section, so a cut-short run keeps its verdicts."""
    lines = ["# GPU proof", ""]
    if dry_run:
        lines += ["DRY RUN on a CPU (2-layer shapes, seq 64, fp32): it proves the pipeline and its tables, not the "
                  "planner on a GPU. The proof waits for a session with a device: `bash bench/gpu_check.sh` there "
                  "(README, \"GPU proof\").", ""]
    lines += [f"Wall time {elapsed:.0f} s of a {budget:.0f} s budget.", ""]
    if anchor:
        lines += anchor_lines(anchor, peak_flops)
    rows = tables.rows
    if rows["memory"]:
        lines += memory_lines(rows["memory"], "CPU tensor bytes at the step's peak" if dry_run
                              else "CUDA max_memory_reserved")
    if rows["speed"]:
        lines += speed_lines(rows["speed"], dry_run)
    if rows["auto"]:
        lines += auto_lines(rows["auto"])
    if fsdp_asked:
        lines += fsdp_lines()
    lines += constants_lines(out / "rows.jsonl")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
