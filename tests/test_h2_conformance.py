"""Our own HTTP/2 conformance suite (issue 15, finding 3): one test per server-observable
requirement of RFC 9113 §§3-8 and RFC 7541, on the client-facing side (hand-built frames
over TLS, as h2spec sends them) and on the upstream side (a misbehaving h2 origin).

Each client-side case sends its frames after a valid preface and SETTINGS and expects a
connection error (GOAWAY with the code; the connection then closes), a stream error
(RST_STREAM with the code), or an answer. One proxy serves the whole module.
"""

from __future__ import annotations

import socket

import h2.errors
import hpack
import pytest
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.support.h2kit import (
    H2Client,
    RecordingH2Origin,
    client_context,
    read_frames,
    send_body,
)
from tests.support.proxyproc import ProxyProcess
from tests.support.tls_origin import TestCA

E = h2.errors.ErrorCodes
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"),
       (b":path", b"/")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("h2conf")
    ca = TestCA(tmp / "ca")
    origin = RecordingH2Origin(ca)
    proxy = ProxyProcess("-q", "--set", f"ssl_verify_upstream_trusted_ca={ca.ca_pem}",
                         "--mode", f"reverse:https://127.0.0.1:{origin.port}", tmp_path=tmp)
    yield proxy, ca, tmp
    proxy.stop()
    origin.stop()


