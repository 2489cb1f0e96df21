"""The `effft` typer app: each command is a plain function of its group's module, registered here in the order
`effft --help` lists them."""

from __future__ import annotations

import typer

from service.cli import cluster, jobs, local, server

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="effft: plan, run and watch LLM fine-tuning jobs.")


@app.callback()
def _root() -> None:
    """effft: plan, run and watch LLM fine-tuning jobs."""


app.command()(local.plan)
app.command()(local.run)
app.command("init-example")(local.init_example)
app.command()(server.server)
app.command()(server.stop)
app.command()(jobs.submit)
app.command()(jobs.status)
app.command("list")(jobs.list_jobs)
app.command()(jobs.cancel)
app.command()(jobs.logs)
app.command()(cluster.inventory)
app.command()(cluster.calibration)


def main() -> None:
    app()
