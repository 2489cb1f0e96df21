"""The job API against a fuzzer and a hostile client, live on loopback, over SQLite and Postgres.

1. schemathesis: every operation of /openapi.json, valid and invalid inputs, as a user and as an admin.
   Prints cases, answers by status, 5xx answers (goal 0) and jobs stored vs. submits answered 201 (goal equal).
2. The hostile set: YAML alias bombs (3-9 levels), 10,000-deep nesting (YAML and JSON), a 50 MB body (declared
   and streamed), NaN / Infinity in every numeric field. Each must answer 4xx within 1 s while /healthz,
   polled every 20 ms meanwhile, answers within 100 ms, and the server's RSS stays within 100 MB of its start.

    .venv/bin/python bench/fuzz_api.py [--examples 80] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import schemathesis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.api_server import launch_api, reset_postgres  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.service.fuzzing import fuzz  # noqa: E402
from tests.service.test_hostile_specs import NUMERIC_FIELDS, alias_bomb, with_value  # noqa: E402

ADMIN_TOKEN, USER_TOKEN = "fuzz-admin", "fuzz-user"
CALLERS = {"user": {"Authorization": f"Bearer {USER_TOKEN}"}, "admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}


def serve(database_url: str, data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EFFFT_TOKENS": json.dumps({USER_TOKEN: "alice"}),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return launch_api(["-m", "tests.deploy.api_server", str(port), data_dir, database_url, ADMIN_TOKEN], port, env)


def stored_jobs(url: str) -> int:
    total, cursor = 0, None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{url}/v1/jobs", params=params, headers=CALLERS["admin"], timeout=30).json()
        total += len(page["items"])
        if (cursor := page["next_cursor"]) is None:
            return total


def run_fuzzer(url: str, examples: int) -> dict:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    before = stored_jobs(url)
    started = time.perf_counter()
    report = fuzz(schema, CALLERS, examples, base_url=url)
    return {"cases": report.cases, "seconds": time.perf_counter() - started, "statuses": dict(report.statuses),
            "server_errors": report.server_errors, "created": report.created,
            "stored": stored_jobs(url) - before}


def hostile_requests(data_dir: str) -> list[tuple[str, dict]]:
    spec = {"name": "hostile", "model": "org/model", "dataset": {"path": "org/data"}, "seq_len": 64,
            "training": {"max_steps": 4}}
    cases = [(f"alias bomb {levels} levels", {"content": alias_bomb(levels)}) for levels in (3, 6, 9)]
    cases += [("10,000-deep YAML", {"content": "[" * 10_000 + "]" * 10_000}),
              ("10,000-deep JSON", {"content": '{"a":' * 10_000 + "1" + "}" * 10_000}),
              ("50 MB body", {"content": b"x" * 50_000_000}),
              ("50 MB streamed", {"content": (b"x" * 1_000_000 for _ in range(50))})]
    for path, _ in NUMERIC_FIELDS:
        for bad in (float("nan"), float("inf"), float("-inf")):
            cases.append((f"{'.'.join(path)} = {bad}", {"content": json.dumps(with_value(spec, path, bad))}))
    return cases


def run_hostile(url: str, pid: int, data_dir: str) -> dict:
    server = psutil.Process(pid)
    rss_start = server.memory_info().rss
    health: list[float] = []
    stop = threading.Event()

    def poll_health():
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get(f"{url}/healthz")
                health.append(time.perf_counter() - started)
                time.sleep(0.02)

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    answers, rss_peak = [], rss_start
    with httpx.Client(timeout=30, headers=CALLERS["user"]) as client:
        for label, request in hostile_requests(data_dir):
            started = time.perf_counter()
            response = client.post(f"{url}/v1/jobs", **request)
            answers.append((label, response.status_code, time.perf_counter() - started))
            rss_peak = max(rss_peak, server.memory_info().rss)
    stop.set()
    poller.join()
    slowest = max(answers, key=lambda a: a[2])
    return {"requests": len(answers), "not_4xx": [a for a in answers if not 400 <= a[1] < 500],
            "slowest": slowest, "over_1s": [a for a in answers if a[2] > 1.0],
            "health_p50_ms": 1000 * statistics.median(health), "health_max_ms": 1000 * max(health),
            "rss_growth_mb": (rss_peak - rss_start) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=80, help="cases per operation and mode (x 2 callers)")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    options = parser.parse_args()
    for name in ("sqlite", "postgres"):
        with tempfile.TemporaryDirectory() as data_dir:
            url = f"sqlite:///{data_dir}/fuzz.db" if name == "sqlite" else options.postgres
            if name == "postgres":
                reset_postgres(url)
            process, api = serve(url, data_dir)
            try:
                hostile = run_hostile(api, process.pid, data_dir)
                fuzzed = run_fuzzer(api, options.examples)
            finally:
                process.terminate()
                process.wait(timeout=30)
            print(f"{name:8s} schemathesis: {fuzzed['cases']:,} cases in {fuzzed['seconds']:.0f} s, answers "
                  f"{fuzzed['statuses']}, 5xx {len(fuzzed['server_errors'])} (goal 0), jobs stored "
                  f"{fuzzed['stored']} for {fuzzed['created']} answered 201 (goal equal)")
            for error in fuzzed["server_errors"][:5]:
                print(f"         5xx: {error}")
            label, status, seconds = hostile["slowest"]
            print(f"{name:8s} hostile: {hostile['requests']} requests, not 4xx {len(hostile['not_4xx'])} (goal 0), "
                  f"over 1 s {len(hostile['over_1s'])} (goal 0; slowest {label}: {seconds * 1000:.0f} ms, {status}), "
                  f"/healthz p50 {hostile['health_p50_ms']:.1f} ms, max {hostile['health_max_ms']:.1f} ms (goal "
                  f"<= 100), RSS growth {hostile['rss_growth_mb']:.1f} MB (goal <= 100)")


if __name__ == "__main__":
    main()
