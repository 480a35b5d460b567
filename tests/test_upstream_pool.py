"""Upstream keep-alive pooling: a pooled connection the origin closed as the request
went out is retried on a fresh one, but only for idempotent requests without a body."""

from __future__ import annotations

import httpx
import pytest

from tests.support.rawhttp import ScriptedOrigin

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def forgetful():
    """Answers requests with keep-alive, except the second one, which it drops by closing
    the connection without an answer: an origin whose keep-alive timeout fires just as
    the proxy reuses the connection."""
    count = [0]

    def answer(request_line, headers, body):
        count[0] += 1
        return (b"", True) if count[0] == 2 else (OK, False)

    origin = ScriptedOrigin(answer)
    yield origin
    origin.stop()


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
    assert [line for line, _, _ in forgetful.requests] == [
        b"GET /one HTTP/1.1", b"GET /two HTTP/1.1", b"GET /two HTTP/1.1"]


def test_stale_pooled_connection_is_not_retried_for_post(forgetful, start_proxy):
    proxy = start_proxy("-q", "--mode", f"reverse:http://127.0.0.1:{forgetful.port}")
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        assert client.get("/one").status_code == 200
        refused = client.post("/two", content=b"payload")
    assert refused.status_code == 502
    assert "closed the connection before responding" in refused.text
    assert forgetful.connections == 1
