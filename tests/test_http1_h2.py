"""HTTP/1 clients to an HTTP/2-only origin (ALPN ["h2"]), through CONNECT and TLS
interception: curl --http1.1, a client without ALPN, addons changing flows; the upstream
is offered http/1.1 first and h2 after it refused that (an origin speaking both keeps
HTTP/1.1); reverse:https:// to an h2-only origin."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.support import flowlog
from tests.support.origin import payload
from tests.support.tls_origin import HttpsOrigin
from tests.test_tls import curl, tls_through_proxy, wait_records

ADDON = '''
def request(flow):
    flow.request.headers["x-added"] = "by-addon"
    if flow.request.path == "/rewrite":
        flow.request.path = "/echo"
        flow.request.method = "POST"
        flow.request.content = b"from the addon"

def response(flow):
    flow.response.headers["x-seen"] = flow.response.http_version
    if flow.request.path == "/hi":
        flow.response.content = flow.response.content.upper() + b"!"
'''


def test_curl_http1_to_h2_only_origin_with_events(tls_proxy, h2_origin):
    proxy, cacert, log = tls_proxy()
    urls = [h2_origin.url("/bytes/300000"), h2_origin.url("/hi?x=1")]
    out = curl("-v", "--http1.1", "--proxy", proxy.url, "--cacert", str(cacert), *urls)
    assert out.stdout == payload(300000) + b"hello h2", out.stderr[-2000:]
    assert b"ALPN: server accepted http/1.1" in out.stderr
    assert b"Re-using existing connection" in out.stderr
    records = wait_records(log, "response", 2)
    events = [r["event"] for r in flowlog.read(str(log))]
    assert events == ["requestheaders", "request", "responseheaders", "response"] * 2
    flow = records[0]
    assert flow["url"] == h2_origin.url("/bytes/300000")
    assert flow["http_version"] == "HTTP/1.1" and flow["response_version"] == "HTTP/2.0"
    assert flow["client"]["alpn"] == "http/1.1" and flow["server"]["alpn"] == "h2"
    assert flow["server"]["alpn_offers"] == ["h2"]  # after it refused http/1.1
    assert flow["response_size"] == 300000
    method, path, headers = h2_origin.requests[1]
    assert (method, path) == ("GET", "/hi?x=1")
    assert headers[":authority"] == f"127.0.0.1:{h2_origin.port}"
    assert "host" not in headers and "connection" not in headers


@pytest.mark.parametrize("addon", [True, False], ids=["events", "streamed"])
def test_large_bodies_both_ways_byte_for_byte(tls_proxy, h2_origin, tmp_path, addon):
    proxy, cacert, log = tls_proxy(*([] if addon else ["-q"]), flowlog_script=addon)
    body = payload(3_000_000)
    (tmp_path / "body").write_bytes(body)
    for framing in ([], ["-H", "Transfer-Encoding: chunked"]):
        out = curl("-D", "-", "--http1.1", "--proxy", proxy.url, "--cacert", str(cacert),
                   "--data-binary", f"@{tmp_path / 'body'}", *framing, h2_origin.url("/echo"))
        head, _, got = out.stdout.rpartition(b"\r\n\r\n")
        assert got == body, (out.stderr, head)
        assert b"x-body-length: 3000000" in head
    for path, size in (("/bytes/5000000", 5_000_000), ("/nolength/4000000", 4_000_000),
                       ("/nolength/0", 0)):
        out = curl("-D", "-", "--http1.1", "--proxy", proxy.url, "--cacert", str(cacert),
                   h2_origin.url(path))
        head, _, got = out.stdout.rpartition(b"\r\n\r\n")
        assert got == payload(size), (path, out.stderr, head)
        if path.startswith("/nolength/") and size and not addon:
            assert b"transfer-encoding: chunked" in head.lower()


def test_client_without_alpn_and_head_request(tls_proxy, h2_origin, tmp_path):
    proxy, cacert, log = tls_proxy()
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    target = f"127.0.0.1:{h2_origin.port}"
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    tls = ssl.create_default_context(cafile=str(cacert)).wrap_socket(
        sock, server_hostname="127.0.0.1")  # no ALPN offered
    assert tls.selected_alpn_protocol() is None
    tls.sendall(f"HEAD /bytes/1234 HTTP/1.1\r\nHost: {target}\r\n\r\n"
                f"GET /x HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode())
    response = b""
    while chunk := tls.recv(65536):
        response += chunk
    tls.close()
    first, second = response.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"content-length: 1234" in first and first.endswith(b"\r\n\r\n")
    assert second.endswith(b"\r\n\r\nhello h2") and b"Connection: close" in second
    server = wait_records(log, "response", 2)[0]["server"]
    assert server["alpn"] == "h2" and server["alpn_offers"] == ["h2"]


def test_addon_modifies_request_and_response(tls_proxy, h2_origin, tmp_path):
    script = tmp_path / "modify.py"
    script.write_text(ADDON)
    proxy, cacert, log = tls_proxy("-s", str(script))
    out = curl("-D", "-", "--http1.1", "--proxy", proxy.url, "--cacert", str(cacert),
               h2_origin.url("/hi"), h2_origin.url("/rewrite"))
    first, second = out.stdout.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"\r\n\r\nHELLO H2!"), out.stderr
    assert b"x-seen: HTTP/2.0" in first and b"Content-Length: 9" in first
    assert second.endswith(b"\r\n\r\nfrom the addon")
    assert h2_origin.requests[0][2]["x-added"] == "by-addon"
    method, path, headers = h2_origin.requests[1]
    assert (method, path) == ("POST", "/echo") and headers["content-length"] == "14"


def test_upstream_reset_is_a_502_and_an_error(tls_proxy, h2_origin):
    proxy, cacert, log = tls_proxy()
    out = curl("-i", "--http1.1", "--proxy", proxy.url, "--cacert", str(cacert),
               h2_origin.url("/reset"))
    assert b"HTTP/1.1 502 Bad Gateway" in out.stdout and b"reset" in out.stdout
    assert "reset" in wait_records(log, "error")[0]["error"]
    out = curl("--http1.1", "--proxy", proxy.url, "--cacert", str(cacert), h2_origin.url("/y"))
    assert out.stdout == b"hello h2"


def test_http2_off_offers_the_upstream_http1_only(tls_proxy, h2_origin):
    proxy, cacert, log = tls_proxy("--set", "http2=false")
    curl("--http1.1", "--proxy", proxy.url, "--cacert", str(cacert), h2_origin.url("/x"))
    assert not h2_origin.requests  # an h2-only origin cannot be reached over HTTP/1.1


def test_tls_through_proxy_helper_still_http1(tls_proxy, h2_origin):
    """A client offering http/1.1 keeps it, whatever the upstream picked."""
    proxy, cacert, _ = tls_proxy("-q", flowlog_script=False)
    with tls_through_proxy(proxy.port, "localhost", h2_origin.port, cacert) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        tls.sendall(b"GET /bytes/100 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 OK") and response.endswith(payload(100))


def test_origin_speaking_both_keeps_http1_for_an_http1_client(tls_proxy, test_ca):
    """An origin offering h2 and http/1.1 (that picks h2 when offered) is offered
    http/1.1 alone for an HTTP/1 client: no translation. (This origin speaks HTTP/1.1
    only, so it would fail if it were asked for h2.)"""
    origin = HttpsOrigin(test_ca, alpn=["h2", "http/1.1"])
    try:
        proxy, cacert, log = tls_proxy()
        out = curl("--http1.1", "--proxy", proxy.url, "--cacert", str(cacert),
                   origin.url("/bytes/1000"))
        assert out.stdout == payload(1000), out.stderr[-2000:]
        flow = wait_records(log, "response")[0]
        assert flow["response_version"] == "HTTP/1.1"
        assert flow["server"]["alpn"] == "http/1.1"
        assert flow["server"]["alpn_offers"] == ["http/1.1"]
    finally:
        origin.stop()


def test_reverse_https_to_h2_only_origin_for_http1_client(tls_proxy, h2_origin):
    proxy, cacert, log = tls_proxy("--mode", f"reverse:https://127.0.0.1:{h2_origin.port}")
    url = f"https://127.0.0.1:{proxy.port}"
    out = curl("--http1.1", "--cacert", str(cacert), f"{url}/bytes/20000", f"{url}/hi")
    assert out.stdout == payload(20000) + b"hello h2", out.stderr[-2000:]
    flow = wait_records(log, "response", 2)[0]
    assert flow["http_version"] == "HTTP/1.1" and flow["response_version"] == "HTTP/2.0"
    assert flow["server"]["alpn"] == "h2"
    method, path, headers = h2_origin.requests[0]
    assert (method, path) == ("GET", "/bytes/20000")
    assert headers[":authority"] == f"127.0.0.1:{h2_origin.port}"
