"""The load generator's HTTP client (bench/lean_http.py) against a raw server: whole answers (sized or chunked)
on one kept-alive connection, a connection the server drops is an error the caller sees, and the next request
opens a new connection."""

from __future__ import annotations

import asyncio

import pytest

from bench.lean_http import Connection, DroppedConnection

SIZED = b"HTTP/1.1 201 Created\r\nContent-Length: 11\r\nContent-Type: application/json\r\n\r\n{\"id\":\"j1\"}"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


async def serve(connections: list[list[bytes]]):
    """A server that reads each request's head and answers from a script: a list of answers per connection, and
    None to close the connection without answering."""
    scripts = iter(connections)

    async def handle(reader, writer):
        for answer in next(scripts):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            await reader.readexactly(length)
            if answer is None:
                break
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_answers_on_one_connection_then_a_drop_then_a_new_connection():
    async def scenario():
        server, port = await serve([[SIZED, CHUNKED, None], [SIZED]])
        connection = Connection("127.0.0.1", port, {"Authorization": "Bearer t"})
        assert await connection.request("POST", "/v1/jobs", b"name: x\n") == (201, b'{"id":"j1"}')
        assert await connection.request("GET", "/v1/jobs/j1") == (200, b"hello world")
        with pytest.raises(DroppedConnection):
            await connection.request("GET", "/v1/jobs/j1")
        assert await connection.request("GET", "/v1/jobs/j1") == (201, b'{"id":"j1"}')  # a new connection
        connection.close()
        server.close()
        await server.wait_closed()

    asyncio.run(asyncio.wait_for(scenario(), 20))
