"""A load generator's HTTP/1.1 client: one keep-alive connection per simulated client, responses parsed by
httptools (the C parser uvicorn uses), nothing else.

Why not httpx: on this 2-core machine the clients share the CPU with the API they measure. httpx costs about
2.7 ms of CPU per request, more than the API's own work; 50 httpx clients in one event loop measured their own
queueing (p99 110-150 ms against a server that answers a constant in 0.25 ms). This costs about 0.3 ms, as
load generators written in C (wrk, h2load) would, so the latency it reports is the API's.
"""

from __future__ import annotations

import asyncio

import httptools


class DroppedConnection(ConnectionError):
    """The server closed the connection (or sent bytes that are not HTTP) before the answer was whole."""


class _Exchange(asyncio.Protocol):
    """One connection: at most one request in flight, its answer handed to `waiter` when complete."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.body: list[bytes] = []
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(DroppedConnection(f"unparsable answer: {error}"))
            self.transport.close()

    def on_body(self, body: bytes) -> None:  # httptools callback
        self.body.append(body)

    def on_message_complete(self) -> None:  # httptools callback
        answer = (self.parser.get_status_code(), b"".join(self.body))
        self.body = []
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def connection_lost(self, error) -> None:
        self.lost = True
        self._fail(DroppedConnection(f"closed by the server: {error or 'EOF'}"))

    def _fail(self, error: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class Connection:
    """Requests to one host over one connection, opened again after the server closes it."""

    def __init__(self, host: str, port: int, headers: dict[str, str]):
        self.host, self.port = host, port
        self.fixed = "".join(f"{name}: {value}\r\n" for name, value in {"Host": f"{host}:{port}", **headers}.items())
        self.exchange: _Exchange | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body); DroppedConnection when the connection went away first (the caller decides whether
        resending is safe)."""
        if self.exchange is None or self.exchange.lost:
            _, self.exchange = await asyncio.get_running_loop().create_connection(_Exchange, self.host, self.port)
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = f"{method} {path} HTTP/1.1\r\n{self.fixed}{extra}Content-Length: {len(body)}\r\n\r\n"
        self.exchange.waiter = asyncio.get_running_loop().create_future()
        self.exchange.transport.write(head.encode("latin-1") + body)
        return await self.exchange.waiter

    def close(self) -> None:
        if self.exchange is not None and not self.exchange.lost:
            self.exchange.transport.close()
