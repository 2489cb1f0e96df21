"""The Postgres pool without a ping per checkout: a pooled connection the server has ended (a restart, or
pg_terminate_backend, as here) is replaced before a request uses it, so no request sees the dead one."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from service.db import make_engine
from tests.service.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def terminate(pid: int) -> None:
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.connect() as connection:
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    finally:
        admin.dispose()


@pytest.mark.parametrize("kind", ["connect", "begin"])
def test_a_pooled_connection_the_server_ended_is_replaced_before_use(kind):
    engine = make_engine(POSTGRES_URL)
    try:
        first = backend_pid(engine)
        assert backend_pid(engine) == first  # pooled: the same backend serves the next checkout
        terminate(first)
        time.sleep(0.2)  # the server's FATAL notice and close reach the pooled socket
        with getattr(engine, kind)() as connection:  # no error: the dead connection never reaches the caller
            replaced = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert replaced != first
        assert engine.pool.checkedout() == 0
    finally:
        engine.dispose()
