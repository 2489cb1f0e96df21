"""The chaos drill, short (bench/chaos): 2 jobs through the real server while the API is SIGKILLed 3 times, a Ray
Train worker and a driver are SIGKILLed, (on Postgres) the database is restarted and the run disk is filled.
Nothing may be lost, run twice or stored twice, and every job must end with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos.env import PG_BIN, can_mount_tmpfs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about 10 minutes per database on this 2-core machine: `make test-all`
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_short_drill_loses_nothing_and_resumed_jobs_end_with_equal_weights(tmp_path, database):
    if database == "postgres" and not (PG_BIN and os.getuid() == 0):
        pytest.skip("the drill's own Postgres needs the PostgreSQL binaries and root (initdb runs as postgres)")
    done = subprocess.run([sys.executable, "-m", "bench.chaos", "--db", database, "--jobs", "2", "--steps", "40",
                           "--api-kills", "3", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=2400)
    assert (tmp_path / f"chaos_{database}.json").exists(), done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads((tmp_path / f"chaos_{database}.json").read_text())
    report = (tmp_path / f"chaos_{database}.txt").read_text()
    assert (result["lost"], result["duplicated"], result["steps_twice"]) == (0, 0, 0), report
    assert result["failed"] == [] and result["steps_missing"] == [], report
    assert result["weights_equal"] == "2/2" and result["resumed_equal"] == "2/2", report
    recovered = {f["fault"] for f in result["faults"] if f["recovery_s"] is not None}
    expected = {"api SIGKILL", "ray worker SIGKILL", "driver SIGKILL"}
    expected |= {"run disk full"} if can_mount_tmpfs() else set()
    expected |= {"postgres restart"} if database == "postgres" else set()
    assert expected <= recovered, report
    assert done.returncode == 0, report
