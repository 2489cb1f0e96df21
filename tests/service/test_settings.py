"""Settings come from EFFFT_* variables through pydantic-settings alone: the server and the CLI read the same."""

from __future__ import annotations

from service.client import data_dir
from service.settings import Settings


def test_the_cli_and_the_server_find_the_same_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EFFFT_DATA_DIR", "~/effft-data")  # quoted in a compose file: no shell expanded it
    assert data_dir() == Settings().data_dir == tmp_path / "effft-data"
