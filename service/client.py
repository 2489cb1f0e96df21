"""The CLI's HTTP client: where the server is (EFFFT_URL / EFFFT_TOKEN, else the local server's files)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from service.settings import LocalSettings
from service.states import TERMINAL


class ClientError(Exception):
    def __init__(self, status: int, detail):
        self.status, self.detail = status, detail
        super().__init__(detail if isinstance(detail, str) else json.dumps(detail, indent=2))


def data_dir() -> Path:
    return LocalSettings().data_dir


def server_and_token() -> tuple[str, str]:
    """EFFFT_URL and EFFFT_TOKEN, else the URL and admin token the local server wrote in its data dir."""
    url, token = os.environ.get("EFFFT_URL"), os.environ.get("EFFFT_TOKEN")
    folder = data_dir()
    if url is None and (folder / "server.json").exists():
        url = json.loads((folder / "server.json").read_text())["url"]
    if token is None and (folder / "admin-token").exists():
        token = (folder / "admin-token").read_text().strip()
    if url is None or token is None:
        raise ClientError(0, f"no server found: set EFFFT_URL and EFFFT_TOKEN, or start one with `effft server` "
                             f"(data dir {folder})")
    return url, token


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30):
        if url is None or token is None:
            url, token = server_and_token()
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs):
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ClientError(0, f"cannot reach the server at {self.http.base_url}: {error}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ClientError(response.status_code, detail)
        return response.json() if "json" in response.headers.get("content-type", "") else response.text

    def submit(self, body: str, idempotency_key: str | None = None) -> dict:
        headers = {"Content-Type": "application/yaml"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self._call("POST", "/v1/jobs", content=body.encode(), headers=headers)

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def jobs(self, state: str | None = None, limit: int = 50, cursor: str | None = None) -> dict:
        params = {k: v for k, v in {"state": state, "limit": limit, "cursor": cursor}.items() if v is not None}
        return self._call("GET", "/v1/jobs", params=params)

    def plan(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}/plan")

    def events(self, job_id: str) -> list[dict]:
        return self._call("GET", f"/v1/jobs/{job_id}/events")["items"]

    def metrics(self, job_id: str, since_step: int = 0) -> list[dict]:
        return self._call("GET", f"/v1/jobs/{job_id}/metrics", params={"since_step": since_step})["items"]

    def logs(self, job_id: str) -> str:
        return self._call("GET", f"/v1/jobs/{job_id}/logs")

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def inventory(self) -> dict:
        return self._call("GET", "/v1/inventory")

    def calibration(self) -> dict:
        return self._call("GET", "/v1/calibration")

    def wait_planned(self, job_id: str, poll: float = 0.5) -> dict:
        while True:
            job = self.job(job_id)
            if job["planned"] or job["state"] in TERMINAL:
                return job
            time.sleep(poll)

    def records(self, job_id: str, poll: float = 1.0) -> Iterator[dict]:
        """The job's step records as they are stored, then its summary once it has ended."""
        since = 0
        while True:
            job = self.job(job_id)
            for record in self.metrics(job_id, since):
                since = record["step"]
                yield {**record, "kind": "step"}
            if job["state"] in TERMINAL:
                for record in self.metrics(job_id, since):
                    yield {**record, "kind": "step"}
                if job["summary"]:
                    yield job["summary"]
                return
            time.sleep(poll)
