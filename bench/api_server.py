"""The API as the benchmarks run it: a subprocess of a checkout (this one or another), over SQLite or Postgres,
with a static CPU inventory and no scheduler; and what it costs per request."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import free_port  # noqa: E402

TOKEN = "bench-token"
SERVER = """
import sys
from planner import Inventory, cpu_with_memory
from service.server import build_app, run_http
from service.settings import Settings

class StaticCluster:
    def inventory(self):
        return Inventory.single(cpu_with_memory(16 * 2**30), 1)

settings = Settings(data_dir=sys.argv[2], database_url=sys.argv[3], tokens={"TOKEN": "bench"})
app = build_app(settings, "http://127.0.0.1:" + sys.argv[1], cluster=StaticCluster(), run_scheduler=False)
run_http(app, "127.0.0.1", int(sys.argv[1]))
""".replace("TOKEN", TOKEN)


def job_body(data_dir: str, index: int, tag: str) -> str:
    return (f"name: {tag}-{index}\nmodel: meta-llama/Llama-2-7b-hf\ndataset: {data_dir}/data/data.jsonl\n"
            "method: lora\ntraining: {max_steps: 10}\n")


def cpu_seconds(pid: int) -> float:
    """CPU seconds process `pid` has used (the API's, or the bench's own for its clients)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


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
        started = cpu_seconds(pid)
        for index in range(pairs):
            pair(index, "cost")
        return 1000 * (cpu_seconds(pid) - started) / pairs


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


def serve(database_url: str, data_dir: str, root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """The API of the checkout at `root` (this one, or the one --against names) over `database_url`."""
    port = free_port()
    return launch_api(["-c", SERVER, str(port), data_dir, database_url], port,
                      {**os.environ, "PYTHONPATH": str(root)}, root)


def second_database(url: str) -> str:
    """`url` with `_against` after its database name, created when missing: the other checkout's own tables."""
    from sqlalchemy import create_engine, make_url, text

    main_url = make_url(url)
    other = main_url.set(database=f"{main_url.database}_against")
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
