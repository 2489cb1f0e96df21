"""`effft submit --follow`: the job's plan once it is planned, its progress as steps are stored, its summary."""

from __future__ import annotations

from rich.table import Table

from service.cli.output import console, fail
from service.exit_codes import EXIT_JOB_FAILED, EXIT_OK


def render_plan_dict(plan: dict) -> None:
    memory = plan["memory"]
    console.print(f"plan: {plan['model']} on {plan['gpus']} x {plan['gpu']}: {memory['total'] / 1e9:,.2f} GB of "
                  f"{memory['budget'] / 1e9:,.2f} GB predicted ({memory['metric']}); "
                  f"{plan['throughput']['tokens_per_second']:,.0f} tokens/s, MFU {plan['throughput']['mfu']:.1%}")
    table = Table(title="Decisions")
    for column in ("step", "setting", "choice", "why"):
        table.add_column(column, overflow="fold")
    for d in plan["decisions"]:
        table.add_row(d["step"], d["setting"], str(d["choice"]) + (" (pinned)" if d["pinned"] else ""), d["reason"])
    console.print(table)


def follow_job(client, job_id: str) -> int:
    """Show the job until it ends; the exit code: EXIT_OK if it succeeded, else EXIT_JOB_FAILED."""
    from service.client import ClientError
    from service.progress import follow, render_summary

    try:
        job = client.wait_planned(job_id)
        if job["planned"]:
            render_plan_dict(client.plan(job_id))
        follow(client.records(job_id), console)
        job = client.job(job_id)
    except ClientError as error:
        fail(error)
    if job["summary"]:
        render_summary(job["summary"], console)
    console.print(f"job {job_id}: {job['state']}" + (f" ({job['cause']}: {job['message']})" if job["cause"] else ""),
                  highlight=False)
    return EXIT_OK if job["state"] == "succeeded" else EXIT_JOB_FAILED
