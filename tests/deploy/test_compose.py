"""The compose stack and its Dockerfiles, checked without a Docker engine: parse, paths, pins, healthchecks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILES = sorted((ROOT / "deploy").glob("*.Dockerfile"))
PINNED_TAG = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")  # a tag with a version number in it


def test_the_stack_has_every_service_the_design_names():
    assert set(SERVICES) == {"postgres", "ray-head", "ray-worker", "api", "prometheus", "grafana"}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_and_a_pinned_image(name):
    service = SERVICES[name]
    assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert PINNED_TAG.match(service["image"]), f"{name}: image {service['image']!r} is not pinned to a version"


def test_depends_on_waits_for_healthy_services_that_exist():
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
            assert "healthcheck" in SERVICES[dependency]


def test_every_path_the_stack_references_exists():
    for name, service in SERVICES.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"


def test_gpu_workers_reserve_nvidia_gpus_and_share_the_data_volume_with_the_api():
    worker = SERVICES["ray-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert any(v.startswith("effft-data:/data") for v in worker["volumes"])
    assert any(v.startswith("effft-data:/data") for v in SERVICES["api"]["volumes"])


def test_the_api_points_at_postgres_and_the_ray_head():
    env = SERVICES["api"]["environment"]
    assert env["RAY_ADDRESS"].startswith("ray-head:")
    database = env["EFFFT_DATABASE_URL"]
    assert database.startswith("postgresql+psycopg://") and "@postgres:5432/" in database
    assert env["EFFFT_PUBLIC_URL"] == "http://api:8321"


def from_lines(dockerfile: Path) -> list[str]:
    return [line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("FROM ")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pin_their_base_images_and_packages(dockerfile):
    for image in from_lines(dockerfile):
        assert PINNED_TAG.match(image), f"{dockerfile.name}: base image {image} is not pinned"
    text = dockerfile.read_text()
    assert re.search(r'"torch==[\d.]+"', text), "torch must be pinned"
    assert "-c deploy/constraints.txt" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_everything_a_dockerfile_copies_exists(dockerfile):
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} is missing"


def test_constraints_pin_every_package():
    lines = [line for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines and all(re.match(r"^[\w.\-\[\],]+==[\w.]+$", line) for line in lines), lines


def test_prometheus_scrapes_the_api_port_the_stack_exposes_with_the_metrics_token():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["effft"]["static_configs"][0]["targets"] == ["api:8321"]
    assert "8321:8321" in SERVICES["api"]["ports"]
    assert {"ray-head", "ray-workers"} <= set(jobs)
    # the token file Prometheus reads is the compose config made from the same variable the API trusts
    token_file = jobs["effft"]["authorization"]["credentials_file"]
    mounted = {c["target"]: c["source"] for c in SERVICES["prometheus"]["configs"]}
    assert COMPOSE["configs"][mounted[token_file]] == {"environment": "EFFFT_METRICS_TOKEN"}
    assert "${EFFFT_METRICS_TOKEN:" in SERVICES["api"]["environment"]["EFFFT_METRICS_TOKENS"]
    assert "EFFFT_METRICS_TOKEN=" in (ROOT / ".env.example").read_text()


def test_only_services_with_their_own_login_listen_beyond_loopback():
    """Ray's job API runs code and Prometheus shows every job's series, with no auth: neither is published on the
    host's network. The API (bearer tokens) and Grafana (its admin login) are."""
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert name in ("api", "grafana") or port.startswith("127.0.0.1:"), f"{name} publishes {port}"
    assert "postgres" not in {name for name, service in SERVICES.items() if service.get("ports")}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with Debian's prometheus package")
def test_promtool_accepts_the_prometheus_config(tmp_path):
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:  # promtool checks that the token file exists: give it one here
        if "authorization" in job:
            (tmp_path / "token").write_text("t")
            job["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_constraints_satisfy_the_requirements_they_pin():
    """A constraint outside pyproject.toml's range makes pip's resolve in both images fail (transformers was pinned
    at 5.24.0 after pyproject.toml came to require >= 5.25)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = [Requirement(text) for text in project["dependencies"]]
    required += [Requirement(text) for extra in project["optional-dependencies"].values() for text in extra]
    ranges = {}
    for requirement in required:
        ranges.setdefault(canonicalize_name(requirement.name), []).append(requirement.specifier)
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pinned = Requirement(line)
            version = next(iter(pinned.specifier)).version
            for specifier in ranges.get(canonicalize_name(pinned.name), []):
                assert specifier.contains(version), f"constraints.txt: {line} is outside pyproject.toml's {specifier}"
