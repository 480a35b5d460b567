"""HTTP/2 through the proxy with real clients: curl --http2, httpx with http2, h2load.

h2 <-> h2: CONNECT (or reverse mode) to an HTTP/2-only origin.
h2 <-> HTTP/1: reverse:https:// to the HTTP/1.1-only origin; the proxy speaks h2 to the
client and HTTP/1.1 upstream.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess

import httpx
import pytest

from tests.support import flowlog
from tests.support.origin import payload
from tests.support.tls_origin import H2Origin, HttpsOrigin
from tests.test_tls import curl, wait_records


def test_curl_h2_to_h2_origin_through_connect(tls_proxy, h2_origin):
    proxy, cacert, log = tls_proxy()
    url = h2_origin.url("/bytes/300000")
    out = curl("-v", "--http2", "--proxy", proxy.url, "--cacert", str(cacert), url, url)
    assert out.stdout == payload(300000) * 2, out.stderr[-2000:]
    assert b"ALPN: server accepted h2" in out.stderr
    records = wait_records(log, "response", 2)
    events = [r["event"] for r in flowlog.read(str(log))]
    assert events[:4] == ["requestheaders", "request", "responseheaders", "response"]
    flow = records[0]
    assert flow["http_version"] == "HTTP/2.0" and flow["response_version"] == "HTTP/2.0"
    assert flow["client"]["alpn"] == "h2" and flow["server"]["alpn"] == "h2"
    assert flow["client"]["alpn_offers"] == ["h2", "http/1.1"]
    assert flow["response_size"] == 300000
    assert h2_origin.requests[0][:2] == ("GET", "/bytes/300000")


def test_httpx_h2_large_bodies_both_ways(tls_proxy, h2_origin):
    proxy, cacert, log = tls_proxy("-q")
    body = payload(3_000_000)
    with httpx.Client(http2=True, proxy=proxy.url, verify=ssl.create_default_context(cafile=cacert), timeout=30) as client:
        r = client.post(h2_origin.url("/echo"), content=body)
        assert r.http_version == "HTTP/2"
        assert r.headers["x-body-length"] == str(len(body))
        assert r.content == body
        r = client.get(h2_origin.url("/bytes/5000000"))
        assert r.content == payload(5_000_000)


def test_h2_client_to_http1_origin_reverse_mode(tls_proxy, https_origin):
    proxy, cacert, log = tls_proxy("--mode", f"reverse:https://127.0.0.1:{https_origin.port}")
    body = payload(2_000_000)
    base = f"https://127.0.0.1:{proxy.port}"
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=cacert), timeout=30) as client:
        r = client.post(base + "/echo", content=body, headers={"x-test": "1"})
        assert r.http_version == "HTTP/2"
        assert r.content == body
        r = client.get(base + "/chunked/100000")
        assert r.content == payload(100000)
        r = client.get(base + "/bytes/4000000")
        assert r.content == payload(4_000_000)
    method, path, headers = https_origin.requests[0]
    assert (method, path) == ("POST", "/echo")
    assert headers["Host"] == f"127.0.0.1:{https_origin.port}" and headers["x-test"] == "1"
    flows = wait_records(log, "response", 3)
    assert flows[0]["http_version"] == "HTTP/2.0"
    assert flows[0]["response_version"] == "HTTP/1.1"
    assert flows[0]["request_size"] == len(body)


def test_h2_client_to_h2_origin_reverse_mode(tls_proxy, h2_origin):
    proxy, cacert, log = tls_proxy("--mode", f"reverse:https://127.0.0.1:{h2_origin.port}")
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=cacert), timeout=30) as client:
        r = client.get(f"https://127.0.0.1:{proxy.port}/hi?x=1")
    assert r.http_version == "HTTP/2" and r.content == b"hello h2"
    assert r.headers["x-path"] == "/hi?x=1"
    flow = wait_records(log, "response")[0]
    assert flow["server"]["alpn"] == "h2" and flow["client"]["alpn"] == "h2"


def test_rst_stream_ends_only_that_stream(tls_proxy, h2_origin):
    proxy, cacert, log = tls_proxy()
    with httpx.Client(http2=True, proxy=proxy.url, verify=ssl.create_default_context(cafile=cacert), timeout=30) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(h2_origin.url("/reset"))
        assert client.get(h2_origin.url("/after")).content == b"hello h2"
    flow = wait_records(log, "error")[0]
    assert "reset" in flow["error"]


def test_untrusted_h2_origin_is_a_502(start_proxy, h2_origin, tmp_path):
    proxy = start_proxy("-q")
    cacert = tmp_path / "confdir" / "fastproxy-ca-cert.pem"
    with httpx.Client(http2=True, proxy=proxy.url, verify=ssl.create_default_context(cafile=cacert), timeout=30) as client:
        r = client.get(h2_origin.url("/x"))
    assert r.status_code == 502
    assert "certificate verify failed" in r.text


def test_http2_off(tls_proxy, h2_origin, https_origin):
    proxy, cacert, log = tls_proxy("--set", "http2=false", "--mode",
                                   f"reverse:https://127.0.0.1:{https_origin.port}")
    out = curl("-v", "--http2", "--cacert", str(cacert), f"https://127.0.0.1:{proxy.port}/x")
    assert out.stdout == b"hello"
    assert b"ALPN: server accepted http/1.1" in out.stderr


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) missing")
@pytest.mark.parametrize("origin_kind", ["h2", "h1"])
def test_h2load_many_concurrent_streams(start_proxy, test_ca, tmp_path, origin_kind):
    origin = H2Origin(test_ca) if origin_kind == "h2" else HttpsOrigin(test_ca)
    try:
        proxy = start_proxy("-q", "--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}",
                            "--mode", f"reverse:https://127.0.0.1:{origin.port}")
        out = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "50",
                              f"https://127.0.0.1:{proxy.port}/bytes/1000"],
                             capture_output=True, text=True, timeout=120)
        assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout + out.stderr
        assert "status codes: 2000 2xx" in out.stdout
    finally:
        origin.stop()
