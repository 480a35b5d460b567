"""Early responses and request-body memory on the HTTP/2 paths (issue 15, findings 6, 7).

- An origin that answers (413) before it read the request body: the answer reaches the
  h2 client at once, over an h2 or an HTTP/1.1 upstream, with and without addons; the
  rest of the upload is then refused with RST_STREAM NO_ERROR (RFC 9113 §8.1).
- A request body is gathered only for a `request` listener: with an addon that hooks
  `response` only, uploads stream through and the proxy's memory stays flat.
"""

from __future__ import annotations

import socket
import threading
import time

import h2.errors
import pytest

from tests.support.h2kit import H2Client, RecordingH2Origin
from tests.support.tcpserver import Server
from tests.test_h2_flood import usage

BIG = b"u" * 2_000_000


def answer_413(conn, sock, stream_id, received) -> None:
    conn.send_headers(stream_id, [(b":status", b"413"), (b"content-length", b"9")])
    conn.send_data(stream_id, b"too large", end_stream=True)
    conn.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
    sock.sendall(conn.data_to_send())


def answer_413_early(sock) -> None:
    """An HTTPS (http/1.1) origin's handler: reads the head, answers 413 and closes,
    without reading the body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return
        data += chunk
    sock.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n"
                 b"Connection: close\r\n\r\ntoo large")
    time.sleep(0.5)


@pytest.mark.parametrize("addons", [True, False], ids=["flows", "fast"])
@pytest.mark.parametrize("origin_kind", ["h2", "http1"])
def test_early_413_reaches_the_h2_client(tls_proxy, test_ca, origin_kind, addons):
    origin = RecordingH2Origin(test_ca, early=answer_413) if origin_kind == "h2" \
        else Server(answer_413_early, test_ca.server_context(["http/1.1"]))
    try:
        proxy, _, _ = tls_proxy(*([] if addons else ["-q"]),
                                "--mode", f"reverse:https://127.0.0.1:{origin.port}",
                                flowlog_script=addons)
        client = H2Client(proxy.port)
        try:
            start = time.monotonic()
            reply = client.request("POST", "/upload", [("content-length", str(len(BIG)))],
                                   BIG, timeout=15)
            took = time.monotonic() - start
        finally:
            client.close()
        assert reply.status == 413 and reply.body == b"too large", reply
        assert took < 10
        if reply.reset is not None:  # the rest of the body is not wanted
            assert reply.reset == h2.errors.ErrorCodes.NO_ERROR
    finally:
        origin.stop()


RESPONSE_ONLY = ("def response(flow):\n"
                 "    flow.response.headers['x-request-body'] = "
                 "str(flow.request.raw_content is not None)\n")


def small_answer(conn, sock, stream_id, received) -> None:
    body = str(len(received.body)).encode()
    conn.send_headers(stream_id, [(b":status", b"200"),
                                  (b"content-length", str(len(body)).encode())])
    conn.send_data(stream_id, body, end_stream=True)
    sock.sendall(conn.data_to_send())


def test_response_only_addon_does_not_gather_request_bodies(start_proxy, test_ca, tmp_path):
    origin = RecordingH2Origin(test_ca, handler=small_answer)
    script = tmp_path / "response_only.py"
    script.write_text(RESPONSE_ONLY)
    try:
        proxy = start_proxy("-q", "-s", str(script),
                            "--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}",
                            "--mode", f"reverse:https://127.0.0.1:{origin.port}")
        warm = H2Client(proxy.port)
        assert warm.request("POST", "/w", body=b"x").status == 200
        warm.close()
        _, rss0 = usage(proxy.proc.pid)
        peak = [rss0]
        body = b"b" * 10_000_000
        replies = []

        def upload():
            client = H2Client(proxy.port, timeout=60)
            try:
                replies.append(client.request("POST", "/big", body=body, timeout=60))
            finally:
                client.close()
        threads = [threading.Thread(target=upload) for _ in range(3)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak.append(usage(proxy.proc.pid)[1])
            time.sleep(0.05)
        assert [r.body for r in replies] == [b"10000000"] * 3
        assert all(r.header(b"x-request-body") == b"False" for r in replies)
        # Gathered, the three bodies alone would be 30 MB; streamed, the windows bound it.
        assert max(peak) - rss0 < 15 * 1024 * 1024, (max(peak) - rss0) / 2**20
    finally:
        origin.stop()


@pytest.mark.parametrize("addons", [False], ids=["fast"])
def test_early_413_reaches_an_http1_client_of_an_h2_origin(tls_proxy, test_ca, tmp_path,
                                                           addons):
    """HTTP/1.1 client -> h2 origin that answers 413 at once: the client gets the 413
    (and the connection closes: the rest of its body would be read as a request).
    Without addons only: with any body listener, even `response`-only, the HTTP/1
    reader (http1.py's Exchange.request_events) gathers the whole request body before
    the request goes out, so there is nothing early to pass on."""
    import h11

    from tests.support.h2kit import client_context
    origin = RecordingH2Origin(test_ca, early=answer_413)
    script = tmp_path / "response_only.py"
    script.write_text(RESPONSE_ONLY)
    try:
        proxy, _, _ = tls_proxy(*(["-s", str(script)] if addons else ["-q"]),
                                "--mode", f"reverse:https://127.0.0.1:{origin.port}",
                                flowlog_script=False)
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=15)
        context = client_context()
        context.set_alpn_protocols(["http/1.1"])
        sock = context.wrap_socket(raw, server_hostname="localhost")
        head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(BIG)
        # a part of the body only (it fits in the socket buffers): one SSL socket is not
        # to be written and read from two threads at once
        sock.sendall(head + BIG[:200_000])
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        response, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        assert response.status_code == 413 and body == b"too large"
        sock.close()
    finally:
        origin.stop()
