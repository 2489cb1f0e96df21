"""Schemas the OpenAPI document cannot infer, added by hand.

The job body: the API reads it raw (YAML or JSON, within limits), so FastAPI cannot infer it; JobSpec's JSON Schema
is declared here, for /docs and for schema-driven fuzzing (bench/fuzz_api.py). The error body: every error has one
shape whatever the route answers on success (a log is text, its 404 is JSON), so errors refer to it by name
rather than through FastAPI's `model`, which would take the route's media type.
"""

from __future__ import annotations

from fastapi import FastAPI

from planner.spec import JobSpec
from service.api.models import ErrorPublic

SCHEMAS = "#/components/schemas/{model}"
JOB_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": SCHEMAS.format(model="JobSpec")}},
    "application/yaml": {"schema": {"type": "string", "description": "the same job spec as YAML"}}}}}
ERROR_CONTENT = {"application/json": {"schema": {"$ref": SCHEMAS.format(model="ErrorPublic")}}}
ERROR_DESCRIPTIONS = {401: "no known bearer token", 404: "no such job (or not the caller's)",
                      409: "the job's state does not allow it", 413: "the body is too large",
                      422: "bad parameters or body: each problem named", 503: "Ray cannot answer now; try again",
                      504: "planning took too long"}


def errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    return {status: {"description": ERROR_DESCRIPTIONS[status], "content": ERROR_CONTENT} for status in statuses}


def _schemas(model) -> dict:
    """The model's schema and those of the models it nests, by name."""
    schema = model.model_json_schema(ref_template=SCHEMAS)
    return {**schema.pop("$defs", {}), model.__name__: schema}


def with_schemas(app: FastAPI) -> FastAPI:
    """Add JobSpec, ErrorPublic and the models they nest to the document's components."""
    make_document = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = make_document()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update({**_schemas(JobSpec), **_schemas(ErrorPublic)})
        return app.openapi_schema

    app.openapi = openapi
    return app
