"""`effft inventory`: the cluster's GPUs as the server sees them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from planner.units import size_text
from service.cli.output import client, console, fail


def calibration(local: Annotated[bool, typer.Option("--local", help="this machine's `effft run` history, "
                                                    "not the server's")] = False) -> None:
    """The correction factors new plans apply, per device, model family, method and precision recipe."""
    from service.client import ClientError

    if local:
        from service.cli.local import local_calibration

        rows = local_calibration().rows()
    else:
        try:
            rows = client().calibration()["items"]
        except ClientError as error:
            fail(error)
    table = Table(title="Calibration from measured runs" + (" (local history)" if local else ""))
    for column in ("device", "family", "method", "recipe", "runs", "memory", "tokens/s"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["device"], row["family"], row["method"], row["recipe"], str(row["runs"]),
                      f"x{row['memory']:.2f}", f"x{row['tokens_per_second']:.2f}")
    console.print(table if rows else "no measured runs yet: plans use the raw model")


def inventory() -> None:
    """The cluster's GPUs per node: type, count, memory, free; per device the jobs packed onto it."""
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
    devices = Table(title="Jobs on each device (held: their plans' share; used: their latest measured peak)")
    for column in ("device", "jobs", "held", "used", "of"):
        devices.add_column(column)
    for node in nodes:
        for device in node.get("devices", []):
            if device["jobs"]:
                jobs = ", ".join(job["id"] for job in device["jobs"]) + (" (whole)" if device["whole"] else "")
                devices.add_row(f"{node['node']}/{node['gpu']}/{device['index']}", jobs,
                                size_text(device["held_bytes"]), size_text(device["used_bytes"]),
                                size_text(node["memory_bytes"]))
    if devices.row_count:
        console.print(devices)
