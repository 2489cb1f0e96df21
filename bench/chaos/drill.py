"""One drill: a server on one database, N jobs submitted, the faults injected meanwhile, the jobs followed to the end.

A reference pass (`reference`) runs the same jobs on a server that is left alone: their outputs are what
the drill's jobs must end with.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from bench.chaos import faults
from bench.chaos.env import OwnPostgres, Server, SmallDisk, wait_until
from bench.chaos.procs import head
from bench.chaos.report import output_checksum
from tests.conftest import free_port

FINAL = ("succeeded", "failed", "cancelled")


def job_specs(example: Path, count: int, steps: int) -> list[dict]:
    """LoRA runs of the example's tiny model, each its own seed; the micro-batch is pinned (a calibrated plan
    must not change the arithmetic), a checkpoint every 5 steps (what a killed run resumes from)."""
    specs = []
    for number in range(count):
        specs.append({"name": f"chaos{number}", "model": str(example / "model"),
                      "dataset": {"path": str(example / "data" / "chat.jsonl"), "format": "chat"},
                      "seq_len": 128, "method": "lora", "micro_batch_size": 4,
                      "training": {"max_steps": steps, "effective_batch_size": 8, "learning_rate": 1e-2,
                                   "warmup": 0.05, "seed": 1 + number, "checkpoint_every_steps": 5}})
    return specs


class Drill:
    def __init__(self, folder: Path, example: Path, database: str, seed: int = 0, say=print):
        self.folder, self.example, self.database = folder, example, database
        self.rng, self.say = random.Random(seed), say
        self.faults: list[dict] = []
        self.resumed: set[str] = set()  # jobs a worker or driver kill made resume from a checkpoint
        self.submitted: dict[str, str] = {}  # idempotency key -> job id
        self.pg: OwnPostgres | None = None
        self.disk: SmallDisk | None = None
        self.t0 = time.monotonic()

    # -- the environment ---------------------------------------------------------------------------------------

    def start(self, disk_mb: int | None = None) -> Drill:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        if self.database == "postgres":
            self.pg = OwnPostgres(free_port()).init()
            url = self.pg.url
        else:
            url = f"sqlite:///{data}/effft.db"
        if disk_mb:
            self.disk = SmallDisk(data / "runs", disk_mb).mount()
        self.server = Server(data, url, free_port())
        self.server.env["EFFFT_DATASET_ROOTS"] = json.dumps([str(self.example)])
        self.server.start()
        self.dashboard_url = head(data)["dashboard_url"]
        self.t0 = time.monotonic()
        return self

    def close(self) -> None:
        self.server.stop()
        if self.disk is not None:
            self.disk.unmount()
        if self.pg is not None:
            self.pg.destroy()

    # -- talking to the API (which may be down: callers retry) --------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(self.server.url + path, data=body, method=method, headers={
            "Authorization": f"Bearer {self.server.token}", **(headers or {})})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")

    def api(self, path: str, timeout: float = 300):
        """GET, retried while the API is down or restarting (connection refused, 5xx)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._request("GET", path)[1]
            except (OSError, urllib.error.URLError, ValueError) as error:
                if isinstance(error, urllib.error.HTTPError) and error.code < 500 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def api_reads(self) -> bool:
        try:
            return self._request("GET", "/v1/jobs?limit=1")[0] == 200
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def submit(self, spec: dict, key: str) -> str:
        """POST the job with an Idempotency-Key, again and again until the API answers 200 or 201."""
        body = yaml.safe_dump(spec).encode()
        while True:
            try:
                status, job = self._request("POST", "/v1/jobs", body, {"Content-Type": "application/yaml",
                                                                       "Idempotency-Key": key})
                if status in (200, 201):
                    self.submitted[key] = job["id"]
                    return job["id"]
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    raise RuntimeError(f"submit refused ({error.code}): {error.read()[:500]!r}") from None
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.5)

    # -- what the jobs did (read from their run folders, so it works while the API is down) ---------------------

    def run_dir(self, job_id: str) -> Path:
        return self.server.data_dir / "runs" / job_id

    def _steps(self, job_id: str) -> list[dict]:
        spool = self.run_dir(job_id) / "metrics.jsonl"
        if not spool.exists():
            return []
        records = []
        for line in spool.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line being written
            if isinstance(record, dict) and record.get("kind") == "step":
                records.append(record)
        return records

    def spool_step(self, job_id: str) -> int:
        return max((r["step"] for r in self._steps(job_id)), default=0)

    def steps_after(self, job_id: str, wall: float) -> bool:
        return any((r.get("time") or 0) > wall for r in self._steps(job_id))

    def job_ended(self, job_id: str) -> bool:
        try:
            return self._request("GET", f"/v1/jobs/{job_id}")[1]["state"] in FINAL
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return False

    def ray_submission(self, job_id: str) -> str:
        return wait_until(lambda: self.api(f"/v1/jobs/{job_id}").get("ray_job_id"), 1200, 0.5, "a Ray job")

    def wait_all_final(self, job_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.api(f"/v1/jobs/{job_id}")["state"] in FINAL for job_id in job_ids):
            if time.monotonic() > deadline:
                self.say("timed out waiting for the jobs to end")
                return
            time.sleep(2)


