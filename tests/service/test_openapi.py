"""/openapi.json documents the API completely (issue 11): a bearer scheme, a response schema for every success,
the security requirement on every route that takes a token, and the one error shape for every error."""

from __future__ import annotations

import pytest

METHODS = {"get", "post", "put", "patch", "delete"}
OPEN = {("get", "/healthz")}  # answers without a token
OPTIONAL_TOKEN = {("get", "/metrics")}  # fleet series for anyone, per-job series for a token


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict:
    """The document of the app as create_app builds it; making it touches no database or cluster."""
    from fastapi.testclient import TestClient

    from service.api import create_app
    from service.settings import Settings

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("data")), store=None, services=None)
    response = TestClient(app).get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def bearer_schemes(document: dict) -> set[str]:
    schemes = document.get("components", {}).get("securitySchemes", {})
    return {name for name, scheme in schemes.items()
            if scheme.get("type") == "http" and scheme.get("scheme") == "bearer"}


def test_a_bearer_security_scheme_is_declared(document):
    assert bearer_schemes(document)


def test_every_success_has_a_named_response_schema_or_is_text(document):
    schemas = document["components"]["schemas"]
    missing = []
    for method, path, operation in operations(document):
        successes = {status: r for status, r in operation["responses"].items() if status.startswith("2")}
        assert successes, (method, path)
        for status, response in successes.items():
            content = response.get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
            if ref.rsplit("/", 1)[-1] in schemas:
                continue
            if set(content) == {"text/plain"} and content["text/plain"].get("schema", {}).get("type") == "string":
                continue  # /metrics (Prometheus) and a job's Ray log
            missing.append(f"{method.upper()} {path} {status}: {content}")
    assert missing == []


def test_the_text_routes_are_exactly_the_log_and_metrics(document):
    text = {(method, path) for method, path, operation in operations(document)
            for status, response in operation["responses"].items()
            if status.startswith("2") and "text/plain" in response.get("content", {})}
    assert text == {("get", "/metrics"), ("get", "/v1/jobs/{job_id}/logs")}


def test_every_route_but_healthz_declares_the_bearer_requirement(document):
    schemes = bearer_schemes(document)
    for method, path, operation in operations(document):
        requirements = operation.get("security", [])
        if (method, path) in OPEN:
            assert requirements == [], path
            continue
        assert any(set(r) & schemes for r in requirements), (method, path)
        assert ({} in requirements) == ((method, path) in OPTIONAL_TOKEN), (method, path)
    assert all(path.startswith("/v1/") for method, path, _ in operations(document)
               if (method, path) not in OPEN | OPTIONAL_TOKEN)


def test_every_error_is_the_one_error_shape(document):
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorPublic"}, (method, path, status)
