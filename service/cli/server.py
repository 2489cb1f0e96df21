"""`effft server` and `effft stop`: the embedded server (API, scheduler, store, local Ray head) on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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


def stop(data_dir: Annotated[Path | None, typer.Option(help="the server's data dir (default ~/.effft)")] = None
         ) -> None:
    """Stop the embedded server and the Ray head it started."""
    from service.client import data_dir as default_data_dir
    from service.server import stop as stop_server

    stopped = stop_server(data_dir or default_data_dir())
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
