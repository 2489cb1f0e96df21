"""/v1/calibration: the correction factors every new plan applies, fitted from the runs the store measured."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import CallerDep, StoreDep
from service.api.models import CalibrationPublic
from service.api.openapi import errors
from service.calibration import table_from_store

router = APIRouter(tags=["cluster"], responses=errors(401))


@router.get("/calibration", response_model=CalibrationPublic)
def calibration(_caller: CallerDep, store: StoreDep):
    """Per device, model family, method and precision recipe: how many runs, and the memory and tokens/s
    factors a new plan of that kind is corrected by."""
    return {"items": table_from_store(store).rows()}
