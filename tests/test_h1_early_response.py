"""An origin that answers before it read the request body (413, 405) is heard: the client
gets that response, not a closed connection (RFC 9112 §9.3: a server may answer early)."""

from __future__ import annotations

import socket

import pytest

from tests.support.rawhttp import Conn
from tests.support.tcpserver import Server


def answers_early(status: bytes):
    """An origin that reads a request head, answers `status` at once without reading the
    body, then reads and drops whatever comes until the proxy closes (a lingering close)."""
    def serve(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        body = b"too big\n"
        conn.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (status, len(body), body))
        conn.settimeout(10)
        while conn.recv(65536):
            pass
    return serve


@pytest.mark.parametrize("status", [b"413 Payload Too Large", b"405 Method Not Allowed"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_early_response_reaches_the_client(start_proxy, status, framing):
    origin = Server(answers_early(status))
    try:
        proxy = start_proxy("-m", f"reverse:http://127.0.0.1:{origin.port}")
        with Conn(proxy.port) as conn:
            if framing == "length":
                conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
                          + b"a" * 1000)
            else:
                conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"3e8\r\n" + b"a" * 1000 + b"\r\n")
            response = conn.response("POST")
            assert response.status == int(status[:3])
            assert response.body == b"too big\n"
            assert response.getheader("connection") == "close"
            assert conn.is_closed()  # the unread body must not be taken as a request
    finally:
        origin.close()
