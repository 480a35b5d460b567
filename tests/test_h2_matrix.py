"""The HTTP/2 body matrix (issue 15, finding 1): every HTTP/2 path x every flow mode x
body shapes x how the bytes arrive, each asserting that the origin got the exact bytes
and headers and the client the exact response.

Paths: h2 client <-> h2 origin, h2 client -> HTTP/1.1 origin, HTTP/1.1 client -> h2
origin (reverse:https:// mode, the proxy trusting the test CA).
Modes: no addon (-q), a `requestheaders`-only addon, `request`/`response` addons that read
the bodies, -w (recording), the default console, -v.
Shapes: empty, 1 byte, one DATA frame, many frames, more than the 65,535-byte initial
window, trailers. Arrival: everything in one write (HEADERS, DATA and END_STREAM in one
read: the case that lost bodies), one write per frame, one byte per write.

One proxy per (path, mode); every (shape, arrival) is a new connection to it.
"""

from __future__ import annotations

import json
import socket
import time

import h11
import pytest

from tests.support.h2kit import H2Client, RecordingH2Origin, client_context
from tests.support.origin import payload
from tests.support.tls_origin import HttpsOrigin

HEADERS_ONLY = "def requestheaders(flow):\n    flow.request.headers.get('x-probe')\n"
BODIES = ("def request(flow):\n    assert flow.request.content is not None\n"
          "def response(flow):\n    assert flow.response.content is not None\n")
MODES = ["fast", "requestheaders", "request_response", "save", "console", "verbose"]
SHAPES = {"empty": b"", "one_byte": b"x", "one_frame": payload(4000),
          "many_frames": payload(50_000), "over_window": payload(200_000),
          "trailers": payload(3000)}
SMALL = ("empty", "one_byte", "one_frame", "trailers")
ARRIVALS = ["one", "frames", "bytes"]
TRAILERS = [("x-checksum", "abc"), ("x-count", "3")]


def mode_args(mode: str, tmp_path) -> list[str]:
    if mode in ("requestheaders", "request_response"):
        script = tmp_path / f"{mode}.py"
        script.write_text(HEADERS_ONLY if mode == "requestheaders" else BODIES)
        return ["-q", "-s", str(script)]
    return {"fast": ["-q"], "save": ["-q", "-w", str(tmp_path / "flows")], "console": [],
            "verbose": ["-v"]}[mode]


def cases(shapes=tuple(SHAPES)):
    for shape in shapes:
        for arrival in ARRIVALS:
            if arrival == "bytes" and shape not in SMALL:
                continue  # byte by byte for the small bodies; frame splits for the rest
            yield shape, arrival


def start(start_proxy, test_ca, origin_port: int, mode: str, tmp_path):
    return start_proxy(*mode_args(mode, tmp_path),
                       "--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}",
                       "--mode", f"reverse:https://127.0.0.1:{origin_port}")


def fields_of(headers: list) -> list:
    return [(n, v) for n, v in headers if not n.startswith(b":")]


@pytest.mark.parametrize("mode", MODES)
def test_h2_to_h2(start_proxy, test_ca, tmp_path, mode):
    origin = RecordingH2Origin(test_ca)
    try:
        proxy = start(start_proxy, test_ca, origin.port, mode, tmp_path)
        for shape, arrival in cases():
            body = SHAPES[shape]
            trailers = TRAILERS if shape == "trailers" else None
            sent = [(b"content-type", b"application/octet-stream"), (b"x-probe", b"1")]
            if shape != "trailers":
                sent.append((b"content-length", str(len(body)).encode()))
            client = H2Client(proxy.port)
            try:
                reply = client.request("POST", f"/up?{shape}-{arrival}", sent, body, trailers,
                                       arrival)
            finally:
                client.close()
            label = f"{mode}/{shape}/{arrival}"
            got = origin.requests[-1]
            assert dict(got.headers)[b":path"] == f"/up?{shape}-{arrival}".encode(), label
            assert got.body == body, label
            assert fields_of(got.headers) == sent, label
            assert got.trailers == ([(n.encode(), v.encode()) for n, v in trailers]
                                    if trailers else None), label
            assert reply.status == 200 and reply.reset is None, label
            assert reply.body == body, label
            assert reply.header(b"x-got-length") == str(len(body)).encode(), label
            if trailers:
                assert reply.header(b"x-got-trailers") == b"x-checksum=abc,x-count=3", label
    finally:
        origin.stop()


