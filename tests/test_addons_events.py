"""The addon events, in order and with their arguments, from the real proxy process."""

from __future__ import annotations

import signal
import subprocess

import httpx
import pytest

from fastproxy.addonmanager import AddonManager
from fastproxy.cli import default_addons
from fastproxy.options import Options
from tests.support.rawhttp import Conn, read_events, recorder_script, wait_for

HTTP_EVENTS = {"requestheaders", "request", "responseheaders", "response", "error",
               "serverconnect", "clientconnect", "clientdisconnect", "next_layer",
               "http_connect", "serverdisconnect"}


def names(events, only=HTTP_EVENTS) -> list[str]:
    return [e[0] for e in events if e[0] in only]


@pytest.fixture
def recorded(tmp_path, start_proxy):
    """(proxy, events file) for a proxy running the recording addon."""
    script, events = recorder_script(tmp_path)
    proxy = start_proxy("-q", "-s", str(script))
    # The fixture's readiness probe was a connection too: start from a clean file.
    assert wait_for(lambda: "clientdisconnect" in names(read_events(events)))
    events.write_text("")
    return proxy, events


def flow_done(events_path, count=1):
    return lambda: sum(e[0] in ("response", "error") for e in read_events(events_path)) >= count


def test_get_event_order_and_arguments(origin, recorded):
    proxy, path = recorded
    response = httpx.get(origin.url("/bytes/10"), proxy=proxy.url, timeout=10)
    assert response.status_code == 200
    assert wait_for(lambda: "clientdisconnect" in names(read_events(path)))
    events = read_events(path)
    assert names(events) == ["clientconnect", "next_layer", "requestheaders", "request",
                             "serverconnect", "responseheaders", "response",
                             "clientdisconnect"]
    by_name = {e[0]: e for e in events}
    _, kind, peername, sockname, connected, started = by_name["clientconnect"]
    assert kind == "Client" and connected is True and started > 0
    assert peername[0] == "127.0.0.1" and isinstance(peername[1], int)
    assert sockname == ["127.0.0.1", proxy.port]
    assert by_name["clientdisconnect"][1] == peername
    assert by_name["clientdisconnect"][2] is False and by_name["clientdisconnect"][3] >= started
    assert by_name["next_layer"][1] == "HttpLayer"
    assert by_name["serverconnect"][1] == ["127.0.0.1", origin.port]
    assert by_name["requestheaders"][1:] == ["GET", "/bytes/10"]
    assert by_name["response"][1:] == [200, 10]


def test_post_event_order_with_body(origin, recorded):
    proxy, path = recorded
    response = httpx.post(origin.url("/echo"), content=b"x" * 5000, proxy=proxy.url, timeout=10)
    assert response.content == b"x" * 5000
    assert wait_for(flow_done(path))
    events = read_events(path)
    assert names(events)[2:7] == ["requestheaders", "request", "serverconnect",
                                  "responseheaders", "response"]
    assert [e for e in events if e[0] == "request"] == [["request", "POST", "/echo", 5000]]
    assert [e for e in events if e[0] == "response"] == [["response", 200, 5000]]


def test_keep_alive_pair_connects_upstream_once(origin, recorded):
    proxy, path = recorded
    with httpx.Client(proxy=proxy.url, timeout=10) as client:
        assert client.get(origin.url("/a")).headers["x-path"] == "/a"
        assert client.get(origin.url("/b")).headers["x-path"] == "/b"
    assert wait_for(lambda: "clientdisconnect" in names(read_events(path)))
    assert names(read_events(path)) == [
        "clientconnect", "next_layer",
        "requestheaders", "request", "serverconnect", "responseheaders", "response",
        "requestheaders", "request", "responseheaders", "response",
        "clientdisconnect"]


