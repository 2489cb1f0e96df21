"""Moving a run's metric records from its spool file to the service, without loss.

The worker appends records to a JSONL spool; the shipper (a thread in the Ray job's driver) posts
new lines in batches and advances its offset only when the service answers 2xx. A service that
is down or restarting is retried with backoff for as long as it takes; a batch whose answer was
lost is sent again, which the service's upsert by (job, step) makes harmless.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from worker.jsonl import Position, position_at, read_records

log = logging.getLogger("effft.shipper")
BATCH_LINES = 200
MAX_BACKOFF_SECONDS = 5.0


class Shipper:
    def __init__(self, spool: Path, url: str, job_id: str, token: str, poll_seconds: float = 0.5):
        self.spool, self.endpoint = Path(spool), f"{url.rstrip('/')}/v1/jobs/{job_id}/records"
        self.token, self.poll = token, poll_seconds
        self.offset_file = self.spool.with_suffix(".shipped")
        offset = int(self.offset_file.read_text()) if self.offset_file.exists() else 0
        self.position = position_at(self.spool, offset)  # where the records not yet stored begin
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="effft-shipper", daemon=True)

    def start(self) -> Shipper:
        self._thread.start()
        return self

    def _pending(self) -> tuple[list[dict], Position]:
        """The records not yet stored (at most a batch), and the position after them."""
        return read_records(self.spool, self.position, BATCH_LINES)

    def _post(self, records: list[dict]) -> bool:
        body = json.dumps({"records": records}).encode()
        request = urllib.request.Request(self.endpoint, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return 200 <= response.status < 300
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500:  # refused for good (bad token, bad record): resending cannot help
                log.error("shipper: the service refused a batch of %d records (%s); skipping it", len(records),
                          error.code)
                return True
            return False  # a 5xx: the service is in trouble; the same batch goes again
        except (urllib.error.URLError, OSError, TimeoutError):
            return False  # down, restarting, or refused: the same batch goes again

    def ship_once(self) -> bool:
        """Send one batch; True when there was nothing left or the batch was stored."""
        records, end = self._pending()
        if end == self.position:
            return True
        if records and not self._post(records):
            return False
        self.position = end
        self.offset_file.write_text(str(end.offset))
        return True

    def _loop(self) -> None:
        backoff = self.poll
        while not self._stop.is_set():
            try:
                sent = self.ship_once()
            except Exception:  # never let the thread die: drain() tries again at the end
                log.exception("shipper pass failed")
                sent = False
            backoff = self.poll if sent else min(backoff * 2, MAX_BACKOFF_SECONDS)
            self._stop.wait(backoff if not sent or self._pending()[1] == self.position else 0)

    def drain(self, timeout_seconds: float) -> bool:
        """Stop the thread, then ship everything left; True when all of it was stored."""
        self._stop.set()
        self._thread.join(timeout=30)
        deadline, backoff = time.monotonic() + timeout_seconds, self.poll
        while time.monotonic() < deadline:
            try:
                sent = self.ship_once()
            except OSError:  # the offset file's disk is full, say: the same batch goes again (stored once)
                sent = False
            if sent:
                if self._pending()[1] == self.position:
                    return True
                continue
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        return False
