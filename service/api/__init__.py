"""The HTTP job API, laid out like FastAPI's full-stack template: deps.py (what routes depend on), models.py
(response bodies), routes/ (one module per resource), main.py (the app)."""

from service.api.main import create_app

__all__ = ["create_app"]
