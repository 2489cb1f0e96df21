"""Concurrent clients against the job API on loopback: submits/s, latency, and lost or duplicated jobs.

The API runs in a subprocess (uvicorn, one process) over SQLite and then over Postgres, with a
static CPU inventory and no scheduler: this measures the API and the store, not training. Each
client submits jobs (every tenth submit is retried with the same Idempotency-Key, as a client
whose answer was lost would) and polls each job once. Bounded in count and time.

    .venv/bin/python bench/api_load.py [--clients 50] [--runs 5] [--saturated] [--postgres URL]
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


async def send(http: httpx.AsyncClient, latencies: list, kind: str, errors: dict, method: str, url: str,
               **kwargs) -> httpx.Response:
    """One request, timed; a dropped connection is counted and the request sent again (a submit carries its
    Idempotency-Key, so a replay is safe), as a client of the API would."""
    for _ in range(5):
        started = time.perf_counter()
        try:
            response = await http.request(method, url, **kwargs)
        except httpx.TransportError as error:
            errors["transport"].append(f"{kind}: {type(error).__name__}: {error}")
            continue
        latencies.append((kind, time.perf_counter() - started))
        return response
    raise RuntimeError(f"{kind} failed 5 times: {errors['transport'][-1]}")


async def client(http: httpx.AsyncClient, data_dir: str, jobs: int, deadline: float, latencies: list, keys: set,
                 errors: dict, interval: float, tag: str) -> None:
    for index in range(jobs):
        if time.monotonic() > deadline:
            return
        if interval:  # a paced client: one job per interval, started at a random phase
            await asyncio.sleep(interval * (0.5 + random.random()))
        key = uuid.uuid4().hex
        for attempt in range(2 if index % 10 == 0 else 1):  # every tenth: a retried submit
            response = await send(http, latencies, "submit", errors, "POST", "/v1/jobs",
                                  content=job_body(data_dir, index, tag),
                                  headers={"Idempotency-Key": key, "Content-Type": "application/yaml"})
            if response.status_code not in (200, 201) or (attempt == 1 and response.status_code != 200):
                errors["http"].append(f"submit {response.status_code}: {response.text[:200]}")
        keys.add(key)
        response = await send(http, latencies, "get", errors, "GET", f"/v1/jobs/{response.json()['id']}")
        if response.status_code != 200:
            errors["http"].append(f"get {response.status_code}")


async def load(url: str, data_dir: str, clients: int, jobs: int, seconds: float, interval: float, tag: str) -> dict:
    latencies, keys, errors = [], set(), {"http": [], "transport": []}
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
            "errors": len(errors["http"]), "transport_errors": len(errors["transport"]),
            "first_error": (errors["http"] + errors["transport"] or [None])[0]}


def server_cpu_seconds(pid: int) -> float:
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
        started = server_cpu_seconds(pid)
        for index in range(pairs):
            pair(index, "cost")
        return 1000 * (server_cpu_seconds(pid) - started) / pairs


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
    parser.add_argument("--seconds", type=float, default=30, help="stop submitting after this long")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="paced: each client submits one job per this many seconds on average")
    parser.add_argument("--runs", type=int, default=5, help="paced runs per database (median and worst shown)")
    parser.add_argument("--saturated", action="store_true", help="then one closed-loop run (no pacing) each")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    options = parser.parse_args()
    summary, cost = {}, {}
    with tempfile.TemporaryDirectory() as data_dir:
        for name, url in (("sqlite", f"sqlite:///{data_dir}/bench.db"), ("postgres", options.postgres)):
            if name == "postgres":
                reset_postgres(url)
            process, api = serve(url, data_dir)
            try:
                cost[name] = cpu_per_request(api, process.pid, data_dir)
                runs = [asyncio.run(load(api, data_dir, options.clients, options.jobs_per_client, options.seconds,
                                         options.interval, f"paced{run}")) for run in range(options.runs)]
                for run, result in enumerate(runs):
                    report(f"{name} paced #{run + 1}", options.clients, result)
                summary[name] = runs
                if options.saturated:
                    report(f"{name} saturated", options.clients, asyncio.run(
                        load(api, data_dir, options.clients, options.jobs_per_client, options.seconds, 0.0, "sat")))
            finally:
                process.terminate()
                process.wait(timeout=30)
    print_summary(summary, cost, options)


def print_summary(summary: dict[str, list[dict]], cost: dict[str, float], options) -> None:
    print(f"\n{options.clients} paced clients (one submit per {options.interval} s each, every tenth retried, and a "
          f"GET), {options.runs} runs of {options.seconds:.0f} s; goal: submit p99 <= 20 ms, 0 transport errors")
    print(f"{'':28s}" + "".join(f"{name:>22s}" for name in summary))
    print(f"{'server CPU ms per submit+GET':28s}" + "".join(f"{cost[name]:>22.2f}" for name in summary))
    rows = [("submit p50 ms, median/worst", "p50_ms", max), ("submit p99 ms, median/worst", "p99_ms", max),
            ("get p99 ms, median/worst", "get_p99_ms", max), ("submits/s, median/worst", "submits_per_second", min)]
    for label, key, worst in rows:
        print(f"{label:28s}" + "".join(f"{statistics.median(r[key] for r in runs):>13.1f} / "
                                       f"{worst(r[key] for r in runs):<6.1f}" for runs in summary.values()))
    for label, key in (("transport errors, total", "transport_errors"), ("HTTP errors, total", "errors"),
                       ("jobs lost, total", "lost"), ("jobs duplicated, total", "duplicated")):
        print(f"{label:28s}" + "".join(f"{sum(r[key] for r in runs):>22d}" for runs in summary.values()))


def report(label: str, clients: int, result: dict) -> None:
    print(f"{label:19s} {clients} clients: {result['submits']} submits, {result['submits_per_second']:,.0f}/s, "
          f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, get p99 {result['get_p99_ms']:.1f} ms; "
          f"jobs {result['jobs_stored']}/{result['jobs_expected']}, lost {result['lost']}, duplicated "
          f"{result['duplicated']}, errors {result['errors']}, transport errors {result['transport_errors']}"
          + (f" ({result['first_error']})" if result["first_error"] else ""), flush=True)


if __name__ == "__main__":
    main()
