"""A real Prometheus (Debian's package; .ci/run installs it) scrapes a running effft API, and PromQL over
Prometheus's HTTP API returns the job's tokens/s series."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from service.db import make_engine
from service.states import State
from service.store import JobStore
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "prometheus-test-token"
pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="needs Debian's prometheus package (.ci/run installs it)")


def call(url: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.3)


@pytest.fixture
def api(tmp_path):
    port, database = free_port(), f"sqlite:///{tmp_path / 'effft.db'}"
    process = subprocess.Popen([sys.executable, "-m", "tests.deploy.api_server", str(port), str(tmp_path), database,
                                TOKEN], cwd=ROOT)
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz")
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "database": database, "data": tmp_path}
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def prometheus(tmp_path, api):
    """Prometheus scraping the API every second, with the stack's job name."""
    port = free_port()
    (tmp_path / "token").write_text(TOKEN)  # per-job series need a token, as deploy/prometheus/prometheus.yml has
    config = {"global": {"scrape_interval": "1s"},
              "scrape_configs": [{"job_name": "effft", "static_configs": [{"targets": [f"127.0.0.1:{api['port']}"]}],
                                  "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "token")}}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/-/ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def running_job_with_metrics(api) -> str:
    """A job submitted over HTTP, moved to running as the scheduler would, with two steps posted by its worker."""
    (api["data"] / "datasets").mkdir()  # the data dir's own files are the server's: data goes in a folder
    (api["data"] / "datasets" / "train.jsonl").write_text('{"text": "hello"}\n')
    job = call(f"{api['url']}/v1/jobs", {"name": "scraped", "model": "org/model",
                                        "dataset": str(api["data"] / "datasets" / "train.jsonl"),
                                        "training": {"max_steps": 2}}, TOKEN)
    store = JobStore(make_engine(api["database"]))
    assert store.claim_next_queued().id == job["id"]
    assert store.transition(job["id"], State.PLANNING, State.RUNNING, ray_job_id="r", gpus=1, gpu_type="cpu")
    worker_token = store.issue_worker_token(job["id"])
    steps = [{"kind": "step", "step": n, "total_steps": 2, "loss": 2.0 / n, "tokens_per_second": 1000.0 * n,
              "mfu": 0.3, "memory_peak_bytes": 2**30, "memory_predicted_bytes": 2**30} for n in (1, 2)]
    call(f"{api['url']}/v1/jobs/{job['id']}/records", {"records": steps}, worker_token)
    return job["id"]


def test_prometheus_scrapes_the_api_and_promql_returns_the_jobs_tokens_per_second(api, prometheus):
    job_id = running_job_with_metrics(api)
    query = urllib.parse.urlencode({"query": f'effft_job_tokens_per_second{{job_id="{job_id}"}}'})
    deadline = time.monotonic() + 60
    while not (result := call(f"{prometheus}/api/v1/query?{query}")["data"]["result"]):
        assert time.monotonic() < deadline, "Prometheus never returned the series"
        time.sleep(1)
    series = result[0]
    assert series["metric"]["job"] == "effft" and series["metric"]["name"] == "scraped"
    assert float(series["value"][1]) == 2000.0  # the latest step's tokens/s
    targets = call(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"]
