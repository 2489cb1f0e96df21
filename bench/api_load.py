"""Concurrent clients against the job API on loopback: submits/s, latency, and lost or duplicated jobs.

The API runs in a subprocess (uvicorn, one process) over SQLite and then over Postgres, with a
static CPU inventory and no scheduler: this measures the API and the store, not training. Each
client submits jobs (every tenth submit is retried with the same Idempotency-Key, as a client
whose answer was lost would) and polls each job once. Bounded in count and time.

    .venv/bin/python bench/api_load.py [--clients 50] [--jobs-per-client 20] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import free_port  # noqa: E402

TOKEN = "bench-token"
SERVER = """
import sys, uvicorn
from planner import Inventory, cpu_with_memory
from service.server import build_app
from service.settings import Settings

class StaticCluster:
    def inventory(self):
        return Inventory.single(cpu_with_memory(16 * 2**30), 1)

settings = Settings(data_dir=sys.argv[2], database_url=sys.argv[3], tokens={"TOKEN": "bench"})
app = build_app(settings, "http://127.0.0.1:" + sys.argv[1], cluster=StaticCluster(), run_scheduler=False)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""".replace("TOKEN", TOKEN)


def job_body(data_dir: str, index: int, tag: str) -> str:
    return (f"name: {tag}-{index}\nmodel: meta-llama/Llama-2-7b-hf\ndataset: {data_dir}/data/data.jsonl\n"
            "method: lora\ntraining: {max_steps: 10}\n")


async def client(http: httpx.AsyncClient, data_dir: str, jobs: int, deadline: float, latencies: list, keys: set,
                 errors: list, interval: float, tag: str) -> None:
    for index in range(jobs):
        if time.monotonic() > deadline:
            return
        if interval:  # a paced client: one job per interval, started at a random phase
            await asyncio.sleep(interval * (0.5 + random.random()))
        key = uuid.uuid4().hex
        for attempt in range(2 if index % 10 == 0 else 1):  # every tenth: a retried submit
            started = time.perf_counter()
            response = await http.post("/v1/jobs", content=job_body(data_dir, index, tag),
                                       headers={"Idempotency-Key": key, "Content-Type": "application/yaml"})
            latencies.append(("submit", time.perf_counter() - started))
            if response.status_code not in (200, 201) or (attempt == 1 and response.status_code != 200):
                errors.append(f"submit {response.status_code}: {response.text[:200]}")
        keys.add(key)
        started = time.perf_counter()
        response = await http.get(f"/v1/jobs/{response.json()['id']}")
        latencies.append(("get", time.perf_counter() - started))
        if response.status_code != 200:
            errors.append(f"get {response.status_code}")


async def load(url: str, data_dir: str, clients: int, jobs: int, seconds: float, interval: float, tag: str) -> dict:
    latencies, keys, errors = [], set(), []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
                                 limits=limits) as http:
        started = time.perf_counter()
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(client(http, data_dir, jobs, deadline, latencies, keys, errors, interval, tag)
                               for _ in range(clients)))
        elapsed = time.perf_counter() - started
        stored, cursor = [], None
        while True:
            page = (await http.get("/v1/jobs", params={"limit": 500, **({"cursor": cursor} if cursor else {})})).json()
            stored += [j for j in page["items"] if j["name"].startswith(tag + "-")]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    submits = sorted(s for kind, s in latencies if kind == "submit")
    stored_keys = [j["id"] for j in stored]
    return {"submits": len(submits), "submits_per_second": len(submits) / elapsed,
            "p50_ms": 1000 * statistics.median(submits), "p99_ms": 1000 * submits[int(0.99 * (len(submits) - 1))],
            "get_p99_ms": 1000 * sorted(s for k, s in latencies if k == "get")[int(0.99 * (len(keys) - 1))],
            "jobs_expected": len(keys), "jobs_stored": len(stored), "lost": max(0, len(keys) - len(stored)),
            "duplicated": len(stored_keys) - len(set(stored_keys)) + max(0, len(stored) - len(keys)),
            "errors": len(errors), "first_error": errors[0] if errors else None}


def launch_api(args: list[str], port: int, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`python ARGS` (an API on `port`) from the repository root; returns once /healthz answers."""
    process = subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the API did not start")


def serve(database_url: str, data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    return launch_api(["-c", SERVER, str(port), data_dir, database_url], port,
                      {**os.environ, "PYTHONPATH": str(ROOT)})


def reset_postgres(url: str) -> None:
    """Every table in the database dropped (whatever migrations made them), so each run starts empty."""
    from sqlalchemy import MetaData, create_engine

    engine = create_engine(url)
    tables = MetaData()
    tables.reflect(engine)
    tables.drop_all(engine)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--jobs-per-client", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60, help="stop submitting after this long")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="paced run: each client submits one job per this many seconds (then a closed-loop run)")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        for name, url in (("sqlite", f"sqlite:///{data_dir}/bench.db"), ("postgres", options.postgres)):
            if name == "postgres":
                reset_postgres(url)
            process, api = serve(url, data_dir)
            try:
                for label, interval in (("paced", options.interval), ("saturated", 0.0)):
                    result = asyncio.run(load(api, data_dir, options.clients, options.jobs_per_client,
                                              options.seconds, interval, label))
                    report(f"{name} {label}", options.clients, result)
            finally:
                process.terminate()
                process.wait(timeout=30)


def report(label: str, clients: int, result: dict) -> None:
    print(f"{label:19s} {clients} clients: {result['submits']} submits, {result['submits_per_second']:,.0f}/s, "
          f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms (goal <= 20), get p99 "
          f"{result['get_p99_ms']:.1f} ms; jobs {result['jobs_stored']}/{result['jobs_expected']}, lost "
          f"{result['lost']}, duplicated {result['duplicated']}, errors {result['errors']}"
          + (f" ({result['first_error']})" if result["first_error"] else ""))


if __name__ == "__main__":
    main()
