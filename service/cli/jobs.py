"""The job commands against a server: submit, status, list, cancel, logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from service.cli.follow import follow_job
from service.cli.output import client, console, errors, fail
from service.exit_codes import EXIT_BAD_INPUT
from service.progress import PROGRESS_EVERY_SECONDS


def submit(job: Annotated[Path, typer.Argument(help="the job.yaml to submit")],
           follow: Annotated[bool, typer.Option("--follow", help="show progress until the job ends")] = False,
           idempotency_key: Annotated[str | None, typer.Option(help="makes a retried submit safe")] = None,
           progress_every: Annotated[float, typer.Option(
               min=1, help="without a terminal (a pipe, a log), --follow prints a progress line this often, in seconds")
           ] = PROGRESS_EVERY_SECONDS,
           ) -> None:
    """Submit a job to the server; relative paths in it are taken from the job file's folder."""
    import yaml

    from planner import PlannerError, load_job
    from planner.spec import resolve_relative_paths
    from service.client import ClientError

    try:
        spec = resolve_relative_paths(load_job(job), job.parent)
    except (PlannerError, ValueError) as error:
        errors.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    server = client()
    try:
        created = server.submit(yaml.safe_dump(spec.model_dump(mode="json")), idempotency_key)
    except ClientError as error:
        fail(error)
    typer.echo(f"submitted {created['id']} ({created['state']})")
    if follow:
        raise typer.Exit(follow_job(server, created["id"], progress_every))


def status(job_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A job's state, progress and summary."""
    from service.client import ClientError

    try:
        job = client().job(job_id)
    except ClientError as error:
        fail(error)
    if as_json:
        typer.echo(json.dumps(job, indent=2))
        return
    progress = job["progress"] or {}
    console.print(f"{job['id']} {job['name']}: {job['state']}"
                  + (f" ({job['cause']}: {job['message']})" if job["cause"] else "")
                  + (f" | step {progress['step']}/{progress['total_steps']} loss {progress['loss']:.4f}"
                     if progress.get("loss") is not None else ""), highlight=False)


def list_jobs(state: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
              limit: Annotated[int, typer.Option(min=1, max=500)] = 50) -> None:
    """Jobs, newest first."""
    from service.client import ClientError

    try:
        page = client().jobs(state, limit)
    except ClientError as error:
        fail(error)
    table = Table()
    for column in ("id", "name", "owner", "state", "created (UTC)", "finished (UTC)"):
        table.add_column(column)
    for job in page["items"]:
        table.add_row(job["id"], job["name"], job["owner"], job["state"], (job["created_at"] or "")[:19],
                      (job["finished_at"] or "")[:19])
    console.print(table)


def cancel(job_id: str) -> None:
    """Cancel a job (a running one is stopped on Ray)."""
    from service.client import ClientError

    try:
        job = client().cancel(job_id)
    except ClientError as error:
        fail(error)
    typer.echo(f"{job_id}: {job['state']}")


def logs(job_id: str) -> None:
    """A job's events and its Ray job's log."""
    from service.client import ClientError

    server = client()
    try:
        for event in server.events(job_id):
            typer.echo(f"{event['at'][:19]} {event['from'] or '-'} -> {event['to']}: {event['reason']}")
        typer.echo(server.logs(job_id))
    except ClientError as error:
        fail(error)
