"""The CLI's server and job commands: server, stop, submit, status, list, cancel, logs, inventory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from planner.units import size_text
from service.exit_codes import EXIT_BAD_INPUT, EXIT_JOB_FAILED, EXIT_OK

console, errors = Console(width=160), Console(stderr=True, width=160)


def _client():
    from service.client import Client, ClientError

    try:
        return Client()
    except ClientError as error:
        errors.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _fail(error) -> None:
    detail = error.detail
    if isinstance(detail, list):  # 422: one line per field problem
        detail = "\n".join(f"  - {p['field']} = {p['value']!r}: {p['message']}" for p in detail)
    errors.print(f"[red]error ({error.status}):[/]\n{detail}" if error.status else f"[red]error:[/] {detail}",
                 highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT if error.status in (0, 401, 404, 409, 422) else EXIT_JOB_FAILED)


def follow_job(client, job_id: str) -> int:
    from service.client import ClientError
    from service.progress import follow, render_summary
    from service.render import render_plan

    try:
        job = client.wait_planned(job_id)
        if job["planned"]:
            render_plan(client.plan(job_id), console)
        follow(client.records(job_id), console)
        job = client.job(job_id)
    except ClientError as error:
        _fail(error)
    if job["summary"]:
        render_summary(job["summary"], console)
    console.print(f"job {job_id}: {job['state']}" + (f" ({job['cause']}: {job['message']})" if job["cause"] else ""),
                  highlight=False)
    return EXIT_OK if job["state"] == "succeeded" else EXIT_JOB_FAILED


def register(app: typer.Typer) -> None:
    @app.command()
    def server(host: Annotated[str, typer.Option(help="listen address (loopback unless told otherwise)")] = "127.0.0.1",
               port: Annotated[int, typer.Option(help="listen port")] = 8321,
               data_dir: Annotated[Path | None, typer.Option(help="SQLite file, runs, token (~/.effft)")] = None,
               background: Annotated[bool, typer.Option(help="start detached and return once it answers")] = False,
               ) -> None:
        """Start the API, the scheduler, the job store and (unless RAY_ADDRESS is set) a local Ray head."""
        from service.client import data_dir as default_data_dir
        from service.server import serve, serve_in_background

        folder = data_dir or default_data_dir()
        if background:
            typer.echo(f"effft server at {serve_in_background(host, port, folder)} (data in {folder})")
            return
        serve(host, port, folder)

    @app.command()
    def stop(data_dir: Annotated[Path | None, typer.Option(help="the server's data dir (default ~/.effft)")] = None
             ) -> None:
        """Stop the embedded server and the Ray head it started."""
        from service.client import data_dir as default_data_dir
        from service.server import stop as stop_server

        stopped = stop_server(data_dir or default_data_dir())
        typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))

    @app.command()
    def submit(job: Annotated[Path, typer.Argument(help="the job.yaml to submit")],
               follow: Annotated[bool, typer.Option("--follow", help="show progress until the job ends")] = False,
               idempotency_key: Annotated[str | None, typer.Option(help="makes a retried submit safe")] = None,
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
        client = _client()
        try:
            created = client.submit(yaml.safe_dump(spec.model_dump(mode="json")), idempotency_key)
        except ClientError as error:
            _fail(error)
        typer.echo(f"submitted {created['id']} ({created['state']})")
        if follow:
            raise typer.Exit(follow_job(client, created["id"]))

    @app.command()
    def status(job_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """A job's state, progress and summary."""
        from service.client import ClientError

        try:
            job = _client().job(job_id)
        except ClientError as error:
            _fail(error)
        if as_json:
            typer.echo(json.dumps(job, indent=2))
            return
        progress = job["progress"] or {}
        console.print(f"{job['id']} {job['name']}: {job['state']}"
                      + (f" ({job['cause']}: {job['message']})" if job["cause"] else "")
                      + (f" | step {progress['step']}/{progress['total_steps']} loss {progress['loss']:.4f}"
                         if progress.get("loss") is not None else ""), highlight=False)

    @app.command("list")
    def list_jobs(state: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
                  limit: Annotated[int, typer.Option(min=1, max=500)] = 50) -> None:
        """Jobs, newest first."""
        from service.client import ClientError

        try:
            page = _client().jobs(state, limit)
        except ClientError as error:
            _fail(error)
        table = Table()
        for column in ("id", "name", "owner", "state", "created (UTC)", "finished (UTC)"):
            table.add_column(column)
        for job in page["items"]:
            table.add_row(job["id"], job["name"], job["owner"], job["state"], job["created_at"][:19],
                          (job["finished_at"] or "")[:19])
        console.print(table)

    @app.command()
    def cancel(job_id: str) -> None:
        """Cancel a job (a running one is stopped on Ray)."""
        from service.client import ClientError

        try:
            job = _client().cancel(job_id)
        except ClientError as error:
            _fail(error)
        typer.echo(f"{job_id}: {job['state']}")

    @app.command()
    def logs(job_id: str) -> None:
        """A job's events and its Ray job's log."""
        from service.client import ClientError

        client = _client()
        try:
            for event in client.events(job_id):
                typer.echo(f"{event['at'][:19]} {event['from'] or '-'} -> {event['to']}: {event['reason']}")
            typer.echo(client.logs(job_id))
        except ClientError as error:
            _fail(error)

    @app.command()
    def inventory() -> None:
        """The cluster's GPUs per node: type, count, memory, free."""
        from service.client import ClientError

        try:
            nodes = _client().inventory()["nodes"]
        except ClientError as error:
            _fail(error)
        table = Table()
        for column in ("node", "gpu", "count", "memory", "free"):
            table.add_column(column)
        for node in nodes:
            table.add_row(node["node"], node["gpu"], str(node["count"]), size_text(node["memory_bytes"]),
                          str(node["free"]))
        console.print(table)
