"""A request's job spec: the body read within a size limit while it streams, then parsed and checked off the
event loop, within the document limits (planner.document) and a time limit.

A bad body is a BadInput (422, or 413 when too large) whose values are short previews: an error never
echoes a large or malformed value back, and nothing is stored for a request that fails.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException, Request

from planner import SpecError, parse_job
from planner.document import MAX_DOCUMENT_BYTES, load_document
from planner.errors import FieldProblem
from planner.spec import JobSpec
from service.policy import policy_problems
from service.settings import Settings

PARSE_SECONDS = 5.0  # a body within the limits parses in under 0.5 s; this bounds the wait if one does not
# parsing (and a submit's insert, on the thread that checked its spec) gets its own few threads: hostile bodies
# can keep them busy, but never the shared pool that serves every other route (and /healthz)
PARSERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="effft-parse")
T = TypeVar("T")


class BadInput(Exception):
    def __init__(self, problems: list[FieldProblem], status: int = 422):
        self.problems, self.status = problems, status


def _too_large(size: str) -> BadInput:
    return BadInput([FieldProblem("<body>", size, f"larger than {MAX_DOCUMENT_BYTES:,} bytes; a job spec is a few "
                                                  "hundred")], status=413)


async def read_body(request: Request, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The body, refused as soon as it (or its declared length) passes `limit`: a 50 MB body is never held."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"{int(declared):,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def checked_spec(raw: bytes, settings: Settings, owner: str) -> JobSpec:
    """Parse, validate and apply the server's policy; every problem at once, as BadInput."""
    try:
        spec = parse_job(load_document(raw, "<body>"))
    except SpecError as error:
        raise BadInput(error.problems) from None
    problems = policy_problems(spec, settings, owner)
    if problems:
        raise BadInput(problems)
    try:  # validated fields are finite and UTF-8; this guards the store against anything that slipped through
        json.dumps(spec.model_dump(mode="json"), allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError) as error:
        raise BadInput([FieldProblem("<body>", None, f"the spec cannot be stored as JSON: {error}"[:300])]) from None
    return spec


async def checked_then(request: Request, settings: Settings, owner: str, then: Callable[[JobSpec], T]) -> T:
    """The request's spec, checked off the event loop, and `then(spec)` on the same thread: one thread hop, not
    two (a hop cost more CPU than a job's insert here). Past PARSE_SECONDS the request is answered with an error
    and `then` never runs (nothing is stored for it): 422 when its own check took that long, 503 when it waited
    that long for a thread (every one busy: with bodies, or with a store that does not answer)."""
    raw = await read_body(request)
    handoff = threading.Lock()
    phase = ["waiting"]  # -> checking -> then; or -> abandoned, which only the event loop sets

    def advance(to: str) -> None:
        with handoff:
            if phase[0] == "abandoned":
                raise TimeoutError("answered already")
            phase[0] = to

    def check_then() -> T:
        advance("checking")
        spec = checked_spec(raw, settings, owner)
        advance("then")
        return then(spec)

    work = asyncio.get_running_loop().run_in_executor(PARSERS, check_then)
    try:
        return await asyncio.wait_for(asyncio.shield(work), PARSE_SECONDS)
    except TimeoutError:
        with handoff:
            reached, phase[0] = phase[0], ("then" if phase[0] == "then" else "abandoned")
        if reached == "then":  # checked in time and `then` is under way: its answer is the answer
            return await work
        work.add_done_callback(lambda late: late.exception())  # how it ends now is nobody's answer
        if reached == "waiting":
            raise HTTPException(503, f"the server found no free thread to check the spec in {PARSE_SECONDS:.0f} s; "
                                     "nothing was stored, try again") from None
        raise BadInput([FieldProblem("<body>", None, f"took longer than {PARSE_SECONDS:.0f} s to read and check; "
                                                     "simplify the spec")]) from None


async def spec_from(request: Request, settings: Settings, owner: str) -> JobSpec:
    return await checked_then(request, settings, owner, lambda spec: spec)


async def json_body(request: Request, limit: int) -> object:
    """A JSON body (the worker's records) within a size and depth limit; None when it is not JSON."""
    raw = await read_body(request, limit)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # ValueError covers bad UTF-8, bad JSON and 4,300-digit integers
        return None
