"""bench.api's load client (``RawClient``) reads what an HTTP/1.1 server answers: a sized body
on a kept-alive connection, a chunked body, a body ended by closing the connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from bench.api import HOST, RawClient

ANSWERS = [
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}',
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nno length",
]


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes]]]:
    """Answers each request read with the next of ``ANSWERS``, on one connection until it
    sends the last (then closes it); records the requests."""
    listener = socket.create_server((HOST, 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            buf = b""
            for answer in ANSWERS:
                while b"\r\n\r\n" not in buf:
                    buf += conn.recv(65536)
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                while len(buf) < length:
                    buf += conn.recv(65536)
                seen.append(head + b"\r\n\r\n" + buf[:length])
                buf = buf[length:]
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()
        thread.join(5)


def test_reads_sized_chunked_and_close_delimited_answers(
    server: tuple[int, list[bytes]],
) -> None:
    port, seen = server
    client = RawClient(port, timeout=5)
    try:
        get = RawClient.encode(port, ("GET", "/v1/time", None, {}))
        post = RawClient.encode(port, ("POST", "/v1/orders", b'{"x":1}', {"Authorization": "B t"}))
        assert client.request(get) == (200, b'{"a":1}')
        assert client.request(post) == (201, b"abcde")
        assert client.request(get) == (404, b"no length")
    finally:
        client.close()
    assert seen[0] == f"GET /v1/time HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    assert seen[1].startswith(b"POST /v1/orders HTTP/1.1\r\n")
    assert b"Authorization: B t\r\n" in seen[1]
    assert b"Content-Type: application/json\r\nContent-Length: 7\r\n" in seen[1]
    assert seen[1].endswith(b'\r\n\r\n{"x":1}')
    assert len(seen) == 3  # one connection, kept alive across all three
