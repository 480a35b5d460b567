"""Deadlines on the HTTP/2 paths (issue 15, finding 5): an origin that never answers is
given `read_timeout` seconds for its response head, then the client gets 504 and the
flow's `error` event fires. h2 -> h2, h2 -> HTTP/1, HTTP/1 -> h2; with and without
addons (the no-addon path has no flow, only the 504)."""

from __future__ import annotations

import time

import pytest

from tests.support import flowlog
from tests.support.h2kit import H2Client, RecordingH2Origin
from tests.support.tcpserver import Server
from tests.test_h2_matrix import h1_request


def never_answer(conn, sock, stream_id, received) -> None:
    """An origin handler that takes the request and sends nothing back."""


def hold(sock) -> None:
    """An HTTPS origin's handler that reads the request and never answers."""
    while sock.recv(65536):
        pass


def timed(fn):
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


def error_records(log) -> list:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records = [r for r in flowlog.read(str(log)) if r["event"] == "error"]
        if records:
            return records
        time.sleep(0.05)
    return []


@pytest.mark.parametrize("addons", [True, False], ids=["flows", "fast"])
@pytest.mark.parametrize("origin_kind", ["h2", "http1"])
def test_h2_client_gets_504_from_a_silent_origin(tls_proxy, test_ca, origin_kind, addons):
    origin = RecordingH2Origin(test_ca, handler=never_answer) if origin_kind == "h2" \
        else Server(hold, test_ca.server_context(["http/1.1"]))
    try:
        proxy, _, log = tls_proxy(*([] if addons else ["-q"]), "--set", "read_timeout=1",
                                  "--mode", f"reverse:https://127.0.0.1:{origin.port}",
                                  flowlog_script=addons)
        client = H2Client(proxy.port)
        try:
            reply, took = timed(lambda: client.request("POST", "/hang", body=b"hello"))
        finally:
            client.close()
        assert reply.status == 504, reply
        assert b"read_timeout" in reply.body
        assert 0.9 < took < 10, took
        if addons:
            records = error_records(log)
            assert records and "read_timeout" in records[0]["error"], records
    finally:
        origin.stop()


@pytest.mark.parametrize("addons", [True, False], ids=["flows", "fast"])
def test_http1_client_to_silent_h2_origin_gets_504(tls_proxy, test_ca, addons):
    origin = RecordingH2Origin(test_ca, handler=never_answer)
    try:
        proxy, _, log = tls_proxy(*([] if addons else ["-q"]), "--set", "read_timeout=1",
                                  "--mode", f"reverse:https://127.0.0.1:{origin.port}",
                                  flowlog_script=addons)
        (response, body), took = timed(lambda: h1_request(
            proxy.port, b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n", b"", "one"))
        assert response.status_code == 504 and b"read_timeout" in body
        assert 0.9 < took < 10, took
        if addons:
            records = error_records(log)
            assert records and "read_timeout" in records[0]["error"], records
    finally:
        origin.stop()
