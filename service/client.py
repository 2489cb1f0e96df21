"""The CLI's HTTP client: where the server is (EFFFT_URL / EFFFT_TOKEN, else the local server's files)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from service.settings import LocalSettings
from service.states import TERMINAL

SEND_TRIES, RETRY_PAUSE_SECONDS = 4, 0.25  # pauses 0.25, 0.5, 1 s: about a server's restart under a supervisor


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
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ClientError(response.status_code, detail)
        return response.json() if "json" in response.headers.get("content-type", "") else response.text

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The response; a request that is safe to send again (a GET, a submit with its Idempotency-Key) is sent
        again when the connection drops, as a server restarting or closing an idle connection drops it."""
        replayable = method == "GET" or "Idempotency-Key" in kwargs.get("headers", {})
        tries = SEND_TRIES if replayable else 1
        for attempt in range(tries):
            try:
                return self.http.request(method, path, **kwargs)
            except httpx.TimeoutException as error:  # a server that does not answer in time would not on a resend
                failure = error
                break
            except httpx.TransportError as error:
                failure = error
                if attempt + 1 < tries:
                    time.sleep(RETRY_PAUSE_SECONDS * 2**attempt)
            except httpx.HTTPError as error:
                failure = error
                break
        raise ClientError(0, f"cannot reach the server at {self.http.base_url}: {failure}") from None

    def submit(self, body: str, idempotency_key: str | None = None) -> dict:
        """The job made; its Idempotency-Key (a new one unless given) makes a resend after a dropped answer safe."""
        headers = {"Content-Type": "application/yaml", "Idempotency-Key": idempotency_key or uuid.uuid4().hex}
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
