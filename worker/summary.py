"""The end-of-run summary: what was done, how fast, and the measured memory next to the plan's."""

from __future__ import annotations

from statistics import mean

from worker.artifacts import measured_terms, weights_checksum


def build_summary(job, trainer, meter, eval_loss: float | None, before: float | None, after: float | None) -> dict:
    state, plan = trainer.state, job.plan
    tokens = state.num_input_tokens_seen - meter.start_tokens
    seconds = max(meter.train_seconds, 1e-9)
    tokens_per_second = tokens / seconds
    kept_tokens, kept_seconds = meter.throughput_window(tokens, seconds)
    if kept_tokens > 0 and kept_seconds > 1e-6:  # the steady steps; a run of one or two steps has none
        tokens_per_second = kept_tokens / kept_seconds
    steps = [r for r in meter.steps if r["step"] > meter.start_step]
    measured = {**measured_terms(trainer.model, trainer.optimizer), **meter.memory()}
    predicted = {**plan.memory.terms(), "total": plan.memory.total}
    return {
        "kind": "summary", "step": state.global_step, "total_steps": meter.total_steps,
        "tokens": tokens, "train_seconds": seconds, "tokens_per_second": tokens_per_second,
        "predicted_tokens_per_second": meter.predicted_tokens_per_second,
        "mfu": plan.throughput.model_flops_per_token * tokens_per_second / meter.peak_flops,
        "final_loss": steps[-1]["loss"] if steps else None,
        "first_loss": steps[0]["loss"] if steps else None,
        "mean_loss_last_10": mean(r["loss"] for r in steps[-10:]) if steps else None,
        "eval_loss": eval_loss, "exact_match_before": before, "exact_match_after": after,
        "memory_peak_bytes": measured["memory_peak_bytes"],
        "memory_peak_allocated_bytes": measured.get("memory_peak_allocated_bytes"),
        "memory_rss_growth_bytes": measured.get("memory_rss_growth_bytes"),
        "memory_predicted_bytes": predicted["total"], "memory_metric": plan.memory.metric,
        "measured_terms": {k: measured[k] for k in ("weights", "gradients", "optimizer")},
        "predicted_terms": predicted,
        "report_seconds": meter.report_seconds, "report_share": meter.report_seconds / seconds,
        "weights_checksum": weights_checksum(trainer.model), "output_dir": job.output_dir,
        "attempt": meter.attempt, "device": str(meter.device),
    }
