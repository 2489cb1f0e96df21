"""What every command that talks to the server shares: the consoles, the client, and how an error ends the
command (its message on stderr, and the exit code README documents)."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from service.exit_codes import EXIT_BAD_INPUT, EXIT_JOB_FAILED

console, errors = Console(width=160), Console(stderr=True, width=160)

# the caller's mistake (no server, bad token, no such job, a state that forbids it, a bad spec): bad input;
# anything else (a 5xx) is the service failing, reported like a failed job
BAD_INPUT_STATUSES = (0, 401, 404, 409, 422)


def client():
    """The client for the configured server; exits with EXIT_BAD_INPUT when none is configured."""
    from service.client import Client, ClientError

    try:
        return Client()
    except ClientError as error:
        errors.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def fail(error) -> NoReturn:
    """End the command on a ClientError: its detail (a 422 one field problem a line) and its exit code."""
    detail = error.detail
    if isinstance(detail, list):  # 422: one line per field problem
        detail = "\n".join(f"  - {p['field']} = {p['value']!r}: {p['message']}" for p in detail)
    errors.print(f"[red]error ({error.status}):[/]\n{detail}" if error.status else f"[red]error:[/] {detail}",
                 highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT if error.status in BAD_INPUT_STATUSES else EXIT_JOB_FAILED)