def test_connect_tunnel_events_and_inner_flow(origin, recorded):
    proxy, path = recorded
    with Conn(proxy.port) as conn:
        conn.send(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                  % (origin.port, origin.port))
        established = conn.response("CONNECT")
        assert established.status == 200
        conn.send(b"GET /inside HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        inner = conn.response()
        assert inner.body == b"hello" and inner.getheader("X-Path") == "/inside"
    assert wait_for(lambda: "clientdisconnect" in names(read_events(path)))
    events = read_events(path)
    assert names(events) == ["clientconnect", "next_layer", "http_connect", "next_layer",
                             "requestheaders", "request", "serverconnect",
                             "responseheaders", "response", "clientdisconnect"]
    assert ["http_connect", "CONNECT", "127.0.0.1", origin.port] in events
    assert ["request", "GET", "/inside", 0] in events
    assert [e[1] for e in events if e[0] == "next_layer"] == ["HttpLayer", "HttpLayer"]


def test_serverdisconnect_when_the_origin_closes(origin, recorded):
    proxy, path = recorded
    response = httpx.get(origin.url("/close/100"), proxy=proxy.url, timeout=10)
    assert len(response.content) == 100
    assert wait_for(lambda: "serverdisconnect" in names(read_events(path)))
    events = read_events(path)
    assert ["serverdisconnect", ["127.0.0.1", origin.port]] in events
    assert names(events).index("serverdisconnect") > names(events).index("serverconnect")


def test_error_event_for_unreachable_upstream(recorded):
    proxy, path = recorded
    with Conn(proxy.port) as conn:
        conn.send(b"GET http://127.0.0.1:1/x HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        response = conn.response()
        assert response.status == 502
        assert b"127.0.0.1:1" in response.body and b"refused" in response.body.lower()
    assert wait_for(flow_done(path))
    errors = [e for e in read_events(path) if e[0] == "error"]
    assert len(errors) == 1 and "refused" in errors[0][1].lower()


def all_option_names() -> set[str]:
    """The core options and those the built-in addons register."""
    options = Options()
    AddonManager(options).add(*default_addons())
    assert options.keys() > Options().keys() or options.keys() == Options().keys()
    return options.keys()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_lifecycle_start_configure_tick_log_done(tmp_path, start_proxy, sig):
    script, path = recorder_script(tmp_path)
    proxy = start_proxy("-q", "-s", str(script))
    assert wait_for(lambda: sum(e[0] == "tick" for e in read_events(path)) >= 3, 5)
    assert proxy.stop(sig) == 0
    events = read_events(path)
    kinds = [e[0] for e in events]
    assert kinds[0] == "start"  # before any other event
    assert kinds[1] == "configure"
    assert set(events[1][1]) == all_option_names() and events[1][2] == "127.0.0.1"
    ticks = [e[1] for e in events if e[0] == "tick"]
    assert all(0 < b - a < 1.0 for a, b in zip(ticks, ticks[1:]))
    logs = [e for e in events if e[0] == "log"]
    assert any("listening" in e[1] and e[2] == "info" for e in logs)
    assert kinds[-1] == "done" and kinds.count("done") == 1


ASYNC_AND_RAISING = r'''
import asyncio
class Addon:
    def requestheaders(self, flow):
        raise RuntimeError("boom in requestheaders")
    async def request(self, flow):
        await asyncio.sleep(0.05)
        flow.request.headers["X-Async"] = "yes"
    def response(self, flow):
        flow.response.headers["X-Seen"] = "1"
        raise ValueError("boom in response")
addons = [Addon()]
'''


def test_async_hooks_and_raising_addon(origin, tmp_path, start_proxy):
    script = tmp_path / "addon.py"
    script.write_text(ASYNC_AND_RAISING)
    proxy = start_proxy("-q", "-s", str(script))
    for _ in range(2):  # the proxy keeps serving after the errors
        response = httpx.get(origin.url("/echo"), proxy=proxy.url, timeout=10)
        assert response.status_code == 200
        assert '"X-Async": "yes"' in response.headers["x-echo-headers"]
        assert response.headers["x-seen"] == "1"
    proxy.stop()
    err = proxy.stderr
    assert "boom in requestheaders" in err and "boom in response" in err
    assert "Traceback" in err and "RuntimeError" in err


def test_async_hooks_run_concurrently_per_flow(origin, tmp_path, start_proxy):
    """A slow coroutine hook holds its own flow, not the loop."""
    script = tmp_path / "slow.py"
    script.write_text("import asyncio\n"
                      "async def request(flow):\n"
                      "    if flow.request.path == '/slow':\n"
                      "        await asyncio.sleep(1.5)\n")
    proxy = start_proxy("-q", "-s", str(script))
    slow = subprocess.Popen(["curl", "-s", "-x", proxy.url, origin.url("/slow")],
                            stdout=subprocess.PIPE)
    try:
        fast = httpx.get(origin.url("/fast"), proxy=proxy.url, timeout=1.0)
        assert fast.headers["x-path"] == "/fast"
        assert slow.poll() is None  # still waiting on its hook
        assert slow.communicate(timeout=10)[0] == b"hello"
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
