"""`effft inventory`: the cluster's GPUs as the server sees them."""

from __future__ import annotations

from rich.table import Table

from planner.units import size_text
from service.cli.output import client, console, fail


def inventory() -> None:
    """The cluster's GPUs per node: type, count, memory, free."""
    from service.client import ClientError

    try:
        nodes = client().inventory()["nodes"]
    except ClientError as error:
        fail(error)
    table = Table()
    for column in ("node", "gpu", "count", "memory", "free"):
        table.add_column(column)
    for node in nodes:
        table.add_row(node["node"], node["gpu"], str(node["count"]), size_text(node["memory_bytes"]),
                      str(node["free"]))
    console.print(table)
