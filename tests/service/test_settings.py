"""Settings come from EFFFT_* variables through pydantic-settings alone: the server and the CLI read the same."""

from __future__ import annotations

from service.client import data_dir
from service.settings import Settings


def test_the_cli_and_the_server_find_the_same_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EFFFT_DATA_DIR", "~/effft-data")  # quoted in a compose file: no shell expanded it
    assert data_dir() == Settings().data_dir == tmp_path / "effft-data"


def test_planning_processes_is_read_under_its_former_name_too(monkeypatch):
    monkeypatch.setenv("EFFFT_PLANNING_THREADS", "3")  # a deployment set up before planning had processes
    assert Settings().planning_processes == 3
    monkeypatch.setenv("EFFFT_PLANNING_PROCESSES", "4")
    assert Settings().planning_processes == 4  # the current name wins


def test_planning_limits_and_checkpoints_to_keep_come_from_the_environment(monkeypatch):
    assert (Settings().planning_max_dataset_bytes, Settings().planning_max_rows, Settings().checkpoints_to_keep) == \
        (2_000_000_000, 1_000_000, 2)
    monkeypatch.setenv("EFFFT_PLANNING_MAX_DATASET_BYTES", "1000")
    monkeypatch.setenv("EFFFT_PLANNING_MAX_ROWS", "10")
    monkeypatch.setenv("EFFFT_CHECKPOINTS_TO_KEEP", "5")
    assert (Settings().planning_max_dataset_bytes, Settings().planning_max_rows, Settings().checkpoints_to_keep) == \
        (1000, 10, 5)
