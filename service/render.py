"""Human-readable rendering of a Plan (rich tables), shared by `effft plan` and later commands."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from planner.memory import TERMS
from planner.plan import Plan


def _gb(n: float | None) -> str:
    if n is None:  # not measured yet (the CPU measures its peak on the run's second step)
        return "n/a"
    return f"{n / 1e9:,.2f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a (epochs: depends on the dataset size)"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def render_plan(plan: Plan, console: Console) -> None:
    s = plan.settings
    console.print(f"[bold]{plan.name}[/]: {plan.model} ({plan.params.total / 1e6:,.1f}M params, "
                  f"{plan.params.trainable / 1e6:,.2f}M trained) on {plan.gpus} x {plan.gpu}")
    console.print(f"  config: {plan.config_origin}")
    memory = Table(title=f"Memory per GPU at the peak ({plan.memory.phase})",
                   caption=f"predicts {plan.memory.metric}")
    memory.add_column("term")
    memory.add_column("bytes", justify="right")
    for term in TERMS:
        memory.add_row(term, _gb(getattr(plan.memory, term)))
    memory.add_row("[bold]total[/]", f"[bold]{_gb(plan.memory.total)}[/]")
    memory.add_row("margin", f"{_gb(plan.memory.margin)} ({plan.memory.margin / max(plan.memory.total, 1):.0%})")
    memory.add_row("budget", f"{_gb(plan.memory.budget)} ({plan.memory.budgeted / plan.memory.budget:.0%} used "
                   "with the margin)")
    console.print(memory)
    for reason in plan.memory.margin_reasons:
        console.print(f"  margin {reason}")
    chosen = Table(title="Decisions")
    for column in ("step", "setting", "choice", "why"):
        chosen.add_column(column, overflow="fold")
    for d in plan.decisions:
        chosen.add_row(d.step, d.setting, d.choice + (" (pinned)" if d.pinned else ""), d.reason)
    console.print(chosen)
    t = plan.throughput
    console.print(f"method {s.method} | {s.precision} ({s.precision_recipe}) | optimizer {s.optimizer} | "
                  f"attention {s.attention} | checkpointing {s.gradient_checkpointing} | micro-batch "
                  f"{s.micro_batch_size} x accumulation {s.gradient_accumulation_steps} | "
                  f"sharding {s.sharding} | seq_len {s.seq_len}")
    console.print(f"predicted: {t.tokens_per_second:,.0f} tokens/s, {t.samples_per_second:,.2f} samples/s, "
                  f"MFU {t.mfu:.1%} ({t.bound}-bound), step {t.step_seconds:.3f} s, "
                  f"run time {_duration(t.run_seconds)}")