@pytest.mark.parametrize("mode", MODES)
def test_h2_to_http1(start_proxy, test_ca, tmp_path, mode):
    origin = HttpsOrigin(test_ca)
    try:
        proxy = start(start_proxy, test_ca, origin.port, mode, tmp_path)
        for shape, arrival in cases():
            body = SHAPES[shape]
            trailers = TRAILERS if shape == "trailers" else None
            sent = [(b"content-type", b"application/octet-stream"), (b"x-probe", b"1")]
            if shape != "trailers":
                sent.append((b"content-length", str(len(body)).encode()))
            client = H2Client(proxy.port)
            try:
                reply = client.request("POST", "/echo", sent, body, trailers, arrival)
            finally:
                client.close()
            label = f"{mode}/{shape}/{arrival}"
            assert reply.status == 200 and reply.reset is None, label
            assert reply.body == body, label  # what the origin read, echoed
            method, path, headers = origin.requests[-1]
            headers = {k.lower(): v for k, v in headers.items()}
            assert (method, path) == ("POST", "/echo"), label
            assert headers["content-type"] == "application/octet-stream", label
            assert headers["x-probe"] == "1", label
            assert headers["host"] == f"127.0.0.1:{origin.port}", label
            if shape != "trailers":
                assert headers.get("content-length") == str(len(body)), label
            else:  # chunked when streamed (the trailers in its last chunk), else a length
                assert headers.get("transfer-encoding") == "chunked" or \
                    headers.get("content-length") == str(len(body)), label
            echoed = json.loads(reply.header(b"x-echo-headers"))
            assert {k.lower(): v for k, v in echoed.items()} == headers, label
    finally:
        origin.stop()


def h1_request(port: int, head: bytes, body: bytes, arrival: str) -> h11.Response:
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    context = client_context()
    context.set_alpn_protocols(["http/1.1"])
    sock = context.wrap_socket(raw, server_hostname="localhost")
    try:
        data = head + body
        if arrival == "one":
            sock.sendall(data)
        elif arrival == "frames":  # the head, then the body in pieces
            sock.sendall(head)
            time.sleep(0.002)
            for i in range(0, len(body), 16384):
                sock.sendall(body[i:i + 16384])
                time.sleep(0.002)
        else:
            for i in range(len(data)):
                sock.sendall(data[i:i + 1])
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        response, content = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                return response, content
    finally:
        sock.close()


@pytest.mark.parametrize("mode", MODES)
def test_http1_to_h2(start_proxy, test_ca, tmp_path, mode):
    origin = RecordingH2Origin(test_ca)
    try:
        proxy = start(start_proxy, test_ca, origin.port, mode, tmp_path)
        for shape, arrival in cases([s for s in SHAPES if s != "trailers"] + ["chunked"]):
            chunked = shape == "chunked"
            body = payload(40_000) if chunked else SHAPES[shape]
            framing = b"Transfer-Encoding: chunked\r\n" if chunked else \
                b"Content-Length: %d\r\n" % len(body)
            wire = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7000]), body[i:i + 7000])
                            for i in range(0, len(body), 7000)) + b"0\r\n\r\n" \
                if chunked else body
            head = (b"POST /up HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Probe: 1\r\n"
                    b"Content-Type: application/octet-stream\r\n" + framing + b"\r\n")
            label = f"{mode}/{shape}/{arrival}"
            try:
                response, content = h1_request(proxy.port, head, wire, arrival)
            except h11.RemoteProtocolError as e:
                raise AssertionError(f"{label}: {e}") from None
            assert response.status_code == 200, label
            assert content == body, label
            got = origin.requests[-1]
            assert got.body == body, label
            names = [n for n, _ in fields_of(got.headers)]
            assert b"x-probe" in names and b"content-type" in names, label
            assert b"transfer-encoding" not in names and b"host" not in names, label
            length = dict(got.headers).get(b"content-length")
            # A chunked body goes on unframed (END_STREAM ends it) unless it was taken in
            # whole for an addon, when its length is known.
            assert length == str(len(body)).encode() or chunked and length is None, label
    finally:
        origin.stop()


@pytest.mark.parametrize("size", [1, 7, 20_000, 300_000])
def test_curl_http2_data_binary_with_the_default_console(start_proxy, test_ca, tmp_path, size):
    """The issue's "done when": curl --http2 --data-binary through `fastproxy run` with the
    default console arrives byte-exact (curl sends HEADERS, DATA and END_STREAM of a
    small body in one write)."""
    import subprocess
    origin = RecordingH2Origin(test_ca)
    try:
        proxy = start(start_proxy, test_ca, origin.port, "console", tmp_path)
        body = payload(size)
        (tmp_path / "body").write_bytes(body)
        out = subprocess.run(["curl", "-sS", "-k", "--http2", "--max-time", "20",
                              "--data-binary", f"@{tmp_path / 'body'}",
                              f"https://127.0.0.1:{proxy.port}/curl"],
                             check=False, capture_output=True, timeout=30)
        assert out.stdout == body, out.stderr
        assert origin.requests[-1].body == body
        assert dict(origin.requests[-1].headers)[b"content-length"] == str(size).encode()
    finally:
        origin.stop()
