"""An app factory for tests/service/test_serving.py: answers with the pid of the worker process that served it."""

from __future__ import annotations

import os

from fastapi import FastAPI

from service.serving import serving


def app() -> FastAPI:
    made = FastAPI()

    @made.get("/pid")
    async def pid() -> dict:
        return {"pid": os.getpid(), "parent": os.getppid()}

    return serving(made)
