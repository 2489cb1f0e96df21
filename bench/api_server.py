"""The API as the benchmarks run it: a subprocess of a checkout (this one or another), over SQLite or Postgres,
with a static CPU inventory and no scheduler; and what it costs per request."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import free_port  # noqa: E402

TOKEN = "bench-token"
APP_MODULE = "bench_api_app"
# The API as the benchmarks serve it, written beside the bench's data as a module of its own (the API's workers are
# spawned processes that import their app factory by name) and run with a checkout on PYTHONPATH: this one, or the
# one --against names, which may predate API workers.
SERVER = """
import os, sys
from planner import Inventory, cpu_with_memory
from service.settings import Settings

class StaticCluster:
    def inventory(self):
        return Inventory.single(cpu_with_memory(16 * 2**30), 1)

def settings():
    return Settings(data_dir=os.environ["BENCH_DATA_DIR"], database_url=os.environ["BENCH_DATABASE_URL"],
                    tokens={"TOKEN": "bench"})

def app():
    from service.server import build_app
    from service.serving import serving
    return serving(build_app(settings(), cluster=StaticCluster(), migrate=False))

if __name__ == "__main__":
    from service import server

    port = int(sys.argv[1])
    if not hasattr(server, "migrated_store"):  # a checkout from before API workers: one process, as it served then
        server.run_http(server.build_app(settings(), "http://127.0.0.1:%d" % port, cluster=StaticCluster(),
                                         run_scheduler=False), "127.0.0.1", port)
    else:
        from service.serving import run_http
        server.migrated_store(settings())  # once, before the workers start
        run_http("APP_MODULE:app", "127.0.0.1", port, int(sys.argv[2]))
""".replace("TOKEN", TOKEN).replace("APP_MODULE", APP_MODULE)


def job_body(data_dir: str, index: int, tag: str) -> str:
    return (f"name: {tag}-{index}\nmodel: meta-llama/Llama-2-7b-hf\ndataset: {data_dir}/data/data.jsonl\n"
            "method: lora\ntraining: {max_steps: 10}\n")


def cpu_seconds(pid: int, descendants: bool = False) -> float:
    """CPU seconds (user + system) process `pid` has used (the bench's own, for its clients), and with
    `descendants` its live children's and theirs too (an API and its worker processes)."""
    process = psutil.Process(pid)
    total = 0.0
    for each in [process, *(process.children(recursive=True) if descendants else [])]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a child that ended meanwhile
            times = each.cpu_times()
            total += times.user + times.system
    return total


def cpu_per_request(url: str, pid: int, data_dir: str, pairs: int = 300) -> float:
    """The server's CPU milliseconds per submit and GET, one client, one request at a time: the cost of a
    request itself, which sets how many a core serves, apart from queueing."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        def pair(index: int, tag: str) -> None:
            created = http.post("/v1/jobs", content=job_body(data_dir, index, tag),
                                headers={"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/yaml"})
            http.get(f"/v1/jobs/{created.json()['id']}")

        for index in range(30):  # warm: imports, caches, the pool's connections
            pair(index, "warm")
        started = cpu_seconds(pid, descendants=True)
        for index in range(pairs):
            pair(index, "cost")
        return 1000 * (cpu_seconds(pid, descendants=True) - started) / pairs


def launch_api(args: list[str], port: int, env: dict[str, str], root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """`python ARGS` (an API on `port`) from a checkout's root; returns once /healthz answers."""
    process = subprocess.Popen([sys.executable, *args], env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the API did not start")


def serve(database_url: str, data_dir: str, root: Path = ROOT, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """The API of the checkout at `root` (this one, or the one --against names) over `database_url`, in `workers`
    processes (a checkout from before API workers serves in one)."""
    port, folder = free_port(), Path(data_dir) / "bench_server"
    folder.mkdir(exist_ok=True)
    (folder / f"{APP_MODULE}.py").write_text(SERVER)
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{folder}", "BENCH_DATA_DIR": data_dir,
           "BENCH_DATABASE_URL": database_url}
    return launch_api([str(folder / f"{APP_MODULE}.py"), str(port), str(workers)], port, env, root)


def other_database(url: str, suffix: str) -> str:
    """`url` with `_SUFFIX` after its database name, created when missing: another API's own tables."""
    from sqlalchemy import create_engine, make_url, text

    main_url = make_url(url)
    other = main_url.set(database=f"{main_url.database}_{suffix}")
    engine = create_engine(main_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        if not connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                  {"name": other.database}).first():
            connection.execute(text(f'CREATE DATABASE "{other.database}"'))
    engine.dispose()
    return other.render_as_string(hide_password=False)


def reset_postgres(url: str) -> None:
    """Every table in the database dropped (whatever migrations made them), so each run starts empty."""
    from sqlalchemy import MetaData, create_engine

    engine = create_engine(url)
    tables = MetaData()
    tables.reflect(engine)
    tables.drop_all(engine)
    engine.dispose()
