"""The job body in the OpenAPI document: the API reads it raw (YAML or JSON, within limits), so FastAPI cannot
infer it; the JobSpec's JSON Schema is declared here, for /docs and for schema-driven fuzzing (bench/fuzz_api.py)."""

from __future__ import annotations

from fastapi import FastAPI

from planner.spec import JobSpec

JOB_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}},
    "application/yaml": {"schema": {"type": "string", "description": "the same job spec as YAML"}}}}}


def with_job_schema(app: FastAPI) -> FastAPI:
    """Add JobSpec and the models it nests to the document's components."""
    make_document = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = make_document()
            spec_schema = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(spec_schema.pop("$defs", {}))
            schemas["JobSpec"] = spec_schema
        return app.openapi_schema

    app.openapi = openapi
    return app