def connect(port: int, preface: bytes | None = None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = client_context().wrap_socket(raw, server_hostname="localhost")
    sock.sendall(PREFACE + SettingsFrame(0).serialize() if preface is None else preface)
    return sock


def headers(stream_id: int, fields=GET, flags=("END_HEADERS", "END_STREAM"), encoder=None):
    frame = HeadersFrame(stream_id, (encoder or hpack.Encoder()).encode(fields))
    frame.flags = set(flags)
    return frame.serialize()


def frame(kind, stream_id: int = 0, flags=(), **attrs) -> bytes:
    f = kind(stream_id)
    for name, value in attrs.items():
        setattr(f, name, value)
    f.flags = set(flags)
    return f.serialize()


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + \
        stream_id.to_bytes(4, "big") + payload


def outcome(frames: list) -> tuple:
    """("goaway", code) | ("rst", code) | ("answer", status) | ("closed", None)."""
    for f in frames:
        if isinstance(f, GoAwayFrame):
            return "goaway", f.error_code
        if isinstance(f, RstStreamFrame):
            return "rst", f.error_code
        if isinstance(f, HeadersFrame) and f.stream_id:
            block = hpack.Decoder().decode(f.data, raw=True)
            return "answer", int(dict(block)[b":status"])
    return "closed", None


def decisive(f) -> bool:
    return isinstance(f, RstStreamFrame) or isinstance(f, HeadersFrame) and f.stream_id > 0


def probe(port: int, data: bytes, preface: bytes | None = None, timeout: float = 3.0):
    sock = connect(port, preface)
    try:
        sock.sendall(data)
        return outcome(read_frames(sock, timeout, decisive)), sock
    except OSError:
        return ("closed", None), sock


def still_serves(port: int) -> None:
    client = H2Client(port)
    try:
        assert client.request("GET", "/after").status == 200
    finally:
        client.close()


CONNECTION_ERRORS = {
    # RFC 9113 §3.4: the preface is PRI * HTTP/2.0 ... then SETTINGS.
    "3.4-bad-preface": (b"", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", E.PROTOCOL_ERROR),
    "3.4-preface-not-settings": (b"", PREFACE + frame(PingFrame, opaque_data=b"12345678"),
                                 E.PROTOCOL_ERROR),
    # §4.2: a frame larger than SETTINGS_MAX_FRAME_SIZE (16,384 by default).
    "4.2-frame-too-large": (headers(1, flags=("END_HEADERS",))
                            + raw_frame(0, 0, 1, b"x" * 16385), None, E.FRAME_SIZE_ERROR),
    # §4.3: a field block that cannot be decompressed: COMPRESSION_ERROR.
    "4.3-hpack-garbage": (raw_frame(1, 5, 1, b"\xff\xff\xff\xff\x0f"), None,
                          E.COMPRESSION_ERROR),
    # §5.1.1: client streams are odd and increasing.
    "5.1.1-even-stream-id": (headers(2), None, E.PROTOCOL_ERROR),
    "5.1.1-decreasing-stream-id": (headers(5) + headers(3), None, E.PROTOCOL_ERROR),
    # §5.1: DATA on an idle stream.
    "5.1-data-on-idle-stream": (frame(DataFrame, 1, data=b"x"), None, E.PROTOCOL_ERROR),
    # §6.1: DATA on stream 0.
    "6.1-data-on-stream-0": (raw_frame(0, 0, 0, b"x"), None, E.PROTOCOL_ERROR),
    # §6.2: HEADERS on stream 0.
    "6.2-headers-on-stream-0": (raw_frame(1, 5, 0, b"\x82"), None, E.PROTOCOL_ERROR),
    # §6.4: RST_STREAM on stream 0, on an idle stream, of the wrong length.
    "6.4-rst-on-stream-0": (raw_frame(3, 0, 0, b"\0\0\0\x08"), None, E.PROTOCOL_ERROR),
    "6.4-rst-on-idle-stream": (raw_frame(3, 0, 1, b"\0\0\0\x08"), None, E.PROTOCOL_ERROR),
    "6.4-rst-wrong-length": (headers(1, flags=("END_HEADERS",))
                             + raw_frame(3, 0, 1, b"\0\0\0\x08\0"), None, E.FRAME_SIZE_ERROR),
    # §6.5: SETTINGS on a stream, ACK with a payload, a length not a multiple of 6, bad values.
    "6.5-settings-on-stream": (raw_frame(4, 0, 1, b""), None, E.PROTOCOL_ERROR),
    "6.5-settings-ack-with-payload": (raw_frame(4, 1, 0, b"\0\x03\0\0\0\x10"), None,
                                      E.FRAME_SIZE_ERROR),
    "6.5-settings-bad-length": (raw_frame(4, 0, 0, b"\0\x03\0\0\0"), None, E.FRAME_SIZE_ERROR),
    "6.5.2-enable-push-2": (raw_frame(4, 0, 0, b"\0\x02\0\0\0\x02"), None, E.PROTOCOL_ERROR),
    "6.5.2-initial-window-too-large": (raw_frame(4, 0, 0, b"\0\x04\x80\0\0\0"), None,
                                       E.FLOW_CONTROL_ERROR),
    "6.5.2-max-frame-size-too-small": (raw_frame(4, 0, 0, b"\0\x05\0\0\x3f\xff"), None,
                                       E.PROTOCOL_ERROR),
    "6.5.2-max-frame-size-too-large": (raw_frame(4, 0, 0, b"\0\x05\x01\0\0\0"), None,
                                       E.PROTOCOL_ERROR),
    # §6.7: PING on a stream, of the wrong length.
    "6.7-ping-on-stream": (raw_frame(6, 0, 1, b"12345678"), None, E.PROTOCOL_ERROR),
    "6.7-ping-wrong-length": (raw_frame(6, 0, 0, b"123456789"), None, E.FRAME_SIZE_ERROR),
    # §6.8: GOAWAY on a stream.
    "6.8-goaway-on-stream": (raw_frame(7, 0, 1, b"\0\0\0\0\0\0\0\0"), None, E.PROTOCOL_ERROR),
    # §6.9: a zero increment for the connection, a window past 2^31-1, a wrong length.
    "6.9-window-update-zero": (raw_frame(8, 0, 0, b"\0\0\0\0"), None, E.PROTOCOL_ERROR),
    "6.9.1-window-overflow": (raw_frame(8, 0, 0, b"\x7f\xff\xff\xff"), None,
                              E.FLOW_CONTROL_ERROR),
    "6.9-window-update-wrong-length": (raw_frame(8, 0, 0, b"\0\0\0\x01\0"), None,
                                       E.FRAME_SIZE_ERROR),
    # §6.10: CONTINUATION without HEADERS, or another frame between HEADERS and it.
    "6.10-continuation-alone": (raw_frame(9, 4, 1, b"\x82"), None, E.PROTOCOL_ERROR),
    "6.10-interleaved-continuation": (raw_frame(1, 1, 1, b"\x82\x87") + raw_frame(6, 0, 0, b"1"*8)
                                      + raw_frame(9, 4, 1, b"\x84"), None, E.PROTOCOL_ERROR),
    # RFC 7541 §2.3.3, §4.2, §6.3: indexes out of range, a table size update beyond the
    # setting, or not at the start of the block.
    "7541-2.3.3-index-0": (raw_frame(1, 5, 1, b"\x80"), None, E.COMPRESSION_ERROR),
    "7541-2.3.3-index-beyond-table": (raw_frame(1, 5, 1, b"\xff\x80\x01"), None,
                                      E.COMPRESSION_ERROR),
    "7541-4.2-table-size-beyond-setting": (raw_frame(1, 5, 1, b"\x3f\xe1\xff\x03\x82"), None,
                                           E.COMPRESSION_ERROR),
    "7541-6.3-table-size-update-late": (raw_frame(1, 5, 1, b"\x82\x20\x87\x84"), None,
                                        E.COMPRESSION_ERROR),
    "7541-5.2-bad-huffman-padding": (raw_frame(1, 5, 1, b"\x82\x87\x84\x41\x81\x00"), None,
                                     E.COMPRESSION_ERROR),
}


@pytest.mark.parametrize("case", list(CONNECTION_ERRORS))
def test_connection_errors(env, case):
    proxy = env[0]
    data, preface, code = CONNECTION_ERRORS[case]
    (kind, got), sock = probe(proxy.port, data, preface)
    sock.close()
    if case.startswith("3.4"):  # §3.4: a connection error; GOAWAY MAY be left out
        assert kind in ("goaway", "closed") and got in (code, None), (kind, got)
    else:
        assert (kind, got) == ("goaway", code), case


def bad_request(fields: list) -> bytes:
    return headers(1, fields)


STREAM_ERRORS = {
    # §8.2.1: field names are lowercase.
    "8.2.1-uppercase-name": GET + [(b"X-Upper", b"1")],
    # §8.2.1: no CR, LF, NUL in a value.
    "8.2.1-lf-in-value": GET + [(b"x-a", b"a\nb")],
    "8.2.1-nul-in-value": GET + [(b"x-a", b"a\0b")],
    # §8.2.2: connection-specific fields, and te other than trailers.
    "8.2.2-connection": GET + [(b"connection", b"keep-alive")],
    "8.2.2-keep-alive": GET + [(b"keep-alive", b"timeout=5")],
    "8.2.2-proxy-connection": GET + [(b"proxy-connection", b"keep-alive")],
    "8.2.2-transfer-encoding": GET + [(b"transfer-encoding", b"chunked")],
    "8.2.2-upgrade": GET + [(b"upgrade", b"websocket")],
    "8.2.2-te-gzip": GET + [(b"te", b"gzip")],
    # §8.3: pseudo-header fields: known ones, once, before the others.
    "8.3-unknown-pseudo": GET + [(b":foo", b"x")],
    "8.3-response-pseudo-in-request": GET + [(b":status", b"200")],
    "8.3-pseudo-after-regular": GET[:3] + [(b"x-a", b"1"), GET[3]],
    "8.3-duplicate-path": GET + [(b":path", b"/again")],
    # §8.3.1: :method, :scheme and a non-empty :path are required.
    "8.3.1-no-method": GET[1:],
    "8.3.1-no-scheme": [GET[0], GET[2], GET[3]],
    "8.3.1-no-path": GET[:3],
    "8.3.1-empty-path": GET[:3] + [(b":path", b"")],
    "8.3.1-relative-path": GET[:3] + [(b":path", b"x")],
    # §8.5: CONNECT carries :authority only.
    "8.5-connect-with-path": [(b":method", b"CONNECT"), (b":authority", b"a.test:443"),
                              (b":path", b"/")],
}


@pytest.mark.parametrize("case", list(STREAM_ERRORS))
def test_malformed_requests_are_stream_errors(env, case):
    """§8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR; it never
    reaches the origin, and the connection goes on serving."""
    proxy = env[0]
    (kind, got), sock = probe(proxy.port, bad_request(STREAM_ERRORS[case]), timeout=2)
    sock.close()
    assert (kind, got) == ("rst", E.PROTOCOL_ERROR), case


def test_8_1_pseudo_header_in_trailers(env):
    """§8.1: trailers carry no pseudo-header field."""
    proxy = env[0]
    encoder = hpack.Encoder()
    data = headers(1, GET[:1] + [(b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")],
                   flags=("END_HEADERS",), encoder=encoder)
    data += frame(DataFrame, 1, data=b"abc")
    data += headers(1, [(b":path", b"/x")], encoder=encoder)
    (kind, got), sock = probe(proxy.port, data, timeout=2)
    sock.close()
    assert kind in ("rst", "goaway") and got == E.PROTOCOL_ERROR


def test_8_1_1_content_length_larger_than_data(env):
    """§8.1.1: content-length that does not match the DATA is malformed."""
    proxy = env[0]
    data = headers(1, [(b":method", b"POST")] + GET[1:] + [(b"content-length", b"10")],
                   flags=("END_HEADERS",))
    data += frame(DataFrame, 1, ("END_STREAM",), data=b"abc")
    (kind, got), sock = probe(proxy.port, data, timeout=2)
    sock.close()
    assert kind in ("rst", "goaway") and got == E.PROTOCOL_ERROR


def test_8_1_1_content_length_smaller_than_data(env):
    proxy = env[0]
    data = headers(1, [(b":method", b"POST")] + GET[1:] + [(b"content-length", b"1")],
                   flags=("END_HEADERS",))
    data += frame(DataFrame, 1, ("END_STREAM",), data=b"abc")
    (kind, got), sock = probe(proxy.port, data, timeout=2)
    sock.close()
    assert kind in ("rst", "goaway") and got == E.PROTOCOL_ERROR


def test_5_1_headers_on_half_closed_stream(env):
    """§5.1: a frame other than WINDOW_UPDATE, PRIORITY, RST_STREAM on a stream the
    client half-closed is a stream error STREAM_CLOSED (h2 ends the connection)."""
    proxy = env[0]
    data = headers(1, GET[:3] + [(b":path", b"/x")]) + frame(DataFrame, 1, data=b"late")
    (kind, got), sock = probe(proxy.port, data, timeout=2)
    sock.close()
    assert kind in ("rst", "goaway") and got == E.STREAM_CLOSED


def test_6_3_priority_wrong_length(env):
    """§6.3: a PRIORITY frame whose length is not 5 is a stream error FRAME_SIZE_ERROR."""
    proxy = env[0]
    (kind, got), sock = probe(proxy.port, raw_frame(2, 0, 1, b"\0\0\0\0\0\0"), timeout=2)
    sock.close()
    assert kind in ("rst", "goaway") and got == E.FRAME_SIZE_ERROR


def test_4_1_unknown_frame_type_is_ignored(env):
    """§4.1, §5.5: frames of an unknown type are ignored; the request is served."""
    proxy = env[0]
    (kind, got), sock = probe(proxy.port, raw_frame(0xfa, 0, 0, b"xyz") + headers(1))
    sock.close()
    assert (kind, got) == ("answer", 200)


def test_6_5_settings_are_acknowledged_and_unknown_ones_ignored(env):
    """§6.5.3: SETTINGS is acknowledged; §6.5.2: an unknown setting is ignored."""
    proxy = env[0]
    sock = connect(proxy.port, PREFACE)
    sock.sendall(raw_frame(4, 0, 0, b"\x00\xfe\0\0\0\x01"))
    frames = read_frames(sock, 1.0)
    sock.close()
    acks = [f for f in frames if isinstance(f, SettingsFrame) and "ACK" in f.flags]
    assert len(acks) == 1
    assert not any(isinstance(f, GoAwayFrame) for f in frames)


def test_6_5_2_max_concurrent_streams_is_100(env):
    """§6.5.2: the proxy announces SETTINGS_MAX_CONCURRENT_STREAMS (100, as nginx);
    §5.1.2: a stream past it is refused (RST_STREAM REFUSED_STREAM or PROTOCOL_ERROR)."""
    proxy = env[0]
    sock = connect(proxy.port)
    frames = read_frames(sock, 0.5)
    settings = next(f for f in frames if isinstance(f, SettingsFrame) and "ACK" not in f.flags)
    assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 100
    encoder = hpack.Encoder()
    data = b"".join(headers(i, GET[:3] + [(b":path", b"/slow")], flags=("END_HEADERS",),
                            encoder=encoder) for i in range(1, 204, 2))
    sock.sendall(data)
    kind, got = outcome(read_frames(sock, 2, decisive))
    sock.close()
    # h2 makes it a connection error (GOAWAY PROTOCOL_ERROR), which §5.4.1 allows
    # in place of a stream error
    assert kind in ("rst", "goaway") and got in (E.REFUSED_STREAM, E.PROTOCOL_ERROR)


def test_6_7_ping_is_answered_with_the_same_payload(env):
    proxy = env[0]
    sock = connect(proxy.port)
    sock.sendall(frame(PingFrame, opaque_data=b"abcdefgh"))
    frames = read_frames(sock, 1.0)
    sock.close()
    pongs = [f for f in frames if isinstance(f, PingFrame) and "ACK" in f.flags]
    assert [p.opaque_data for p in pongs] == [b"abcdefgh"]


def test_6_9_stream_window_update_zero_is_a_stream_error(env):
    """§6.9: a zero increment on a stream is a stream error PROTOCOL_ERROR."""
    proxy = env[0]
    data = headers(1, GET[:3] + [(b":path", b"/x")], flags=("END_HEADERS",))
    data += raw_frame(8, 0, 1, b"\0\0\0\0")
    (kind, got), sock = probe(proxy.port, data, timeout=2)
    sock.close()
    assert kind in ("rst", "goaway") and got == E.PROTOCOL_ERROR


def test_8_2_2_te_trailers_is_allowed_and_forwarded(env):
    proxy = env[0]
    client = H2Client(proxy.port)
    try:
        reply = client.request("GET", "/te", [("te", "trailers")])
    finally:
        client.close()
    assert reply.status == 200
    assert b"te" in reply.header(b"x-got-names").split(b",")


def test_8_2_3_cookies_are_one_field_upstream(env):
    proxy = env[0]
    client = H2Client(proxy.port)
    try:
        reply = client.request("GET", "/c", [("cookie", "a=1"), ("cookie", "b=2")])
    finally:
        client.close()
    assert reply.status == 200 and reply.header(b"x-got-names") == b"cookie"


def test_after_the_errors_the_proxy_still_serves(env):
    still_serves(env[0].port)


# -- the upstream side: a misbehaving h2 origin ---------------------------------------------


def answer_with(fields: list, body: bytes = b"", trailers: list | None = None):
    def handler(conn, sock, stream_id, received):
        encoder = hpack.Encoder()
        block = encoder.encode(fields)
        end = not body and not trailers
        out = raw_frame(1, 4 | (1 if end else 0), stream_id, block)
        if body:
            out += raw_frame(0, 0 if trailers else 1, stream_id, body)
        if trailers:
            out += raw_frame(1, 5, stream_id, encoder.encode(trailers))
        # hand-built: h2's own state is bypassed, so its encoder never learns these
        sock.sendall(conn.data_to_send() + out)
    return handler


UPSTREAM_502 = {
    "8.3.2-no-status": [(b"content-length", b"0")],
    "8.3.2-bad-status": [(b":status", b"2x0")],
    "8.3.2-status-99": [(b":status", b"099")],
    "8.3-request-pseudo-in-response": [(b":status", b"200"), (b":path", b"/")],
    "8.3-pseudo-after-regular": [(b"server", b"x"), (b":status", b"200")],
    "8.2.1-uppercase-name": [(b":status", b"200"), (b"Server", b"x")],
    "8.2.1-cr-in-value": [(b":status", b"200"), (b"x-a", b"a\rb")],
    "8.2.2-connection": [(b":status", b"200"), (b"connection", b"close")],
    "8.2.2-transfer-encoding": [(b":status", b"200"), (b"transfer-encoding", b"chunked")],
}


@pytest.mark.parametrize("mode", ["fast", "flows"])
@pytest.mark.parametrize("case", list(UPSTREAM_502))
def test_malformed_responses_are_502(tmp_path, case, mode):
    """§8.1.1: a malformed response is not passed on; the client gets 502 (and the origin
    RST_STREAM PROTOCOL_ERROR)."""
    ca = TestCA(tmp_path / "ca")
    origin = RecordingH2Origin(ca, handler=answer_with(UPSTREAM_502[case]))
    proxy = ProxyProcess(*(["-q"] if mode == "fast" else []),
                         "--set", f"ssl_verify_upstream_trusted_ca={ca.ca_pem}",
                         "--mode", f"reverse:https://127.0.0.1:{origin.port}", tmp_path=tmp_path)
    try:
        client = H2Client(proxy.port)
        reply = client.request("GET", "/bad")
        client.close()
        assert reply.status == 502, (case, reply)
    finally:
        proxy.stop()
        origin.stop()


def test_upstream_side_errors(tmp_path):
    """The upstream side, one origin handler per path: a malformed trailer (§8.1) resets
    the client's stream; a body shorter than content-length (§8.1.1) too; 1xx then the
    final response (§8.1) passes; RST_STREAM from the origin is passed on as a reset."""
    ca = TestCA(tmp_path / "ca")

    def handler(conn, sock, stream_id, received):
        path = dict(received.headers)[b":path"]
        if path == b"/pseudo-trailer":
            answer_with([(b":status", b"200")], b"abc", [(b":path", b"/")])(
                conn, sock, stream_id, received)
        elif path == b"/short":
            answer_with([(b":status", b"200"), (b"content-length", b"10")], b"abc")(
                conn, sock, stream_id, received)
        elif path == b"/interim":
            conn.send_headers(stream_id, [(b":status", b"103"), (b"link", b"</a>")])
            conn.send_headers(stream_id, [(b":status", b"200"), (b"content-length", b"2")])
            send_body(conn, sock, stream_id, b"ok")
        elif path == b"/reset":
            conn.reset_stream(stream_id, E.INTERNAL_ERROR)
            sock.sendall(conn.data_to_send())
    origin = RecordingH2Origin(ca, handler=handler)
    proxy = ProxyProcess("-q", "--set", f"ssl_verify_upstream_trusted_ca={ca.ca_pem}",
                         "--mode", f"reverse:https://127.0.0.1:{origin.port}", tmp_path=tmp_path)
    try:
        for path, expect in (("/pseudo-trailer", "reset"), ("/short", "reset"),
                             ("/interim", 200), ("/reset", "reset")):
            client = H2Client(proxy.port)
            reply = client.request("GET", path)
            client.close()
            if expect == "reset":  # or 502 when the error came before the head was taken
                if reply.reset is None and reply.goaway is None:
                    assert reply.status == 502, (path, reply)
            else:
                assert reply.status == expect and reply.reset is None, (path, reply)
    finally:
        proxy.stop()
        origin.stop()
