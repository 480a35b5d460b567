"""The proxy command serves curl through regular and reverse mode."""

import subprocess


def test_curl_through_regular_mode(origin, start_proxy):
    proxy = start_proxy()
    out = subprocess.run(["curl", "-s", "-x", proxy.url, origin.url("/bytes/1000")],
                         capture_output=True, timeout=30)
    assert out.stdout == bytes(range(256)) * 3 + bytes(range(232))
    proxy.stop()
    assert "GET http://127.0.0.1:%d/bytes/1000" % origin.port in proxy.stdout
    assert "<< 200 OK 1000b" in proxy.stdout


def test_curl_through_reverse_mode(origin, start_proxy):
    proxy = start_proxy("-q", "--mode", f"reverse:http://127.0.0.1:{origin.port}")
    out = subprocess.run(["curl", "-s", "-i", proxy.url + "/hello?x=1"],
                         capture_output=True, timeout=30)
    assert out.stdout.endswith(b"hello")
    assert b"X-Path: /hello?x=1" in out.stdout
    assert origin.requests[-1][2]["Host"] == f"127.0.0.1:{origin.port}"
