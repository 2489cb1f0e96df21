"""`effft server`: the API, the scheduler, the job store and (unless RAY_ADDRESS names one) a local Ray head."""

from __future__ import annotations

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
from service.serving import run_http, serving
from service.settings import Settings
from service.store import JobStore

SERVER_FILE, TOKEN_FILE = "server.json", "admin-token"
# what serve() hands its API workers through their environment (spawned, they read their settings from it)
DATA_DIR_ENV, RAY_ADDRESS_ENV, DASHBOARD_ENV = "EFFFT_DATA_DIR", "RAY_ADDRESS", "EFFFT_RAY_DASHBOARD_URL"


@dataclass
class Services:
    """The cluster as the API sees it (service.api.deps.Services)."""

    cluster: object
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


def migrated_store(settings: Settings) -> JobStore:
    """The store at settings.database, its file private and its tables migrated to this version."""
    make_sqlite_private(settings.database)
    upgrade(settings.database)
    return JobStore(make_engine(settings.database))


def ray_cluster(settings: Settings) -> RayCluster:
    return RayCluster(settings.ray_address, settings.ray_dashboard_url, settings.cpu_device_memory_bytes)


def build_app(settings: Settings, cluster=None, migrate: bool = True) -> FastAPI:
    """The API (no scheduler) over settings.database and `cluster` (default: the Ray cluster of the settings)."""
    store = migrated_store(settings) if migrate else JobStore(make_engine(settings.database))
    return create_app(settings, store, Services(cluster or ray_cluster(settings), settings))


def admin_token(data_dir: Path) -> str:
    """The local admin token, made once and readable only by this user; the CLI on this machine reads it."""
    path = data_dir / TOKEN_FILE
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def server_settings(data_dir: Path) -> Settings:
    """What `effft server` runs with, alike in its scheduler's process and in each API worker: the EFFFT_* environment
    and, unless it names admin tokens, the local admin token of the embedded default (which the CLI here reads)."""
    settings = Settings(data_dir=data_dir)
    if not settings.admin_tokens:
        settings.admin_tokens = [admin_token(data_dir)]
    return settings


def serve(host: str, port: int, data_dir: Path) -> None:
    """The scheduler in this process, the API in EFFFT_API_WORKERS processes of its own (service/serving.py)."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ[DATA_DIR_ENV] = str(data_dir)  # the API workers' settings read what this process's read
    settings = server_settings(data_dir)
    if not settings.ray_address:
        os.environ.update(LOOPBACK_ENV)  # before Ray is imported: connect to the head by 127.0.0.1 as given
        head = start_ray_head(data_dir)
        os.environ.update({RAY_ADDRESS_ENV: head["address"], DASHBOARD_ENV: head["dashboard_url"]})
        settings = server_settings(data_dir)
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # what a CLI on this machine dials
    url = f"http://{local}:{port}"
    (data_dir / SERVER_FILE).write_text(json.dumps({"url": url, "pid": os.getpid()}))
    scheduler = Scheduler(migrated_store(settings), settings, ray_cluster(settings), settings.public_url or url)
    scheduler.start()  # migrated before any API worker starts: they only connect
    try:
        run_http(f"{__name__}:api_app", host, port, settings.api_workers)
    finally:
        scheduler.stop()


def api_app() -> FastAPI:
    """One API worker's app (run_http calls it in each worker process): the store and the cluster, no scheduler."""
    return serving(build_app(server_settings(Path(os.environ[DATA_DIR_ENV])), migrate=False))


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
