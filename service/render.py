"""The one human-readable rendering of a plan (rich tables): `effft plan`, `effft run` and `effft submit --follow`.

It takes the typed Plan (planner/plan.py); a plan read back from the service goes through `load_plan`
first, so it renders exactly as one just made.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from planner.memory import TERMS
from planner.plan import Decision, Plan, PlanMemory
from planner.units import size_text


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "n/a (epochs: depends on the dataset size)"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _memory_table(memory: PlanMemory) -> Table:
    table = Table(title=f"Memory per GPU at the peak ({memory.phase})", caption=f"predicts {memory.metric}")
    table.add_column("term")
    table.add_column("bytes", justify="right")
    for term in TERMS:
        table.add_row(term, size_text(getattr(memory, term)))
    table.add_row("[bold]total[/]", f"[bold]{size_text(memory.total)}[/]")
    table.add_row("margin", f"{size_text(memory.margin)} ({memory.margin / max(memory.total, 1):.0%})")
    table.add_row("budget", f"{size_text(memory.budget)} ({memory.budgeted / memory.budget:.0%} used "
                  "with the margin)")
    return table


def _decisions_table(decisions: list[Decision]) -> Table:
    table = Table(title="Decisions")
    for column in ("step", "setting", "choice", "why"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        table.add_row(d.step, d.setting, d.choice + (" (pinned)" if d.pinned else ""), d.reason)
    return table


def render_plan(plan: Plan, console: Console) -> None:
    s, t = plan.settings, plan.throughput
    console.print(f"[bold]{plan.name}[/]: {plan.model} ({plan.params.total / 1e6:,.1f}M params, "
                  f"{plan.params.trainable / 1e6:,.2f}M trained) on {plan.gpus} x {plan.gpu}")
    console.print(f"  config: {plan.config_origin}")
    console.print(_memory_table(plan.memory))
    for reason in plan.memory.margin_reasons:
        console.print(f"  margin {reason}")
    console.print(_decisions_table(plan.decisions))
    console.print(f"method {s.method} | {s.precision} ({s.precision_recipe}) | optimizer {s.optimizer} | "
                  f"attention {s.attention} | checkpointing {s.gradient_checkpointing} | micro-batch "
                  f"{s.micro_batch_size} x accumulation {s.gradient_accumulation_steps} | "
                  f"sharding {s.sharding} | seq_len {s.seq_len}")
    console.print(f"predicted: {t.tokens_per_second:,.0f} tokens/s, {t.samples_per_second:,.2f} samples/s, "
                  f"MFU {t.mfu:.1%} ({t.bound}-bound), step {t.step_seconds:.3f} s, "
                  f"run time {duration_text(t.run_seconds)}")
