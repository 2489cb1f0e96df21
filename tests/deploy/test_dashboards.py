"""The provisioned Grafana dashboards and provisioning files (deploy/grafana): well-formed, and every metric their
PromQL names is one the service really exposes on /metrics, so renaming a metric on either side fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from service.states import State
from tests.planner.test_decisions import plan
from tests.service.conftest import ADMIN_TOKEN, ALICE, TOKENS, FakeCluster, auth, job_spec

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
MOUNTED_AT = "/var/lib/grafana/dashboards"  # where the dashboard provider reads them (the compose mount)
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
METRIC = re.compile(r"(?<![\w:])effft_[A-Za-z0-9_:]*")
PER_JOB = re.compile(r"(?<![\w:])effft_job_[A-Za-z0-9_]*(\{[^}]*\})?")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def all_panels(panels: list[dict]) -> list[dict]:
    """Panels, with those nested in collapsed rows."""
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(all_panels(panel.get("panels", [])))
    return found


def variable_query(variable: dict) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def expressions(dashboard: dict) -> list[str]:
    """Every PromQL expression: panel targets, and template variable queries."""
    exprs = [t["expr"] for p in all_panels(dashboard["panels"]) for t in p.get("targets", [])]
    exprs += [variable_query(v) for v in dashboard.get("templating", {}).get("list", []) if v["type"] == "query"]
    return exprs


def dashboard_metrics() -> dict[str, set[str]]:
    """Metric name -> the dashboards that use it."""
    used: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        for expr in expressions(load(path)):
            for name in METRIC.findall(expr):
                used.setdefault(name, set()).add(path.name)
    return used


def test_the_three_dashboards_are_there():
    assert [p.name for p in DASHBOARDS] == ["fleet.json", "job.json", "planner.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_a_dashboard_is_well_formed(path):
    dashboard = load(path)
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] == 39
    panels = all_panels(dashboard["panels"])
    assert panels
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), ids
    for panel in panels:
        assert panel["title"] and panel["type"], panel["id"]
        assert set(panel["gridPos"]) >= {"x", "y", "w", "h"}, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_dashboard_uids_are_unique():
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)), uids


def test_the_job_dashboard_picks_a_job_and_filters_every_per_job_query_on_it():
    dashboard = load(GRAFANA / "dashboards" / "job.json")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    job_id = variables["job_id"]
    assert job_id["type"] == "query" and job_id["datasource"] == DATASOURCE
    assert variable_query(job_id) == "label_values(effft_job_step, job_id)"
    targets = [t["expr"] for p in all_panels(dashboard["panels"]) for t in p.get("targets", [])]
    per_job = [m for expr in targets for m in PER_JOB.finditer(expr)]
    assert per_job
    for match in per_job:
        assert match.group(1) and 'job_id="$job_id"' in match.group(1), match.group(0)


def test_the_datasource_is_the_default_prometheus_the_dashboards_name():
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE["uid"], DATASOURCE["type"])
    assert source["url"] == "http://prometheus:9090" and source["isDefault"] is True


def test_the_dashboard_provider_loads_from_where_the_dashboards_are_mounted():
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "effft.yml").read_text())
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == MOUNTED_AT


# -- the dashboards' metrics against the service's real exposition ---------------------------------------------


@pytest.fixture(scope="module")
def exposition(tmp_path_factory) -> str:
    """GET /metrics after a running job reported steps and a finished one its summary (a memory check)."""
    from fastapi.testclient import TestClient

    import service.server as server
    from service.api.deps import get_store
    from service.db import make_engine
    from service.migrate import upgrade
    from service.settings import Settings
    from service.store import JobStore

    tmp = tmp_path_factory.mktemp("service")
    url = f"sqlite:///{tmp / 'effft.db'}"
    upgrade(url)
    for folder in ("data", "datasets", "outputs"):
        (tmp / folder).mkdir()
    settings = Settings(data_dir=tmp / "data", database_url=url, tokens=dict(TOKENS), admin_tokens=[ADMIN_TOKEN],
                        dataset_roots=[tmp / "datasets"], output_roots=[tmp / "outputs"],
                        allow_trust_remote_code=False)
    store = JobStore(make_engine(url))
    app = server.build_app(settings, cluster=FakeCluster())
    app.dependency_overrides[get_store] = lambda: store  # the store this test writes the job's rows through
    try:
        with TestClient(app) as client:
            spec = job_spec("org/model", tmp / "datasets" / "train.jsonl")
            response = client.post("/v1/jobs", content=json.dumps(spec), headers=ALICE)
            assert response.status_code == 201, response.text
            job_id = response.json()["id"]
            assert store.claim_next_queued().id == job_id
            assert store.transition(job_id, State.PLANNING, State.RUNNING, ray_job_id="r", gpus=1,
                                    gpu_type="cpu")
            store.set_plan(job_id, plan("7B", "A10G", seq_len=1024).to_dict())
            token = store.issue_worker_token(job_id)
            step = {"kind": "step", "step": 1, "total_steps": 4, "loss": 1.5, "tokens_per_second": 100.0,
                    "tokens_per_second_predicted": 90.0,
                    "eta_seconds": 30.0, "mfu": 0.2, "memory_peak_bytes": 3 * 2**30,
                    "memory_predicted_bytes": 4 * 2**30}
            summary = {"kind": "summary", "memory_peak_bytes": 3 * 2**30, "memory_predicted_bytes": 4 * 2**30,
                       "predicted_terms": {}, "measured_terms": {}}
            first = plan("7B", "A10G", seq_len=1024)
            evidence = {"kind": "oom", "step": 1, "phase": "backward", "in_use_bytes": 20 * 2**30,
                        "requested_bytes": 2**30, "limit_bytes": 21 * 2**30, "peak_bytes": 20 * 2**30,
                        "predicted_bytes": 4 * 2**30, "device": "cuda"}
            replan = {"kind": "replan", "attempt": 1, "evidence": evidence, "failed_plan": first.to_dict(),
                      "plan": first.to_dict(), "text": "attempt 2: out of memory at step 1"}
            posted = client.post(f"/v1/jobs/{job_id}/records", json={"records": [replan, step, summary]},
                                 headers=auth(token))
            assert posted.status_code == 200, posted.text
            response = client.get("/metrics", headers=auth(ADMIN_TOKEN))  # every job's series
            assert response.status_code == 200
            return response.text
    finally:
        store.engine.dispose()
        app.state.store.engine.dispose()


def exposed_names(text: str) -> set[str]:
    """Sample names (histograms as their _bucket/_sum/_count series), from the lines that carry a value."""
    return {re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0)
            for line in text.splitlines() if line and not line.startswith("#")}


def test_the_exposition_has_samples_of_every_family(exposition):
    names = exposed_names(exposition)
    assert {"effft_jobs", "effft_job_step", "effft_job_memory_predicted_bytes", "effft_gpu_memory_bytes",
            "effft_planner_memory_error_ratio_count"} <= names
    # the summary made a memory check, labelled with the plan's model and GPU
    assert 'effft_planner_memory_error_ratio_count{gpu="A10G",model="meta-llama/Llama-2-7b-hf"} 1.0' in exposition


def test_every_metric_a_dashboard_queries_is_exposed_by_the_service(exposition):
    used = dashboard_metrics()
    assert len(used) >= 8, sorted(used)
    missing = {name: sorted(files) for name, files in used.items() if name not in exposed_names(exposition)}
    assert not missing, f"dashboards query metrics the service does not expose: {missing}"


def test_every_metric_family_the_service_exposes_is_on_a_dashboard(exposition):
    families = set(re.findall(r"^# TYPE (effft_\w+) ", exposition, flags=re.MULTILINE))
    used = set(dashboard_metrics())
    histogram_series = {n for n in used for suffix in ("_bucket", "_sum", "_count") if n.endswith(suffix)}
    used_families = used | {n.rsplit("_", 1)[0] for n in histogram_series}
    assert families and families <= used_families, sorted(families - used_families)
