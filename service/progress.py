"""Following a run's metric records live and printing its summary: a rich progress bar on a terminal, plain
progress lines every few seconds otherwise (`effft submit --follow | cat`, a CI log), where a bar would show
nothing until the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.units import size_text
from service.render import duration_text
from worker.jsonl import START, Position, read_records


def tail_records(path: Path, done: Callable[[], bool], start: Position = START,
                 poll_seconds: float = 0.2) -> Iterator[dict]:
    """Yield each record written to `path` after `start` until `done()` and nothing more is left."""
    position = start
    while True:
        finished = done()
        records, position = read_records(path, position)
        yield from records
        if finished:
            return
        time.sleep(poll_seconds)


def step_text(record: dict) -> str:
    memory = f"mem {size_text(record['memory_peak_bytes'])} / predicted {size_text(record['memory_predicted_bytes'])}"
    return (f"loss {record['loss']:.4f} | {record['tokens_per_second']:,.0f} tok/s | MFU {record['mfu']:.1%} | "
            f"{memory} | ETA {duration_text(record['eta_seconds'])}")


PROGRESS_EVERY_SECONDS = 30.0  # without a terminal: a progress line at most this often


def follow(records: Iterator[dict], console: Console, every_seconds: float = PROGRESS_EVERY_SECONDS,
           clock: Callable[[], float] = time.monotonic) -> dict | None:
    """Show the run's progress from its records; returns the summary record if one arrives."""
    if console.is_terminal:
        return follow_with_bar(records, console)
    return follow_with_lines(records, console, every_seconds, clock)


def follow_with_bar(records: Iterator[dict], console: Console) -> dict | None:
    summary = None
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[detail]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting", total=None, detail="")
        for record in records:
            kind = record.get("kind")
            if kind == "start":
                progress.update(task, description=start_text(record)[:60], total=record["total_steps"])
            elif kind == "step":
                progress.update(task, completed=record["step"], total=record["total_steps"],
                                description="training", detail=step_text(record))
            elif kind == "summary":
                summary = record
    return summary


def start_text(record: dict) -> str:
    return f"resumed from {record['resumed_from']}" if record.get("resumed_from") else "training"


def progress_line(record: dict) -> str:
    """One step as a plain line: step/total, loss, tokens/s, memory peak, ETA."""
    loss = "n/a" if record.get("loss") is None else f"{record['loss']:.4f}"
    speed = "n/a" if record.get("tokens_per_second") is None else f"{record['tokens_per_second']:,.0f}"
    return (f"step {record['step']}/{record['total_steps']} | loss {loss} | {speed} tok/s | "
            f"mem peak {size_text(record.get('memory_peak_bytes'))} | ETA {duration_text(record.get('eta_seconds'))}")


def follow_with_lines(records: Iterator[dict], console: Console, every_seconds: float,
                      clock: Callable[[], float]) -> dict | None:
    """A line for the first step, then for the latest step once `every_seconds` have passed since the last
    line, and for the last step: a log that shows progress without a line per step."""
    summary, unshown, shown_at = None, None, None
    for record in records:
        kind = record.get("kind")
        if kind == "start":
            console.print(f"{start_text(record)}: {record['total_steps']} steps", highlight=False)
        elif kind == "step":
            unshown = record
            if shown_at is None or clock() - shown_at >= every_seconds:
                console.print(progress_line(record), highlight=False, soft_wrap=True)
                unshown, shown_at = None, clock()
        elif kind == "summary":
            summary = record
    if unshown is not None:
        console.print(progress_line(unshown), highlight=False, soft_wrap=True)
    return summary


def render_summary(summary: dict, console: Console) -> None:
    table = Table(title="Run summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [("steps", f"{summary['step']} / {summary['total_steps']}"), ("tokens", f"{summary['tokens']:,}"),
            ("train time", duration_text(summary["train_seconds"])),
            ("tokens/s (mean)", f"{summary['tokens_per_second']:,.0f} (predicted "
                                f"{summary['predicted_tokens_per_second']:,.0f})"),
            ("MFU", f"{summary['mfu']:.1%}"),
            ("loss first -> last", f"{summary['first_loss']:.4f} -> {summary['final_loss']:.4f}"),
            ("peak memory", f"{size_text(summary['memory_peak_bytes'])} measured, "
                            f"{size_text(summary['memory_predicted_bytes'])} predicted"),
            ("reporting share of time", f"{summary['report_share']:.2%}")]
    for term, measured in summary["measured_terms"].items():
        predicted = summary["predicted_terms"][term]
        rows.append((f"  {term}", f"{size_text(measured)} counted, {size_text(predicted)} at peak"))
    if summary.get("eval_loss") is not None:
        rows.append(("eval loss", f"{summary['eval_loss']:.4f}"))
    if summary.get("exact_match_after") is not None:
        before = summary.get("exact_match_before")
        rows.append(("eval exact match", f"{'n/a' if before is None else f'{before:.1%}'} before -> "
                                         f"{summary['exact_match_after']:.1%} after"))
    rows.append(("output", summary["output_dir"]))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"  memory metric: {summary['memory_metric']}", highlight=False)
