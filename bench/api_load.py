"""Concurrent clients against the job API on loopback: submits/s, latency, and lost or duplicated jobs.

The API runs in a subprocess (uvicorn, one process) over SQLite and then over Postgres, with a
static CPU inventory and no scheduler: this measures the API and the store, not training. Each
client submits jobs (every tenth submit is retried with the same Idempotency-Key, as a client
whose answer was lost would) and polls each job once. Bounded in count and time. The clients share
the machine's CPU with the API; by default they are lean (bench/lean_http.py) so that what is timed
is the API, and `--client both` runs httpx clients beside them to show the difference.

    .venv/bin/python bench/api_load.py [--clients 50] [--runs 5] [--db both] [--client lean|httpx|both]
                                       [--against OTHER_CHECKOUT] [--workers 2|1,2] [--saturated]
                                       [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.api_server import (  # noqa: E402
    ROOT,
    TOKEN,
    cpu_per_request,
    cpu_seconds,
    job_body,
    other_database,
    reset_postgres,
    serve,
)
from bench.lean_http import Connection, DroppedConnection  # noqa: E402

TRANSPORT_ERRORS = (httpx.TransportError, DroppedConnection, OSError)


async def send(request, latencies: list, kind: str, errors: dict, method: str, path: str, body: bytes = b"",
               headers: dict | None = None) -> tuple[int, bytes]:
    """One request, timed; a dropped connection is counted and the request sent again (a submit carries its
    Idempotency-Key, so a replay is safe), as a client of the API would."""
    for _ in range(5):
        started = time.perf_counter()
        try:
            answer = await request(method, path, body, headers)
        except TRANSPORT_ERRORS as error:
            errors["transport"].append(f"{kind}: {type(error).__name__}: {error}")
            continue
        latencies.append((kind, time.perf_counter() - started))
        return answer
    raise RuntimeError(f"{kind} failed 5 times: {errors['transport'][-1]}")


async def client(request, data_dir: str, jobs: int, deadline: float, latencies: list, keys: set, errors: dict,
                 interval: float, tag: str) -> None:
    for index in range(jobs):
        if time.monotonic() > deadline:
            return
        if interval:  # a paced client: one job per interval, started at a random phase
            await asyncio.sleep(interval * (0.5 + random.random()))
        key = uuid.uuid4().hex
        for attempt in range(2 if index % 10 == 0 else 1):  # every tenth: a retried submit
            status, body = await send(request, latencies, "submit", errors, "POST", "/v1/jobs",
                                      job_body(data_dir, index, tag).encode(),
                                      {"Idempotency-Key": key, "Content-Type": "application/yaml"})
            if status not in (200, 201) or (attempt == 1 and status != 200):
                errors["http"].append(f"submit {status}: {body[:200]!r}")
        keys.add(key)
        status, _ = await send(request, latencies, "get", errors, "GET", f"/v1/jobs/{json.loads(body)['id']}")
        if status != 200:
            errors["http"].append(f"get {status}")


def lean_requests(url: str, clients: int) -> tuple[list, callable]:
    """A connection of its own per client (bench/lean_http.py): about 0.3 ms of CPU per request."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connections = [Connection(host, int(port), {"Authorization": f"Bearer {TOKEN}"}) for _ in range(clients)]

    async def close() -> None:
        for connection in connections:
            connection.close()

    return [c.request for c in connections], close


