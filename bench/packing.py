"""Packing vs one job at a time: N small jobs of mixed sizes through the embedded server, twice.

Once with every job `resources.exclusive: true` (whole devices: one at a time on this CPU), once
packed by predicted memory. Prints, side by side: makespan, mean job completion time (submit ->
end), time-weighted device memory held / capacity, jobs that ran at once (most), OOMs and
re-plans. On a CPU packing cannot add compute (the jobs share the same cores): it shows the
placement is correct and safe; on a GPU the same run shows the throughput gain.

    .venv/bin/python bench/packing.py [--jobs 4] [--capacity-jobs 3.5] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EFFFT = str(Path(sys.executable).with_name("effft"))
sys.path.insert(0, str(ROOT))
from planner.catalog import CPU  # noqa: E402
from tests.conftest import free_port  # noqa: E402

HELD_PER_JOB = CPU.context_bytes + 40 * 2**20  # a tiny job's worker process + plan, generously


def cli(env: dict, *args: str) -> str:
    done = subprocess.run([EFFFT, *args], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"effft {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def api(server: dict, path: str):
    request = urllib.request.Request(server["url"] + path, headers={"Authorization": f"Bearer {server['token']}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def job_files(folder: Path, count: int, steps: int, exclusive: bool) -> list[Path]:
    """Mixed sizes: LoRA and full fine-tunes, short and long, of the example's tiny model."""
    base = yaml.safe_load((folder / "example" / "job.yaml").read_text())
    paths = []
    for number in range(count):
        job = {**base, "name": f"pack{number}", "method": "full" if number % 2 else "lora"}
        job["training"] = {**base["training"], "max_steps": steps * (1 + number % 2), "learning_rate": 1e-3}
        job["training"]["eval"] = {"fraction": 0.05}
        job["resources"] = {"exclusive": exclusive}
        job["output"] = {"dir": str(folder / "outputs" / "admin" / job["name"])}
        path = folder / "example" / f"pack{number}.yaml"
        path.write_text(yaml.safe_dump(job))
        paths.append(path)
    return paths


def run_mode(server: dict, count: int, steps: int, exclusive: bool) -> dict:
    started = time.time()
    ids = [cli(server["env"], "submit", str(path)).split("submitted ")[1].split()[0]
           for path in job_files(server["data"], count, steps, exclusive)]
    while not all(api(server, f"/v1/jobs/{j}")["state"] in ("succeeded", "failed", "cancelled") for j in ids):
        time.sleep(2)
    jobs = [api(server, f"/v1/jobs/{j}") for j in ids]
    spans = [span(server, job) for job in jobs]
    return {"makespan": max(end for _, end, _ in spans) - started,
            "mean_jct": statistics.mean(end - datetime.fromisoformat(job["created_at"]).timestamp()
                                        for job, (_, end, _) in zip(jobs, spans, strict=True)),
            "held_share": held_share(spans, server["capacity"]), "most_at_once": most_at_once(spans),
            "succeeded": sum(job["state"] == "succeeded" for job in jobs),
            "oom": sum(job["cause"] == "oom" for job in jobs), "replans": sum(replans(server, j) for j in ids)}


def span(server: dict, job: dict) -> tuple[float, float, int]:
    events = api(server, f"/v1/jobs/{job['id']}/events")["items"]
    start = next(e["at"] for e in events if e["to"] == "running" and e["from"] != "running")
    end = next(e["at"] for e in events if e["to"] in ("succeeded", "failed", "cancelled"))
    held = (job.get("placement") or {}).get("held_bytes") or 0
    if (job.get("placement") or {}).get("exclusive"):
        held = None  # the whole device
    return datetime.fromisoformat(start).timestamp(), datetime.fromisoformat(end).timestamp(), held


def held_share(spans, capacity: int) -> float:
    """Device memory held by running jobs over the busy time, as a share of the device (whole = 1)."""
    begin, end = min(s for s, _, _ in spans), max(e for _, e, _ in spans)
    held_seconds = sum((e - s) * (capacity if held is None else held) for s, e, held in spans)
    return held_seconds / (capacity * (end - begin))


def most_at_once(spans) -> int:
    points = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    running = most = 0
    for _, change in points:
        running += change
        most = max(most, running)
    return most


def replans(server: dict, job_id: str) -> int:
    events = api(server, f"/v1/jobs/{job_id}/events")["items"]
    return sum(e["from"] == e["to"] and "out of memory" in e["reason"] for e in events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--capacity-jobs", type=float, default=3.5, help="the CPU device's memory, in tiny jobs")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="effft-packing-bench-"))
    capacity = int(args.capacity_jobs * HELD_PER_JOB)
    env = {**os.environ, "EFFFT_DATA_DIR": str(folder), "EFFFT_CPU_DEVICE_MEMORY_BYTES": str(capacity)}
    env.pop("EFFFT_URL", None)
    env.pop("EFFFT_TOKEN", None)
    port = free_port()
    cli(env, "server", "--background", "--port", str(port))
    try:
        cli(env, "init-example", str(folder / "example"))
        server = {"data": folder, "env": env, "url": f"http://127.0.0.1:{port}", "capacity": capacity,
                  "token": (folder / "admin-token").read_text().strip()}
        results = {"one at a time": run_mode(server, args.jobs, args.steps, exclusive=True),
                   "packed": run_mode(server, args.jobs, args.steps, exclusive=False)}
    finally:
        cli(env, "stop")
    print(f"{args.jobs} tiny jobs (LoRA and full, {args.steps}-{2 * args.steps} steps) on a CPU device of "
          f"{capacity / 1e9:.2f} GB ({args.capacity_jobs} jobs' worth); {os.cpu_count()} cores")
    print(f"{'':>24}" + "".join(f"{mode:>16}" for mode in results))
    rows = (("makespan (s)", "makespan", "{:.0f}"), ("mean completion (s)", "mean_jct", "{:.0f}"),
            ("memory held / device", "held_share", "{:.0%}"), ("most at once", "most_at_once", "{}"),
            ("succeeded", "succeeded", "{}"), ("OOM failures", "oom", "{}"), ("re-plans", "replans", "{}"))
    for label, key, form in rows:
        print(f"{label:>24}" + "".join(f"{form.format(r[key]):>16}" for r in results.values()))
    one, packed = results["one at a time"], results["packed"]
    print(f"packed / one at a time: makespan x{packed['makespan'] / one['makespan']:.2f}, "
          f"mean completion x{packed['mean_jct'] / one['mean_jct']:.2f}")


if __name__ == "__main__":
    main()
