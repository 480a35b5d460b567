"""Recording on the fast path (no flows, `fastproxy.io.capture`) records what the flow
path records: the same traffic, once with -w alone and once with -w and a no-op addon
(which makes the proxy build flows), gives the same flow states field by field."""

from __future__ import annotations

import gzip
import http.client
import socket
import time

import pytest

from fastproxy.io.bodies import TRUNCATED_KEY
from tests.support.origin import payload
from tests.support.proxyproc import free_port
from tests.test_recording_e2e import read_flows

NOOP_ADDON = """
def request(flow):
    pass

def response(flow):
    pass
"""


def _chunks():
    yield b"part one, "
    yield b"part two"


def drive(proxy, origin, reverse: bool, dead: int) -> None:
    """The traffic: keep-alive, bodies both ways (chunked too), HEAD, 404, a body over the
    limit, a 502 (unreachable upstream) and a response cut short (upstream closes)."""
    base = "" if reverse else origin.url("")
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    for method, route, body, kwargs in [
        ("GET", "/bytes/1000", None, {}),
        ("POST", "/echo", b"a=1&b=2", {"headers": {"Content-Type": "text/plain"}}),
        ("PUT", "/echo", _chunks(), {"encode_chunked": True,
                                      "headers": {"Transfer-Encoding": "chunked"}}),
        ("GET", "/chunked/5000", None, {}),
        ("GET", "/chunked/9000", None, {}),
        ("GET", "/bytes/10000", None, {}),
        ("GET", "/gzip", None, {"headers": {"X-Twice": "1", "x-twice": "2"}}),
        ("HEAD", "/bytes/10", None, {}),
        ("GET", "/status/404", None, {}),
    ]:
        conn.request(method, base + route, body=body, **kwargs)
        response = conn.getresponse()
        data = response.read()
        assert response.status == (404 if "status" in route else 200)
        if route.startswith(("/bytes", "/chunked")) and method == "GET":
            assert data == payload(int(route.split("/")[2]))  # served whole
    conn.close()
    if not reverse:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.request("GET", f"http://127.0.0.1:{dead}/x")
        assert conn.getresponse().status == 502
        conn.close()


IGNORED = {"id", "timestamp_created", "timestamp_start", "timestamp_end", "timestamp"}


def comparable(value):
    """A flow state without what differs from run to run: ids, times, connections, Date."""
    if isinstance(value, dict):
        return {k: ("ignored" if k in IGNORED and value[k] is not None else comparable(v))
                for k, v in value.items()
                if k not in ("client_conn", "server_conn")}
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and value[0] in (b"Date", b"X-Echo-Headers"):
            return (value[0], "ignored")  # the flow path re-frames the request it sends
        return [comparable(v) for v in value]
    return value


def conn_shape(state, origin_port):
    """What a connection state must agree on between the runs: its keys, the address."""
    return sorted(state), state.get("address")


def record(start_proxy, origin, tmp_path, name, reverse, dead, *, noop):
    path = str(tmp_path / f"{name}.flows")
    args = ["-q", "-w", path, "--set", "save_body_limit=3000"]
    if reverse:
        args += ["--mode", f"reverse:http://127.0.0.1:{origin.port}"]
    if noop:
        script = tmp_path / "noop.py"
        script.write_text(NOOP_ADDON)
        args += ["-s", str(script)]
    proxy = start_proxy(*args)
    drive(proxy, origin, reverse, dead)
    assert proxy.stop() == 0
    flows, error = read_flows(path)
    assert error is None
    return flows


@pytest.mark.parametrize("reverse", [False, True], ids=["regular", "reverse"])
def test_fast_path_recording_equals_flow_path_recording(origin, start_proxy, tmp_path,
                                                       reverse):
    dead = free_port()  # nothing listens there: a 502 with an error
    fast = record(start_proxy, origin, tmp_path, "fast", reverse, dead, noop=False)
    slow = record(start_proxy, origin, tmp_path, "slow", reverse, dead, noop=True)
    assert len(fast) == len(slow) == 9 + (not reverse)
    for mine, theirs in zip(fast, slow):
        a, b = mine.get_state(), theirs.get_state()
        if mine.request.path == "/gzip":  # gzip's header holds the time it was made
            for state in (a, b):
                state["response"]["content"] = gzip.decompress(state["response"]["content"])
        assert comparable(a) == comparable(b), mine.request.path
        assert list(a) == list(b) and list(a["request"]) == list(b["request"])
        for key in ("client_conn", "server_conn"):
            assert conn_shape(a[key], origin.port) == conn_shape(b[key], origin.port)
        for side in ("request", "response"):  # the same times are set (or None)
            for key in ("timestamp_start", "timestamp_end"):
                if a[side] is not None:
                    assert (a[side][key] is None) == (b[side][key] is None), (side, key)
    by_path = {f.request.path: f for f in fast}
    assert by_path["/echo"].request.raw_content in (b"a=1&b=2", b"part one, part two")
    chunked = by_path["/chunked/5000"]  # cut as a gathered body is: exactly
    assert chunked.response.raw_content == payload(3000)
    assert chunked.metadata[TRUNCATED_KEY] == {"response": 5000}
    assert by_path["/bytes/10000"].metadata[TRUNCATED_KEY] == {"response": 10000}
    assert by_path["/bytes/10000"].response.raw_content == payload(3000)
    if reverse:
        assert by_path["/bytes/1000"].request.headers["host"] == f"127.0.0.1:{origin.port}"
    else:
        assert "cannot connect" in by_path["/x"].error.msg and by_path["/x"].response is None
    ts = by_path["/bytes/1000"]
    assert ts.request.timestamp_start <= ts.request.timestamp_end <= \
        ts.response.timestamp_start <= ts.response.timestamp_end


def test_response_cut_short_is_recorded_with_its_error(start_proxy, tmp_path):
    """The upstream closes in the middle of a body: the flow has the response head, no
    content, and the error, as on the flow path."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    results = []
    for noop in (False, True):
        path = str(tmp_path / f"cut{noop}.flows")
        args = ["-q", "-w", path, "--mode", f"reverse:http://127.0.0.1:{port}"]
        if noop:
            script = tmp_path / "noop.py"
            script.write_text(NOOP_ADDON)
            args += ["-s", str(script)]
        proxy = start_proxy(*args)
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        client.sendall(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        upstream, _ = server.accept()
        upstream.recv(65536)
        upstream.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        time.sleep(0.2)
        upstream.close()
        client.settimeout(10)
        while client.recv(65536):
            pass
        client.close()
        assert proxy.stop() == 0
        flows, error = read_flows(path)
        assert error is None and len(flows) == 1
        results.append(flows[0])
    server.close()
    fast, slow = results
    assert comparable(fast.get_state()) == comparable(slow.get_state())
    assert fast.response.status_code == 200 and fast.response.raw_content is None
    assert fast.error is not None and fast.response.timestamp_end is None