def httpx_requests(url: str, clients: int) -> tuple[list, callable]:
    """One httpx pool shared by the clients, as a Python service calling the API would: about 2.7 ms of CPU per
    request here, which on 2 cores is itself most of the tail it measures."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, limits=limits)

    async def request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
        response = await http.request(method, path, content=body, headers=headers)
        return response.status_code, response.content

    return [request] * clients, http.aclose


async def load(url: str, data_dir: str, clients: int, jobs: int, seconds: float, interval: float, tag: str,
               kind: str = "lean") -> dict:
    latencies, keys, errors = [], set(), {"http": [], "transport": []}
    requests, close = (lean_requests if kind == "lean" else httpx_requests)(url, clients)
    cpu_before, started = cpu_seconds(os.getpid()), time.perf_counter()
    deadline = time.monotonic() + seconds
    try:
        await asyncio.gather(*(client(request, data_dir, jobs, deadline, latencies, keys, errors, interval, tag)
                               for request in requests))
    finally:
        await close()
    elapsed, client_cpu = time.perf_counter() - started, cpu_seconds(os.getpid()) - cpu_before
    stored = await stored_jobs(url, tag)
    submits = sorted(s for kind, s in latencies if kind == "submit")
    stored_keys = [j["id"] for j in stored]
    return {"submits": len(submits), "submits_per_second": len(submits) / elapsed,
            "p50_ms": 1000 * statistics.median(submits), "p99_ms": 1000 * submits[int(0.99 * (len(submits) - 1))],
            "get_p99_ms": 1000 * sorted(s for k, s in latencies if k == "get")[int(0.99 * (len(keys) - 1))],
            "client_cpu_ms": 1000 * client_cpu / len(latencies),
            "jobs_expected": len(keys), "jobs_stored": len(stored), "lost": max(0, len(keys) - len(stored)),
            "duplicated": len(stored_keys) - len(set(stored_keys)) + max(0, len(stored) - len(keys)),
            "errors": len(errors["http"]), "transport_errors": len(errors["transport"]),
            "first_error": (errors["http"] + errors["transport"] or [None])[0]}


async def stored_jobs(url: str, tag: str) -> list[dict]:
    """Every job of this run the API lists, a page at a time (after the timed part)."""
    stored, cursor = [], None
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        while True:
            page = (await http.get("/v1/jobs", params={"limit": 500, **({"cursor": cursor} if cursor else {})})).json()
            stored += [j for j in page["items"] if j["name"].startswith(tag + "-")]
            cursor = page["next_cursor"]
            if cursor is None:
                return stored


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--jobs-per-client", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30, help="stop submitting after this long")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="paced: each client submits one job per this many seconds on average")
    parser.add_argument("--runs", type=int, default=5, help="paced runs per database (median and worst shown)")
    parser.add_argument("--saturated", action="store_true", help="then one closed-loop run (no pacing) each")
    parser.add_argument("--db", choices=("both", "sqlite", "postgres"), default="both")
    parser.add_argument("--client", choices=("lean", "httpx", "both"), default="lean",
                        help="the clients' HTTP library (both: their runs alternate, side by side)")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout of effft (git worktree add /tmp/base REF): its API runs beside this "
                             "one, their runs alternate, and the summary shows both")
    parser.add_argument("--workers", type=lambda text: [int(n) for n in text.split(",")], default=[2],
                        help="the API's worker processes (EFFFT_API_WORKERS); a list (1,2) serves one API per count, "
                             "side by side")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="a database whose tables the bench may drop (each further API gets one named *_apiN)")
    options = parser.parse_args()
    kinds = ("lean", "httpx") if options.client == "both" else (options.client,)
    checkouts = {"": ROOT, **({f" ({options.against.name})": options.against.resolve()} if options.against else {})}
    summary, cost = {}, {}
    with tempfile.TemporaryDirectory() as data_dir:
        for name in ("sqlite", "postgres"):
            if options.db in ("both", name):
                bench_database(name, checkouts, kinds, data_dir, options, summary, cost)
    print_summary(summary, cost, options)


def bench_database(name: str, checkouts: dict[str, Path], kinds: tuple[str, ...], data_dir: str, options,
                   summary: dict, cost: dict) -> None:
    """Every checkout's API over its own `name` database; paced runs alternate between checkouts and clients, so a
    noisy minute on this shared machine hits each alike."""
    apis = {}
    try:
        for index, (suffix, root, workers) in enumerate(
                (suffix + (f" w{workers}" if len(options.workers) > 1 else ""), root, workers)
                for suffix, root in checkouts.items() for workers in options.workers):
            if name == "sqlite":
                url = f"sqlite:///{data_dir}/bench{index}.db"
            else:
                url = other_database(options.postgres, f"api{index}") if index else options.postgres
                reset_postgres(url)
            process, api = serve(url, data_dir, root, workers)
            apis[suffix] = (process, api, cpu_per_request(api, process.pid, data_dir))
        for run in range(options.runs):
            for suffix, (_, api, server_cpu) in apis.items():
                for kind in kinds:
                    label = name + suffix + ("" if len(kinds) == 1 else f" {kind}")
                    cost[label] = server_cpu
                    result = asyncio.run(load(api, data_dir, options.clients, options.jobs_per_client,
                                              options.seconds, options.interval, f"paced{run}{kind}", kind))
                    report(f"{label} paced #{run + 1}", options.clients, result)
                    summary.setdefault(label, []).append(result)
        if options.saturated:
            for suffix, (_, api, _) in apis.items():
                report(f"{name}{suffix} saturated", options.clients, asyncio.run(
                    load(api, data_dir, options.clients, options.jobs_per_client, options.seconds, 0.0, "sat",
                         kinds[0])))
    finally:
        for process, *_ in apis.values():
            process.terminate()
            process.wait(timeout=30)


def print_summary(summary: dict[str, list[dict]], cost: dict[str, float], options) -> None:
    print(f"\n{options.clients} paced clients (one submit per {options.interval} s each, every tenth retried, and a "
          f"GET), {options.runs} runs of {options.jobs_per_client} jobs per client; goal: submit p99 <= 20 ms, "
          "0 transport errors")
    print(f"{'':28s}" + "".join(f"{label:>22s}" for label in summary))
    print(f"{'server CPU ms per submit+GET':28s}" + "".join(f"{cost[label]:>22.2f}" for label in summary))
    rows = [("submit p50 ms, median/worst", "p50_ms", max), ("submit p99 ms, median/worst", "p99_ms", max),
            ("get p99 ms, median/worst", "get_p99_ms", max), ("submits/s, median/worst", "submits_per_second", min),
            ("client CPU ms per request", "client_cpu_ms", max)]
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
