"""The HTTP/1 proxy end to end: real proxy process, real origin, real clients."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import threading

import httpx
import pytest

from tests.support.origin import Origin, payload
from tests.support.proxyproc import ProxyProcess
from tests.support.rawhttp import Conn, ScriptedOrigin, read_events, wait_for

MiB = 1024 * 1024

FLOW_ADDON = r'''
import json
from fastproxy.http import Response
PATH = {path!r}

def w(*record):
    with open(PATH, "a") as f:
        f.write(json.dumps(record) + "\n")

def request(flow):
    r = flow.request
    if r.path == "/short":
        flow.response = Response.make(418, b"short circuit", {{"X-Short": "1"}})
    elif r.path == "/modify":
        r.path = "/echo?modified=1"
        r.headers["X-Added"] = "yes"
        del r.headers["X-Remove-Me"]
        r.content = b"new body"
    elif r.path == "/retarget":
        r.host = "127.0.0.1"
        r.port = int(r.headers["X-Other-Port"])
        r.path = "/other"

def responseheaders(flow):
    if flow.request.path.startswith("/bytes/") and "stream" in flow.request.headers:
        flow.response.stream = True

def response(flow):
    r = flow.response
    if flow.request.path == "/gzip":
        w("gzip", len(r.raw_content), r.content.decode(), r.headers["content-encoding"])
    if flow.request.path.startswith("/bytes/") and "stream" in flow.request.headers:
        w("streamed", r.raw_content is None or len(r.raw_content))
    if flow.request.path == "/echo?modified=1":
        r.headers["X-Response-Added"] = "1"
        r.content = r.content.upper()
'''


@pytest.fixture(scope="module")
def origin():
    server = Origin()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxies(tmp_path_factory):
    """"fast": no addon (bytes streamed); "flow": an addon that gathers bodies."""
    tmp = tmp_path_factory.mktemp("proxies")
    script = tmp / "flow_addon.py"
    events = tmp / "flow_events.jsonl"
    script.write_text(FLOW_ADDON.format(path=str(events)))
    started = {"fast": ProxyProcess("-q", tmp_path=tmp),
               "flow": ProxyProcess("-q", "-s", str(script), tmp_path=tmp)}
    started["flow"].events = events
    yield started
    for proxy in started.values():
        proxy.stop()


@pytest.fixture(params=["fast", "flow"])
def proxy(request, proxies):
    return proxies[request.param]


@pytest.fixture
def flow_proxy(proxies):
    return proxies["flow"]


def client(proxy) -> httpx.Client:
    return httpx.Client(proxy=proxy.url, timeout=10)


# -- bodies, byte for byte --------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 1000, MiB])
def test_download_content_length(origin, proxy, size):
    with client(proxy) as c:
        response = c.get(origin.url(f"/bytes/{size}"))
    assert response.status_code == 200
    assert response.content == payload(size)
    assert response.headers["content-length"] == str(size)


def test_download_chunked_and_close_delimited(origin, proxy):
    with client(proxy) as c:
        assert c.get(origin.url("/chunked/100000")).content == payload(100000)
        assert c.get(origin.url("/chunked/0")).content == b""
        assert c.get(origin.url("/close/70000")).content == payload(70000)
        assert c.get(origin.url("/bytes/10")).content == payload(10)


@pytest.mark.parametrize("size", [0, 7, MiB])
def test_upload_content_length(origin, proxy, size):
    body = payload(size)[::-1]
    with client(proxy) as c:
        response = c.post(origin.url("/echo"), content=body)
    assert response.content == body
    assert origin.requests[-1][0] == "POST"


def test_upload_chunked(origin, proxy):
    parts = [payload(5000), b"x", payload(300000)]
    with client(proxy) as c:
        response = c.post(origin.url("/echo"), content=iter(parts))
    assert response.content == b"".join(parts)
    sent = json.loads(response.headers["x-echo-headers"])
    assert sent.get("Transfer-Encoding") == "chunked" or \
        sent.get("Content-Length") == str(len(b"".join(parts)))


def test_curl_upload_with_expect_100_continue(origin, proxy, tmp_path):
    data = tmp_path / "upload.bin"
    data.write_bytes(payload(2 * MiB))
    out = subprocess.run(["curl", "-s", "-x", proxy.url, "-H", "Expect: 100-continue",
                          "--data-binary", f"@{data}", origin.url("/echo")],
                         capture_output=True, timeout=30)
    assert out.stdout == payload(2 * MiB)


def test_expect_100_continue_raw(origin, proxy):
    with Conn(proxy.port) as conn:
        conn.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n" % origin.url("/echo").encode())
        assert conn.file.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert conn.file.readline() == b"\r\n"
        conn.send(b"hello")
        response = conn.response()
    assert response.body == b"hello"
    assert "Expect" not in json.loads(response.getheader("X-Echo-Headers"))


# -- connection handling ----------------------------------------------------------------

def test_http10_client(origin, proxy):
    with Conn(proxy.port) as conn:
        conn.send(b"GET %s HTTP/1.0\r\n\r\n" % origin.url("/bytes/100").encode())
        response = conn.response()
        assert response.body == payload(100)
        assert conn.is_closed()
    with Conn(proxy.port) as conn:  # HTTP/1.0 keep-alive
        for size in (3, 4):
            conn.send(b"GET %s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                      % origin.url(f"/bytes/{size}").encode())
            response = conn.response()
            assert response.body == payload(size)
            assert response.getheader("Connection").lower() == "keep-alive"


def test_keep_alive_many_requests_one_connection(origin, proxy):
    with Conn(proxy.port) as conn:
        for i in range(5):
            conn.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url(f"/p{i}").encode())
            response = conn.response()
            assert response.getheader("X-Path") == f"/p{i}"


def test_pipelined_requests_answered_in_order(origin, proxy):
    url = origin.url("").encode()
    with Conn(proxy.port) as conn:
        conn.send(b"GET %s/first HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST %s/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
                  b"GET %s/chunked/3000 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"HEAD %s/bytes/50 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET %s/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % ((url,) * 5))
        assert conn.response().getheader("X-Path") == "/first"
        assert conn.response().body == b"second"
        assert conn.response().body == payload(3000)
        head = conn.response("HEAD")
        assert head.getheader("Content-Length") == "50" and head.body == b""
        assert conn.response().getheader("X-Path") == "/last"
        assert conn.is_closed()


def test_head_204_304_have_no_body_and_keep_the_connection(origin, proxy):
    with Conn(proxy.port) as conn:
        for method, path, status in [("HEAD", "/bytes/1000", 200), ("GET", "/status/204", 204),
                                     ("GET", "/status/304", 304), ("GET", "/bytes/3", 200)]:
            conn.send(b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n"
                      % (method.encode(), origin.url(path).encode()))
            response = conn.response(method)
            assert response.status == status
            assert response.body == (payload(3) if path == "/bytes/3" else b"")
        # a HEAD response keeps the Content-Length of the GET
        conn.send(b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/bytes/1000").encode())
        assert conn.response("HEAD").getheader("Content-Length") == "1000"


def test_hop_by_hop_request_fields_not_forwarded(origin, proxy):
    with client(proxy) as c:
        response = c.get(origin.url("/echo"), headers={
            "Connection": "keep-alive, X-Listed", "X-Listed": "1", "Keep-Alive": "timeout=5",
            "Proxy-Connection": "keep-alive", "TE": "trailers", "X-End-To-End": "kept"})
    sent = {k.lower(): v for k, v in json.loads(response.headers["x-echo-headers"]).items()}
    assert sent["x-end-to-end"] == "kept"
    for name in ("x-listed", "keep-alive", "proxy-connection", "te"):
        assert name not in sent, name
    assert sent.get("connection", "keep-alive").lower() == "keep-alive"


@pytest.fixture(scope="module")
def scripted():
    def answer(line, headers, body):
        path = line.split(b" ")[1]
        if path.endswith(b"/hop"):
            return (b"HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: 1\r\n"
                    b"Keep-Alive: timeout=5\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok", False)
        if path.endswith(b"/until-close"):
            return b"HTTP/1.1 200 OK\r\nX-Kind: close-delimited\r\n\r\nuntil close", True
        if path.endswith(b"/hang-up"):
            return b"", True
        if path.endswith(b"/garbage"):
            return b"NOT HTTP AT ALL\r\n\r\n", True
        if path.endswith(b"/early-hints"):
            return (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhint", False)
        if path.endswith(b"/other"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nother", False
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False
    server = ScriptedOrigin(answer)
    yield server
    server.stop()


def test_hop_by_hop_response_fields_not_forwarded(scripted, proxy):
    with client(proxy) as c:
        response = c.get(f"http://127.0.0.1:{scripted.port}/hop")
    assert response.text == "ok" and response.headers["x-kept"] == "1"
    assert "x-resp-hop" not in response.headers and "keep-alive" not in response.headers


def test_close_delimited_upstream_then_next_request(scripted, proxy):
    url = f"http://127.0.0.1:{scripted.port}"
    for _ in range(2):  # the closed upstream connection must not be reused
        with Conn(proxy.port) as conn:
            conn.send(b"GET %s/until-close HTTP/1.1\r\nHost: x\r\n\r\n" % url.encode())
            response = conn.response()
            assert response.body == b"until close"
            if response.getheader("Content-Length") is None:  # streamed: close-delimited too
                assert conn.is_closed()
            else:  # gathered for the addon and framed anew
                assert response.getheader("Content-Length") == "11"
        with client(proxy) as c:
            assert c.get(url + "/plain").text == "ok"


def test_interim_1xx_response_passed_on(scripted, proxy):
    with Conn(proxy.port) as conn:
        conn.send(b"GET http://127.0.0.1:%d/early-hints HTTP/1.1\r\nHost: x\r\n\r\n"
                  % scripted.port)
        assert conn.file.readline() == b"HTTP/1.1 103 Early Hints\r\n"
        assert conn.file.readline() == b"Link: </a.css>\r\n"
        assert conn.file.readline() == b"\r\n"
        response = conn.response()
    assert response.status == 200 and response.body == b"hint"


# -- addons change what goes through ----------------------------------------------------

def test_addon_modifies_request_and_response(origin, flow_proxy):
    with client(flow_proxy) as c:
        response = c.post(origin.url("/modify"), content=b"original",
                          headers={"X-Remove-Me": "1"})
    assert response.content == b"NEW BODY"
    assert response.headers["x-response-added"] == "1"
    assert response.headers["content-length"] == "8"
    method, path, headers = origin.requests[-1]
    assert path == "/echo?modified=1"
    assert headers["X-Added"] == "yes" and "X-Remove-Me" not in headers
    assert headers["Content-Length"] == "8"


def test_addon_retargets_request_to_another_host(scripted, origin, flow_proxy):
    with client(flow_proxy) as c:
        response = c.get(origin.url("/retarget"), headers={"X-Other-Port": str(scripted.port)})
    assert response.text == "other"
    line, headers, _ = scripted.requests[-1]
    assert line == b"GET /other HTTP/1.1"
    assert headers["host"] == f"127.0.0.1:{scripted.port}"


def test_short_circuit_response_never_contacts_origin(origin, flow_proxy):
    seen = len(origin.requests)
    with client(flow_proxy) as c:
        response = c.get(origin.url("/short"))
        assert c.get(origin.url("/after")).headers["x-path"] == "/after"  # same connection
    assert response.status_code == 418 and response.content == b"short circuit"
    assert response.headers["x-short"] == "1"
    assert [r[1] for r in origin.requests[seen:]] == ["/after"]


def test_stream_set_in_responseheaders(origin, flow_proxy):
    with client(flow_proxy) as c:
        response = c.get(origin.url(f"/bytes/{MiB}"), headers={"stream": "1"})
    assert response.content == payload(MiB)
    assert wait_for(lambda: any(e[0] == "streamed" for e in read_events(flow_proxy.events)))
    assert ["streamed", True] in read_events(flow_proxy.events)  # no body was gathered


def test_gzip_content_decoded_raw_content_on_the_wire(origin, flow_proxy):
    out = subprocess.run(["curl", "-s", "-x", flow_proxy.url, origin.url("/gzip")],
                         capture_output=True, timeout=30)
    assert gzip.decompress(out.stdout) == b"hello gzip " * 10  # the client gets the wire form
    assert wait_for(lambda: any(e[0] == "gzip" for e in read_events(flow_proxy.events)))
    record = [e for e in read_events(flow_proxy.events) if e[0] == "gzip"][-1]
    assert record == ["gzip", len(out.stdout), "hello gzip " * 10, "gzip"]


def test_connect_tunnel_with_plain_http(origin, proxy):
    with Conn(proxy.port) as conn:
        conn.send(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                  % (origin.port, origin.port))
        assert conn.response("CONNECT").status == 200
        conn.send(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\ntunl")
        assert conn.response().body == b"tunl"
        conn.send(b"GET /bytes/2000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert conn.response().body == payload(2000)


# -- failures ----------------------------------------------------------------------------

BAD_REQUESTS = [
    b"GARBAGE\r\n\r\n",
    b"GET http://127.0.0.1:1/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"POST http://127.0.0.1:1/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET http://127.0.0.1:1/ HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET /relative-in-regular-mode HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST http://127.0.0.1:{port}/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


@pytest.mark.parametrize("raw", BAD_REQUESTS, ids=["line", "header", "cl-te", "oversize",
                                                   "relative", "chunk-size"])
def test_bad_requests_get_400_and_close(origin, proxy, raw):
    with Conn(proxy.port) as conn:
        conn.send(raw.replace(b"{port}", str(origin.port).encode()))
        response = conn.response()
        assert response.status == 400
        assert conn.is_closed()


def test_unreachable_upstream_502(proxy):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        with Conn(proxy.port) as conn:
            conn.send(b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % port)
            response = conn.response()
    assert response.status == 502
    assert b"cannot connect to 127.0.0.1:%d" % port in response.body


@pytest.mark.parametrize("path", ["/hang-up", "/garbage"])
def test_upstream_without_valid_response_502(scripted, proxy, path):
    with Conn(proxy.port) as conn:
        conn.send(b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: x\r\n\r\n"
                  % (scripted.port, path.encode()))
        response = conn.response()
    assert response.status == 502


def test_garbage_clients_do_not_stop_others(origin, proxy):
    slow = Conn(proxy.port)
    slow.send(b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Partial: ")  # never finished
    noisy = Conn(proxy.port)
    noisy.send(b"\x16\x03\x01\x00\xff" + bytes(range(256)) * 20 + b"\r\n\r\n")
    try:
        results = []

        def fetch(i):
            with client(proxy) as c:
                results.append(c.get(origin.url(f"/bytes/{i}")).content == payload(i))
        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert results == [True] * 8
        assert noisy.read_until_closed().startswith(b"HTTP/1.1 400 ")
    finally:
        slow.close()
        noisy.close()


def test_timeouts_close_silent_and_slow_clients(origin, tmp_path):
    proxy = ProxyProcess("-q", "--set", "idle_timeout=0.3", "--set", "head_timeout=0.3",
                         tmp_path=tmp_path)
    try:
        silent = Conn(proxy.port)
        slow = Conn(proxy.port)
        slow.send(b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n" % origin.port)
        idle_after_request = Conn(proxy.port)
        idle_after_request.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/x").encode())
        assert idle_after_request.response().status == 200
        for conn in (silent, slow, idle_after_request):
            conn.sock.settimeout(5)
            assert conn.is_closed()
            conn.close()
        with client(proxy) as c:  # still serving
            assert c.get(origin.url("/bytes/5")).content == payload(5)
    finally:
        proxy.stop()
