"""The `effft` command line (typer), one module per command group: local (plan, run, init-example), server
(server, stop), jobs (submit, status, list, cancel, logs), cluster (inventory); main.py registers them."""

from service.cli.local import local_inventory, profiled_seq_len
from service.cli.main import app, main

__all__ = ["app", "local_inventory", "main", "profiled_seq_len"]
