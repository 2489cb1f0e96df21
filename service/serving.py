"""The API's HTTP serving: uvicorn running an app factory in EFFFT_API_WORKERS processes of their own.

Why processes: one Python process serves requests on one core at a time (the GIL). Under 50 paced clients its
queue, not any request's own work, made the slowest submits; a second worker process on a 2-core machine cut the
submit p99 by 15 % on SQLite and a third on Postgres, measured side by side (bench/api_load.py --workers 1,2).
The scheduler stays in the process that starts them (service.server.serve), so there is one scheduler whatever the
number of API workers; the workers share nothing but the store.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time

# Longer than any client keeps an idle connection (httpx: 5 s, browsers: 60 s): uvicorn's own 5 s let the
# server close a pooled connection just as a client sent on it, which the client saw as a dropped request.
KEEP_ALIVE_SECONDS = 75
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def run_http(factory: str, host: str, port: int, workers: int = 1) -> None:
    """Serve the app `factory` ("module:function", called in each worker) on host:port until a signal stops it.

    With one worker the app is built and served in this process; with more, uvicorn's supervisor starts them
    (spawned: each imports and builds its own app) and restarts one that dies."""
    import uvicorn

    uvicorn.run(factory, factory=True, host=host, port=port, workers=workers, log_level="warning",
                timeout_keep_alive=KEEP_ALIVE_SECONDS)


def serving(app):
    """`app`, ready to serve from this process: called by every factory `run_http` serves, once the app is built.

    A worker process dies with the process that started it: `kill -9` of `effft server` must not leave workers
    holding the port (a restarted server could not bind it) and answering without a scheduler."""
    if (parent := multiprocessing.parent_process()) is not None:  # a worker uvicorn spawned
        exit_with_parent(parent.pid)
    # Everything imported and built so far lives as long as the server. Frozen, the cyclic collector stops
    # walking it: a full collection took 40-130 ms here (130,000 objects on a slow core), every request in
    # flight waited it out, and that was the API's worst latency; after the freeze one takes 2-4 ms.
    gc.collect()
    gc.freeze()
    return app


def exit_with_parent(parent_pid: int) -> None:
    """Be killed when `parent_pid` exits: by the kernel on Linux (PR_SET_PDEATHSIG), else by a watching thread."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # it died before the request was made
                os._exit(1)
            return
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="effft-parent-watch").start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)
