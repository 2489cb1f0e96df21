"""The CLI's client against a server that drops connections: what is safe to send again is sent again."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service import client as client_module
from service.client import Client, ClientError


class DroppingServer(ThreadingHTTPServer):
    """Answers every request with a job, except the first `drops` requests: read, then the connection closed."""

    def __init__(self, drops: int):
        super().__init__(("127.0.0.1", 0), Handler)
        self.drops, self.requests = drops, []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path, self.headers.get("Idempotency-Key")))
        if len(self.server.requests) <= self.server.drops:
            self.close_connection = True  # nothing written: the client sees the connection end unanswered
            return
        body = json.dumps({"id": "j0123456789abcdef", "state": "queued"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer


@pytest.fixture
def dropping(monkeypatch):
    monkeypatch.setattr(client_module, "RETRY_PAUSE_SECONDS", 0.01)
    servers = []

    def start(drops: int) -> tuple[DroppingServer, Client]:
        server = DroppingServer(drops)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, Client(f"http://127.0.0.1:{server.server_address[1]}", "token")

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_get_whose_connection_dropped_is_sent_again(dropping):
    server, client = dropping(drops=2)
    assert client.job("j0123456789abcdef")["id"] == "j0123456789abcdef"
    assert [method for method, _, _ in server.requests] == ["GET"] * 3


def test_a_submit_is_sent_again_with_the_same_idempotency_key(dropping):
    server, client = dropping(drops=1)
    client.submit("name: x\n")
    keys = [key for _, _, key in server.requests]
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]  # one key made for the submit, kept on the resend


def test_a_request_that_is_not_safe_to_repeat_is_sent_once(dropping):
    server, client = dropping(drops=1)
    with pytest.raises(ClientError, match="cannot reach the server"):
        client.cancel("j0123456789abcdef")
    assert len(server.requests) == 1


def test_a_server_that_keeps_dropping_is_an_error_after_a_few_tries(dropping):
    server, client = dropping(drops=100)
    with pytest.raises(ClientError, match="cannot reach the server"):
        client.job("j0123456789abcdef")
    assert len(server.requests) == client_module.SEND_TRIES