def reference(folder: Path, example: Path, specs: list[dict], say=print) -> dict[str, str]:
    """The same jobs on a server nobody hurts: name -> checksum of its output."""
    drill = Drill(folder, example, "sqlite", say=say).start()
    try:
        ids = {spec["name"]: drill.submit(with_output(drill, spec), f"ref-{spec['name']}") for spec in specs}
        drill.wait_all_final(list(ids.values()), 1800)
        return {name: output_checksum(Path(drill.api(f"/v1/jobs/{job_id}")["spec"]["output"]["dir"]))
                for name, job_id in ids.items()}
    finally:
        drill.close()


def with_output(drill: Drill, spec: dict) -> dict:
    return {**spec, "output": {"dir": str(drill.server.data_dir / "outputs" / "admin" / spec["name"])}}


def run_drill(drill: Drill, specs: list[dict], api_kills: int, kill_gap: tuple[float, float],
              disk_hold: float, pg_down: float) -> list[str]:
    """Submit, hurt, follow; returns the job ids. The faults run side by side, each when its job reaches its
    step: a Ray worker of the first job (step 12), the driver of the second (step 22), Postgres (on postgres;
    the third job's step 8), the disk (the last job's step 30); the API kills from the first submit on."""
    stop = threading.Event()
    threads = [threading.Thread(target=faults.api_kills, args=(drill, api_kills, kill_gap, stop), daemon=True)]
    threads[0].start()  # the first kills may land while the jobs are being submitted
    ids = [drill.submit(with_output(drill, spec), f"chaos-{drill.database}-{spec['name']}") for spec in specs]
    drill.say(f"submitted {len(ids)} jobs: {', '.join(ids)}")
    plan = [("ray worker SIGKILL", faults.kill_train_worker, ids[0], 12),
            ("driver SIGKILL", faults.kill_driver, ids[1 % len(ids)], 22)]
    if drill.pg is not None:
        plan.append(("postgres restart", faults.restart_postgres, ids[2 % len(ids)], 8, pg_down))
    if drill.disk is not None:
        plan.append(("run disk full", faults.fill_disk, ids, 30, disk_hold))
    for fault, action, *args in plan:
        threads.append(threading.Thread(target=faults.injected, args=(drill, fault, action, *args), daemon=True))
        threads[-1].start()
    drill.wait_all_final(ids, 1800)
    for thread in threads:  # the kills planned still happen: a restart with every job ended counts too
        thread.join(timeout=900)
    stop.set()
    drill.wait_all_final(ids, 600)
    return ids
