"""The app: the routers, the one error shape, and what the routes depend on (settings, store, services).

The HTTP job API (OpenAPI at /docs): routes under /v1, plus /healthz and /metrics.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from planner.errors import FieldProblem
from service.api.deps import Services
from service.api.openapi import errors, with_schemas
from service.api.routes import calibration, health, inventory, jobs, plan, records
from service.body import BadInput
from service.settings import Settings
from service.store import JobStore
from service.views import SafeJSONResponse, problems_view

# every /v1 route may answer 422 (bad parameters or body); the routers callers use add 401
v1 = APIRouter(prefix="/v1", responses=errors(422))
for module in (jobs, plan, records, inventory, calibration):
    v1.include_router(module.router)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers strict JSON in one shape; nothing a client sent can make rendering it fail."""

    @app.exception_handler(BadInput)
    async def _bad_input(_request, error: BadInput):
        return SafeJSONResponse(status_code=error.status, content={"detail": problems_view(error.problems)})

    @app.exception_handler(RequestValidationError)
    async def _bad_parameters(_request, error: RequestValidationError):
        problems = [FieldProblem(".".join(str(part) for part in e["loc"][1:]) or str(e["loc"][0]), e.get("input"),
                                 e["msg"]) for e in error.errors()]
        return SafeJSONResponse(status_code=422, content={"detail": problems_view(problems)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, error: StarletteHTTPException):
        return SafeJSONResponse(status_code=error.status_code, content={"detail": error.detail},
                                headers=getattr(error, "headers", None))


def create_app(settings: Settings, store: JobStore, services: Services) -> FastAPI:
    """The API over this store; `services` is the cluster (see deps.Services) and may carry a `lifespan`."""
    app = FastAPI(title="effft", version="0.1.0", description="Plan, run and watch LLM fine-tuning jobs.",
                  lifespan=getattr(services, "lifespan", None), default_response_class=SafeJSONResponse)
    # the dependencies in deps.py read these; tests replace them with app.dependency_overrides
    app.state.settings, app.state.store, app.state.services = settings, store, services
    _add_error_handlers(app)
    app.include_router(v1)
    app.include_router(health.router)
    return with_schemas(app)
