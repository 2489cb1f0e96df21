"""`effft server`: the API, the scheduler, the job store and (unless RAY_ADDRESS names one) a local Ray head."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from service.api import create_app
from service.cluster import RayCluster, gpu_memory_rows, inventory_view
from service.db import make_engine, make_sqlite_private
from service.embedded import (
    LOOPBACK_ENV,
    alive,
    start_detached,
    start_ray_head,
    stop_drivers,
    stop_pid,
    stop_ray_head,
    write_secret,
)
from service.migrate import upgrade
from service.prom import make_registry
from service.scheduler import Scheduler
from service.settings import Settings
from service.store import JobStore

SERVER_FILE, TOKEN_FILE = "server.json", "admin-token"


@dataclass
class Services:
    """The cluster and the scheduler as the API sees them (service.api.deps.Services)."""

    cluster: object
    scheduler: Scheduler | None
    settings: Settings  # read at each scrape: how long an ended job's series stay on /metrics

    def inventory(self):
        return self.cluster.inventory()

    def inventory_view(self, store: JobStore) -> dict:
        return inventory_view(self.cluster.inventory(), store)

    def logs(self, job) -> str:
        return self.cluster.logs(job.ray_job_id) if job.ray_job_id else ""

    def registry_for(self, store: JobStore, scope: str):
        """A Prometheus registry of what `scope` may see (service.auth.metrics_scope)."""
        return make_registry(store, lambda s: gpu_memory_rows(self.cluster.inventory(), s),
                             self.settings.metrics_job_retention_hours, scope)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        if self.scheduler is not None:
            self.scheduler.start()
        yield
        if self.scheduler is not None:
            self.scheduler.stop()


def build_app(settings: Settings, api_url: str, cluster=None, run_scheduler: bool = True) -> FastAPI:
    make_sqlite_private(settings.database)
    upgrade(settings.database)
    store = JobStore(make_engine(settings.database))
    cluster = cluster or RayCluster(settings.ray_address, settings.ray_dashboard_url, settings.cpu_device_memory_bytes)
    scheduler = Scheduler(store, settings, cluster, api_url) if run_scheduler else None
    return create_app(settings, store, Services(cluster, scheduler, settings))


def admin_token(data_dir: Path) -> str:
    """The local admin token, made once and readable only by this user; the CLI on this machine reads it."""
    path = data_dir / TOKEN_FILE
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def serve(host: str, port: int, data_dir: Path) -> None:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir)
    if not settings.admin_tokens:  # the embedded default: a local token the CLI on this machine reads
        settings.admin_tokens = [admin_token(data_dir)]
    if not settings.ray_address:
        os.environ.update(LOOPBACK_ENV)  # before Ray is imported: connect to the head by 127.0.0.1 as given
        head = start_ray_head(data_dir)
        settings.ray_address, settings.ray_dashboard_url = head["address"], head["dashboard_url"]
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # what a CLI on this machine dials
    url = f"http://{local}:{port}"
    (data_dir / SERVER_FILE).write_text(json.dumps({"url": url, "pid": os.getpid()}))
    run_http(build_app(settings, settings.public_url or url), host, port)


# Longer than any client keeps an idle connection (httpx: 5 s, browsers: 60 s): uvicorn's own 5 s let the
# server close a pooled connection just as a client sent on it, which the client saw as a dropped request.
KEEP_ALIVE_SECONDS = 75


def run_http(app: FastAPI, host: str, port: int) -> None:
    """Serve `app` as `effft server` does (and the API benchmark too)."""
    import uvicorn

    # Everything imported and built so far lives as long as the server. Frozen, the cyclic collector stops
    # walking it: a full collection took 40-130 ms here (130,000 objects on a slow core), every request in
    # flight waited it out, and that was the API's worst latency; after the freeze one takes 2-4 ms.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_SECONDS)


def serve_in_background(host: str, port: int, data_dir: Path, timeout: float = 180) -> str:
    """Start `effft server` detached (its log in DATA_DIR/server.log) and wait until it answers."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).parent / "effft"), "server", "--host", host, "--port", str(port),
               "--data-dir", str(data_dir)]
    url = f"http://{host}:{port}"
    start_detached(command, data_dir / "server.log", f"{url}/healthz", timeout, "the server")
    return url


def stop(data_dir: Path) -> list[str]:
    """Stop the server and the Ray head it started; returns what was stopped."""
    data_dir, stopped = data_dir.resolve(), []
    path = data_dir / SERVER_FILE
    if path.exists():
        pid = json.loads(path.read_text())["pid"]
        if alive(pid, expect="effft"):
            stop_pid(pid, expect="effft")
            stopped.append(f"server (pid {pid})")
        path.unlink()
    if stop_ray_head(data_dir):
        stopped.append("Ray head")
    if drivers := stop_drivers(data_dir):
        stopped.append(f"{drivers} job driver(s) left by the Ray head")
    return stopped
