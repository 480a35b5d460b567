"""Differential test: `fastproxy._core.HTTP1Reader` against h11, with no socket.

Requests and responses come from the grammar in tests/h1_grammar.py (valid pieces mixed with
hostile ones: CR/LF/NUL/CTLs, obs-fold, bad names, CL/TE combinations, chunked bodies with
extensions and trailers). Each message is fed whole and split at random points. The
property (`h1_grammar.check`): the split feeding gives the same result as the whole; any
head the reader accepts, h11 accepts with the same start line, fields and framing (and the
same body when the reader ends the message); a message with a piece RFC 9112 forbids is
refused with ProtocolError.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.h1_grammar import Builder, Message, check

SETTINGS = settings(max_examples=600, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def messages(draw, is_request: bool) -> Message:
    # Half the messages are valid throughout, the rest carry hostile pieces. (Odds are drawn
    # from a uniform index: hypothesis' floats and integers lean to their bounds.)
    builder = Builder(
        pick=lambda options: draw(st.sampled_from(options)),
        chance=lambda p: p > 0 and draw(st.sampled_from(range(1000))) < p * 1000,
        number=lambda lo, hi: draw(st.integers(lo, hi)),
        hostile=draw(st.sampled_from([0.0, 0.0, 0.3, 1.0])),
    )
    return builder.request() if is_request else builder.response()


cuts = st.lists(st.integers(0, 400), max_size=6)


# Known hostile (and tricky valid) messages, each checked whole and split at every byte.
KNOWN = [
    Message(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", ["NUL in value"]),
    Message(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", ["DEL in value"]),
    Message(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", ["obs-fold"]),
    Message(b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", ["bare LF"]),
    Message(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", ["bare CR"]),
    Message(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", ["double space in start line"]),
    Message(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", ["double space in start line"]),
    Message(b"GET /\r\n\r\n", ["no HTTP version"]),
    Message(b"SOURCE / ICE/1.0\r\nHost: a\r\n\r\n", ["not HTTP"]),
    Message(b"OPTIONS / RTSP/1.0\r\nHost: a\r\n\r\n", ["not HTTP"]),
    Message(b"GET / HTTP/1.1\r\nHost: a\r\nX Y: b\r\n\r\n", ["space in field name"]),
    Message(b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n", ["whitespace before colon"]),
    Message(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ["Transfer-Encoding on an HTTP/1.0 request"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\n"
            b"Content-Length: 1\r\n\r\na", ["Connection lists a framing field"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close, Transfer-Encoding\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ["Connection lists a framing field"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2"
            b"\r\n\r\na", ["Content-Length repeated with another value"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na",
            ["Content-Length not digits"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ["both Transfer-Encoding and Content-Length"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            ["request Transfer-Encoding not ending in chunked"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1;\r\na\r\n0\r\n\r\n", ["empty chunk extension"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1;a=\"b\r\na\r\n0\r\n\r\n", ["unbalanced quote in chunk extension"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"fffffffffffffffffffff\r\na\r\n0\r\n\r\n", ["chunk size overflow"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\nno colon\r\n\r\n", ["trailer without colon"]),
    Message(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1;a=b;c=\"d\\\"e\"\r\na\r\n0\r\nX-T: v\r\n\r\n", []),
    # Found by the fuzzer: a trailer the reader takes and h11 refuses (a framing field, with
    # a value that is not even a number: RFC 9110 §6.5.1, §8.6).
    Message(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
            b"Content-Length: c\r\n\r\n", [], False),
    Message(b"HTTP/1.1 099 Low\r\n\r\n", ["status < 100"], False),
    Message(b"HTTP/1.1 2000 OK\r\n\r\n", ["status not 3 digits"], False),
    Message(b"HTTP/1.1 20 OK\r\n\r\n", ["status not 3 digits"], False),
    Message(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", ["bare LF"], False),
    Message(b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", ["bare LF"], False),
    Message(b"RTSP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ["not HTTP"], False),
    Message(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", [], False),
    Message(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2;a=\"open\r\nab\r\n0\r\n\r\n", ["unbalanced quote in chunk extension"], False),
]


@pytest.mark.parametrize("msg", KNOWN, ids=[
    f"{i}-{'request' if m.is_request else 'response'}-{m.invalid[0] if m.invalid else 'agrees-with-h11'}"
    .replace(" ", "-") for i, m in enumerate(KNOWN)])
def test_known_messages(msg):
    for cut in range(len(msg.raw) + 1):
        check(msg, [cut])


@SETTINGS
@given(msg=messages(True), cuts=cuts)
def test_requests_agree_with_h11(msg, cuts):
    check(msg, cuts)


@SETTINGS
@given(msg=messages(False), cuts=cuts)
def test_responses_agree_with_h11(msg, cuts):
    check(msg, cuts)
