"""What an addon leaves in a flow is checked before it is sent: a header field with CR/LF
or a status out of range is a 502 with `error`, never a header injected into the next hop."""

from __future__ import annotations

import pytest

from tests.support.rawhttp import Conn

ADDON = """
def request(flow):
    if flow.request.path == "/inject-request":
        flow.request.headers.fields.append((b"X-Evil", b"a\\r\\nInjected: yes"))

def response(flow):
    path = flow.request.path
    if path == "/inject-response":
        flow.response.headers.fields.append((b"X-Evil", b"a\\r\\n\\r\\nHTTP/1.1 200 OK"))
    elif path == "/bad-name":
        flow.response.headers.fields.append((b"X Evil", b"1"))
    elif path == "/bad-status":
        flow.response.status_code = 42
"""


@pytest.mark.parametrize("path", ["/inject-request", "/inject-response", "/bad-name",
                                  "/bad-status"])
def test_unsendable_flow_heads_are_a_502(origin, start_proxy, tmp_path, path):
    script = tmp_path / "addon.py"
    script.write_text(ADDON)
    proxy = start_proxy("-m", f"reverse:http://127.0.0.1:{origin.port}", "-s", str(script))
    with Conn(proxy.port) as conn:
        conn.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = conn.response()
        assert response.status == 502
        assert b"invalid" in response.body
        assert response.getheader("injected") is None
    with Conn(proxy.port) as conn:  # still serving
        conn.send(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().status == 200
    if path == "/inject-request":  # refused before anything went upstream
        assert [p for _, p, _ in origin.requests] == ["/fine"]
