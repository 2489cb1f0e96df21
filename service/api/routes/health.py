"""/healthz for load balancers and /metrics for Prometheus: outside /v1, and open without a token."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import ServicesDep, SettingsDep, StoreDep, TokenDep
from service.api.models import HealthPublic
from service.auth import metrics_scope

router = APIRouter(tags=["operations"])

EXPOSITION = {"text/plain": {"schema": {"type": "string", "description": "the Prometheus text format "
                                                                         f"({CONTENT_TYPE_LATEST})"}}}


@router.get("/healthz", response_model=HealthPublic)
def healthz(store: StoreDep):
    """The API answers and its database does."""
    store.counts_by_state()
    return {"ok": True}


# the empty requirement appended to the bearer scheme's: a token is optional here
@router.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": EXPOSITION}},
            openapi_extra={"security": [{}]})
def metrics(settings: SettingsDep, store: StoreDep, services: ServicesDep, token: TokenDep) -> Response:
    """Fleet series for anyone; per-job series for their owner, admins and EFFFT_METRICS_TOKENS (Prometheus)."""
    scope = metrics_scope(settings, token)
    return Response(generate_latest(services.registry_for(store, scope)), media_type=CONTENT_TYPE_LATEST)
