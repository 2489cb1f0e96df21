"""`python -m tests.deploy.api_server PORT DATA_DIR DATABASE_URL TOKEN`: the real API app under uvicorn, with a
static one-CPU inventory and no scheduler, for tests that need a live HTTP endpoint (a real Prometheus scrape)."""

from __future__ import annotations

import sys

import uvicorn

from planner import Inventory, cpu_with_memory
from service.server import build_app
from service.settings import Settings


class StaticCluster:
    def inventory(self) -> Inventory:
        return Inventory.single(cpu_with_memory(16 * 2**30), 1)

    def logs(self, ray_job_id: str) -> str:
        return ""


def main(port: int, data_dir: str, database_url: str, token: str) -> None:
    settings = Settings(data_dir=data_dir, database_url=database_url, admin_tokens=[token])
    app = build_app(settings, cluster=StaticCluster())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
