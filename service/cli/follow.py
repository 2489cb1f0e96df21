"""`effft submit --follow`: the job's plan once it is planned, its progress as steps are stored, its summary."""

from __future__ import annotations

from service.cli.output import console, fail
from service.exit_codes import EXIT_JOB_FAILED, EXIT_OK
from service.progress import PROGRESS_EVERY_SECONDS


def render_plan_dict(plan: dict) -> None:
    """The stored plan, read back as the typed Plan and shown by the one renderer `effft plan` uses."""
    from planner.plan import load_plan
    from service.render import render_plan

    render_plan(load_plan(plan), console)


def follow_job(client, job_id: str, every_seconds: float = PROGRESS_EVERY_SECONDS) -> int:
    """Show the job until it ends (without a terminal, a progress line every `every_seconds`); the exit code:
    EXIT_OK if it succeeded, else EXIT_JOB_FAILED."""
    from service.client import ClientError
    from service.progress import follow, render_summary

    try:
        job = client.wait_planned(job_id)
        if job["planned"]:
            render_plan_dict(client.plan(job_id))
        follow(client.records(job_id), console, every_seconds)
        job = client.job(job_id)
    except ClientError as error:
        fail(error)
    if job["summary"]:
        render_summary(job["summary"], console)
    console.print(f"job {job_id}: {job['state']}" + (f" ({job['cause']}: {job['message']})" if job["cause"] else ""),
                  highlight=False)
    return EXIT_OK if job["state"] == "succeeded" else EXIT_JOB_FAILED
