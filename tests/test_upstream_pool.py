"""Upstream keep-alive pooling: a pooled connection the origin closed as the request
went out is retried on a fresh one, but only for idempotent requests without a body."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest


class ForgetfulOrigin:
    """Answers the first request on each connection (keep-alive), then closes the
    connection on the next request without answering: an origin whose keep-alive
    timeout fires just as the proxy reuses the connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.served: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = self._read_head(conn)
            if request is None:
                return
            self.served.append(request.split(b" ", 1)[0])
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self._read_head(conn)  # the second request: closed without an answer

    @staticmethod
    def _read_head(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def forgetful():
    origin = ForgetfulOrigin()
    yield origin
    origin.close()


@pytest.mark.parametrize("addon", [False, True], ids=["fast-path", "flow-path"])
def test_stale_pooled_connection_is_retried_for_get(forgetful, start_proxy, tmp_path, addon):
    script = tmp_path / "noop.py"
    script.write_text("def response(flow):\n    pass\n")
    extra = ["-s", str(script)] if addon else []
    proxy = start_proxy("-q", *extra, "--mode", f"reverse:http://127.0.0.1:{forgetful.port}")
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        first = client.get("/one")
        second = client.get("/two")
    assert (first.status_code, first.text) == (200, "ok")
    assert (second.status_code, second.text) == (200, "ok")
    assert forgetful.connections == 2  # the pooled one, then the retry's fresh one
    assert forgetful.served == [b"GET", b"GET"]


def test_stale_pooled_connection_is_not_retried_for_post(forgetful, start_proxy):
    proxy = start_proxy("-q", "--mode", f"reverse:http://127.0.0.1:{forgetful.port}")
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        assert client.get("/one").status_code == 200
        refused = client.post("/two", content=b"payload")
    assert refused.status_code == 502
    assert "closed the connection before responding" in refused.text
    assert forgetful.connections == 1
