"""Every wait on an upstream has a deadline: a response head that never comes is a 504
after `read_timeout` (with `error` fired on the flow), and the proxy serves others meanwhile."""

from __future__ import annotations

import socket

import pytest

from tests.support.rawhttp import Conn
from tests.support.tcpserver import Server

ERROR_ADDON = """
import os

def error(flow):
    with open(os.environ["ERRORS_FILE"], "a") as f:
        f.write(f"{flow.request.path} {flow.error.msg}\\n")
"""


def silent(head: bytes):
    """An origin that reads a request, answers `/fast` and, for any other path, sends
    `head` (the start of a head, never ended) and nothing more until closed."""
    def serve(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        if data.startswith(b"GET /fast "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast")
        elif head:
            conn.sendall(head)
        while conn.recv(65536):  # hold the connection until the proxy gives up
            pass
    return serve


@pytest.fixture(params=[b"", b"HTTP/1.1 200 OK\r\nX-Partial: yes\r\n"],
                ids=["silent", "head-never-ends"])
def silent_origin(request):
    origin = Server(silent(request.param))
    yield origin
    origin.close()


@pytest.mark.parametrize("with_flow", [False, True], ids=["fast-path", "flow"])
def test_hung_origin_gets_504_after_read_timeout(silent_origin, start_proxy, tmp_path,
                                                 with_flow):
    errors = tmp_path / "errors.txt"
    args = ["-m", f"reverse:http://127.0.0.1:{silent_origin.port}", "--set", "read_timeout=1"]
    if with_flow:
        script = tmp_path / "errors_addon.py"
        script.write_text(ERROR_ADDON)
        args += ["-s", str(script)]
    proxy = start_proxy(*args, env={"ERRORS_FILE": str(errors)})
    with Conn(proxy.port) as hung, Conn(proxy.port) as other:
        hung.send(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        other.send(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        assert other.response().body == b"fast"  # served while the other waits
        response = hung.response()  # the socket timeout (10 s) is well past read_timeout
        assert response.status == 504
        assert b"read_timeout" in response.body
    if with_flow:
        assert errors.read_text().startswith("/hang ")
        assert "read_timeout" in errors.read_text()
