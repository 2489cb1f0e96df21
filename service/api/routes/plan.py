"""Plans: a dry run of a spec (POST /v1/plan, nothing stored) and the plan the scheduler stored for a job."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from planner import InfeasibleError, PlannerError, SpecError, plan_job
from planner.errors import FieldProblem
from planner.plan import Plan, PlanVersionError, load_plan
from service.api.deps import CallerDep, OwnedJobDep, ServicesDep, SettingsDep, StoreDep
from service.api.openapi import JOB_BODY, errors
from service.body import BadInput, spec_from
from service.cluster import queue_now

router = APIRouter(tags=["plan"], responses=errors(401))

DRY_RUN_SECONDS = 120.0  # POST /v1/plan waits this long for a hub fetch; the scheduler has its own limit


@router.post("/plan", response_model=Plan, openapi_extra=JOB_BODY,
             responses=errors(413, 504))
async def dry_run(request: Request, caller: CallerDep, settings: SettingsDep, services: ServicesDep,
                  store: StoreDep):
    """Plan a spec on the cluster's inventory without storing or running anything, as the scheduler would plan
    it now (objective auto weighs the queue it would join); 422 with the numbers when it cannot fit."""
    spec = await spec_from(request, settings, caller.user)

    def plan_now() -> Plan:
        inventory = services.inventory()
        return plan_job(spec, inventory, queue=queue_now(store, inventory, settings, joining=True))

    try:  # the inventory asks Ray, and planning reads the model's config (maybe from the hub): both block
        planning = run_in_threadpool(plan_now)
        return await asyncio.wait_for(planning, DRY_RUN_SECONDS)
    except TimeoutError:
        raise HTTPException(504, f"planning took longer than {DRY_RUN_SECONDS:.0f} s (fetching the model's "
                                 "config?); try again, or use a local model folder") from None
    except InfeasibleError as error:
        raise HTTPException(422, {"infeasible": str(error), "needed_bytes": error.needed_bytes,
                                  "budget_bytes": error.budget_bytes}) from None
    except SpecError as error:
        raise BadInput(error.problems) from None
    except PlannerError as error:
        raise BadInput([FieldProblem("model.path", spec.model.path, str(error))]) from None


@router.get("/jobs/{job_id}/plan", response_model=Plan, responses=errors(404, 409))
def get_plan(job: OwnedJobDep):
    """The plan the scheduler made for the job, as the typed Plan; 409 until it is planned."""
    if job.plan is None:
        raise HTTPException(409, f"job {job.id} is {job.state} and has no plan yet")
    try:
        return load_plan(job.plan)
    except PlanVersionError as error:  # stored by another effft version: say so rather than answer 500
        raise HTTPException(409, str(error)) from None
