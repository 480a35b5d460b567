"""HTTP1Reader and build_head, fed bytes with no socket (split at random points too)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy._core import (BODY, CLOSED, END, HEAD, NEED_DATA, HTTP1Reader, ProtocolError,
                             build_head)


def drain(reader: HTTP1Reader) -> list:
    """Every event the buffered bytes give, as plain tuples (bodies merged per message)."""
    out: list = []
    for _ in range(10_000):
        event = reader.next_event()
        if event == NEED_DATA:
            return out
        if event == HEAD:
            head = reader.head
            start = (head.method, head.target) if head.method is not None else head.status_code
            out.append(("head", start, head.version, tuple(head.fields)))
        elif event == BODY:
            if out and out[-1][0] == "body":
                out[-1] = ("body", out[-1][1] + reader.chunk)
            else:
                out.append(("body", reader.chunk))
        elif event == END:
            out.append(("end",))
        elif event == CLOSED:
            out.append(("closed",))
            return out
    raise AssertionError("reader did not stop producing events")


def read(pieces, is_request=True, eof=True, decode=False, method=b"GET") -> list:
    """Feed `pieces` one after another (draining in between) and collect all events."""
    reader = HTTP1Reader(is_request)
    reader.decode = decode
    events: list = []
    for piece in pieces:
        if not is_request and reader.in_head:
            reader.expect_response_to(method)
        reader.feed(piece)
        events += drain(reader)
    if eof:
        reader.feed_eof()
        events += drain(reader)
    return merge_bodies(events)


def merge_bodies(events: list) -> list:
    out: list = []
    for event in events:
        if event[0] == "body" and out and out[-1][0] == "body":
            out[-1] = ("body", out[-1][1] + event[1])
        elif event[0] == "body" and not event[1]:
            continue  # a piece that held only chunked framing
        else:
            out.append(event)
    return out


def req_head(raw: bytes) -> HTTP1Reader:
    reader = HTTP1Reader(True)
    reader.feed(raw)
    assert reader.next_event() == HEAD
    return reader


def error_of(raw: bytes, is_request=True, method=b"GET", **kwargs) -> str:
    reader = HTTP1Reader(is_request, **kwargs)
    if not is_request:
        reader.expect_response_to(method)
    reader.feed(raw)
    reader.feed_eof()
    with pytest.raises(ProtocolError) as info:
        drain(reader)
    return str(info.value)


# -- heads -------------------------------------------------------------------------------

def test_request_head_fields_and_flags():
    reader = req_head(b"POST http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n"
                      b"Content-Length: 3\r\nConnection: Keep-Alive, X-Hop\r\nX-Hop: 1\r\n"
                      b"Expect: 100-continue\r\nX-Dup: a\r\nX-Dup: b\r\n\r\nabc")
    head = reader.head
    assert head.method == b"POST"
    assert head.target == b"http://example.com/x?y=1"
    assert head.version == b"HTTP/1.1"
    assert head.host == b"example.com"
    assert head.content_length == 3
    assert head.expect_continue and head.keep_alive and head.has_hop_headers
    assert not head.chunked and not head.upgrade
    assert head.connection == b"keep-alive, x-hop"
    assert head.fields == [(b"Host", b"example.com"), (b"Content-Length", b"3"),
                           (b"Connection", b"Keep-Alive, X-Hop"), (b"X-Hop", b"1"),
                           (b"Expect", b"100-continue"), (b"X-Dup", b"a"), (b"X-Dup", b"b")]
    assert reader.has_body


def test_response_head():
    reader = HTTP1Reader(False)
    reader.expect_response_to(b"GET")
    reader.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert reader.next_event() == HEAD
    assert (reader.head.status_code, reader.head.reason) == (404, b"Not Found")
    assert reader.head.method is None
    assert reader.next_event() == END


def test_response_without_reason():
    assert read([b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\na"], False) == [
        ("head", 200, b"HTTP/1.1", ((b"Content-Length", b"1"),)), ("body", b"a"), ("end",),
        ("closed",)]


@pytest.mark.parametrize("raw, keep_alive", [
    (b"GET / HTTP/1.1\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
])
def test_keep_alive(raw, keep_alive):
    assert req_head(raw).head.keep_alive is keep_alive


def test_upgrade_head():
    head = req_head(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\n\r\n").head
    assert head.upgrade


def test_empty_lines_before_a_request_are_ignored():
    # RFC 9112 §2.2; some clients send CRLF after a POST body.
    events = read([b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\na\r\nGET /2 HTTP/1.1\r\n\r\n"])
    assert [e[0] for e in events] == ["head", "body", "end", "head", "end", "closed"]
    assert events[3][1] == (b"GET", b"/2")


# -- bodies ------------------------------------------------------------------------------

def test_content_length_body_is_exact():
    events = read([b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n"])
    assert events[1:3] == [("body", b"hello"), ("end",)]
    assert events[3][1] == (b"GET", b"/")


def test_body_chunk_is_the_received_object_when_it_is_all_body():
    reader = HTTP1Reader(True)
    reader.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
    assert reader.next_event() == HEAD
    data = b"0123456789"
    reader.feed(data)
    assert reader.next_event() == BODY
    assert reader.chunk is data
    assert reader.next_event() == END


CHUNKED = (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value\r\nhello\r\n"
           b"6 ; ext\r\n world\r\n"
           b"A\r\n0123456789\r\n"
           b"0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n")
CHUNKED_BODY = CHUNKED[CHUNKED.index(b"\r\n\r\n") + 4:]


def test_chunked_raw_keeps_the_wire_bytes():
    events = read([CHUNKED + b"GET /next HTTP/1.1\r\n\r\n"])
    assert events[1] == ("body", CHUNKED_BODY)
    assert events[2] == ("end",)
    assert events[3][1] == (b"GET", b"/next")


def test_chunked_decoded_removes_framing_extensions_and_trailers():
    events = read([CHUNKED], decode=True)
    assert events[1:] == [("body", b"hello world0123456789"), ("end",), ("closed",)]


def test_chunked_response():
    events = read([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
                  False, decode=True)
    assert events[1:] == [("body", b"abc"), ("end",), ("closed",)]


def test_close_delimited_response():
    reader = HTTP1Reader(False)
    reader.expect_response_to(b"GET")
    reader.feed(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert reader.next_event() == HEAD
    assert reader.body_is_close_delimited
    assert drain(reader) == [("body", b"some")]
    reader.feed(b" more")
    assert drain(reader) == [("body", b" more")]
    reader.feed_eof()
    assert reader.at_eof
    assert drain(reader) == [("end",), ("closed",)]


def test_non_chunked_transfer_coding_response_is_close_delimited():
    events = read([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc"], False)
    assert events[1:] == [("body", b"abc"), ("end",), ("closed",)]


@pytest.mark.parametrize("method, status", [
    (b"HEAD", b"200 OK"), (b"GET", b"204 No Content"), (b"GET", b"304 Not Modified"),
    (b"CONNECT", b"200 Connection established"), (b"GET", b"101 Switching Protocols"),
    (b"GET", b"100 Continue"), (b"GET", b"103 Early Hints"),
])
def test_responses_without_body(method, status):
    reader = HTTP1Reader(False)
    reader.expect_response_to(method)
    reader.feed(b"HTTP/1.1 " + status + b"\r\nContent-Length: 10\r\n\r\n")
    assert reader.next_event() == HEAD
    assert not reader.has_body
    assert reader.next_event() == END
    assert reader.next_event() == NEED_DATA


def test_interim_response_then_final():
    events = read([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
                  False)
    assert [e[0] for e in events] == ["head", "end", "head", "body", "end", "closed"]
    assert events[2][1] == 200 and events[3] == ("body", b"ok")


def test_connect_tunnel_bytes_are_left_for_take_rest():
    reader = HTTP1Reader(False)
    reader.expect_response_to(b"CONNECT")
    reader.feed(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01rest")
    assert reader.next_event() == HEAD
    assert reader.next_event() == END
    assert reader.take_rest() == b"\x16\x03\x01rest"


def test_request_without_body():
    events = read([b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"])
    assert [e[0] for e in events] == ["head", "end", "closed"]


# -- pipelining and keep-alive -----------------------------------------------------------

PIPELINE = (b"GET /first-request-with-a-long-target HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
            b"GET /4 HTTP/1.1\r\nHost: a\r\n\r\n")


def test_pipelined_requests_in_order():
    events = read([PIPELINE])
    heads = [e[1] for e in events if e[0] == "head"]
    assert heads == [(b"GET", b"/first-request-with-a-long-target"), (b"POST", b"/2"),
                     (b"POST", b"/3"), (b"GET", b"/4")]
    assert [e[1] for e in events if e[0] == "body"] == [b"abc", b"1\r\nx\r\n0\r\n\r\n"]
    assert events[-1] == ("closed",)


def test_keep_alive_second_shorter_head_in_a_new_buffer():
    # A head that used up the whole buffer, then a shorter one in a fresh buffer.
    reader = HTTP1Reader(True)
    reader.feed(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [e[0] for e in drain(reader)] == ["head", "end"]
    reader.feed(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    events = drain(reader)
    assert [e[0] for e in events] == ["head", "end"]
    assert events[0][1] == (b"GET", b"/b")


def test_keep_alive_responses_on_one_reader():
    reader = HTTP1Reader(False)
    for i in range(3):
        reader.expect_response_to(b"GET")
        reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")
        assert reader.next_event() == HEAD, i
        reader.feed(b"%d" % i)
        assert reader.next_event() == BODY and reader.chunk == b"%d" % i
        assert reader.next_event() == END
        assert reader.at_message_start


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(PIPELINE)), max_size=12))
def test_pipelined_requests_split_anywhere(cuts):
    points = sorted(set(cuts))
    pieces = [PIPELINE[a:b] for a, b in zip([0] + points, points + [len(PIPELINE)])]
    assert read([p for p in pieces if p]) == read([PIPELINE])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(CHUNKED)), max_size=12), st.booleans())
def test_chunked_split_anywhere(cuts, decode):
    points = sorted(set(cuts))
    pieces = [CHUNKED[a:b] for a, b in zip([0] + points, points + [len(CHUNKED)])]
    assert read([p for p in pieces if p], decode=decode) == read([CHUNKED], decode=decode)


RESPONSES = (b"HTTP/1.1 100 Continue\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody"
             b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nab\r\n0\r\nT: 1\r\n\r\n"
             b"HTTP/1.1 204 No Content\r\n\r\n"
             b"HTTP/1.0 200 OK\r\n\r\nuntil close")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(RESPONSES)), max_size=12))
def test_responses_split_anywhere(cuts):
    points = sorted(set(cuts))
    pieces = [RESPONSES[a:b] for a, b in zip([0] + points, points + [len(RESPONSES)])]
    events = read([p for p in pieces if p], False, decode=True)
    assert [e[1] for e in events if e[0] == "head"] == [100, 200, 200, 204, 200]
    assert [e[1] for e in events if e[0] == "body"] == [b"body", b"ab", b"until close"]
    assert events[-2:] == [("end",), ("closed",)]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=64))
def test_content_length_body_of_any_bytes_in_any_pieces(body, size):
    raw = b"PUT /u HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    pieces = [raw[i:i + size] for i in range(0, len(raw), size)]
    expected = [("body", body)] if body else []
    assert read(pieces)[1:] == expected + [("end",), ("closed",)]


# -- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, message", [
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
     "Content-Length"),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     "Content-Length"),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde", "Content-Length"),
    (b"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n", ""),
    (b"POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n", ""),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", "Transfer-Encoding"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "Transfer-Encoding"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Host"),
    (b"GET / HTTP/2.0\r\n\r\n", "version"),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", ""),
    (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", ""),
    (b"GET\r\n\r\n", ""),
    (b"G\x00T / HTTP/1.1\r\n\r\n", ""),
    (b"GET / HTTP/1.1\r\nHost: a\r\n", "closed"),
])
def test_bad_request_heads(raw, message):
    assert message in error_of(raw)


@pytest.mark.parametrize("body, message", [
    (b"zz\r\n", "chunk size"),
    (b"-5\r\nhello\r\n0\r\n\r\n", "chunk size"),
    (b"0x5\r\nhello\r\n0\r\n\r\n", "chunk size"),
    (b"5 junk\r\nhello\r\n0\r\n\r\n", "chunk size"),
    (b"\r\nhello\r\n0\r\n\r\n", "chunk size"),
    (b"1000000000000000\r\n", "too large"),
    (b"5\nhello\r\n0\r\n\r\n", "chunk size"),
    (b"5;ext\nhello\r\n0\r\n\r\n", "LF"),
    (b"5\rhello\r\n0\r\n\r\n", "LF"),
    (b"5\r\nhelloXX0\r\n\r\n", "CRLF"),
    (b"5\r\nhello\r\n0\r\n\n", "LF"),
    (b"5\r\nhello\r\n0\r\nT: 1\n\r\n", "LF"),
    (b"5\r\nhel", "closed"),
])
def test_bad_chunked_bodies(body, message):
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    assert message in error_of(raw)


def test_oversize_head():
    big = b"GET / HTTP/1.1\r\nX: " + b"a" * 2000 + b"\r\n\r\n"
    assert "larger" in error_of(big, max_head_size=1000)
    reader = HTTP1Reader(True, 1000)
    reader.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 2000)  # no end of head in sight yet
    with pytest.raises(ProtocolError, match="larger"):
        reader.next_event()


def test_too_many_headers():
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(11))
    assert "more than 10" in error_of(b"GET / HTTP/1.1\r\n" + fields + b"\r\n", max_headers=10)
    reader = req_head(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")  # default limit: fine
    assert len(reader.head.fields) == 11


def test_bad_responses():
    assert "status" in error_of(b"HTTP/1.1 20 X\r\n\r\n", False).lower()
    assert "Content-Length" in error_of(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", False)
    assert "closed" in error_of(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", False)


def test_closed_between_messages_is_clean():
    assert read([b"GET / HTTP/1.1\r\n\r\n"]) == [
        ("head", (b"GET", b"/"), b"HTTP/1.1", ()), ("end",), ("closed",)]
    assert read([]) == [("closed",)]


def test_reader_after_error_in_one_reader_does_not_affect_another():
    with pytest.raises(ProtocolError):
        r = HTTP1Reader(True)
        r.feed(b"GARBAGE\r\n\r\n")
        r.next_event()
    assert read([b"GET / HTTP/1.1\r\n\r\n"])[0][1] == (b"GET", b"/")


# -- build_head --------------------------------------------------------------------------

def test_build_head_drops_and_adds():
    out = build_head(b"GET / HTTP/1.1", [(b"Host", b"h"), (b"Connection", b"close"),
                                          (b"X-A", b"1")],
                     frozenset({b"connection"}), [(b"Content-Length", b"0")])
    assert out == b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"
    assert build_head(b"HTTP/1.1 200 OK", [], None, None) == b"HTTP/1.1 200 OK\r\n\r\n"


@pytest.mark.parametrize("trailer", [b"Content-Length: 50", b"transfer-encoding: chunked",
                                     b"HOST: elsewhere", b"Connection: close"])
def test_framing_and_routing_fields_are_refused_in_trailers(trailer):
    """RFC 9110 §6.5.1: a next hop merging trailers into the head would see them there."""
    raw = (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
           + trailer + b"\r\n\r\n")
    assert "trailer section" in error_of(raw)


def test_other_trailers_pass():
    raw = (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
           b"X-Checksum: abc\r\nContent-Lengthy: 1\r\n\r\n")
    events = read([raw])
    assert events[-1] == ("end",) or events[-2] == ("end",)
