"""/v1/inventory: the cluster's GPUs per node and how many running jobs leave free."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import CallerDep, ServicesDep, StoreDep
from service.api.models import InventoryPublic
from service.api.openapi import errors

router = APIRouter(tags=["cluster"], responses=errors(401))


@router.get("/inventory", response_model=InventoryPublic)
def inventory(_caller: CallerDep, store: StoreDep, services: ServicesDep):
    """The cluster's GPUs per node: type, count, memory per GPU, and how many are free."""
    return services.inventory_view(store)
