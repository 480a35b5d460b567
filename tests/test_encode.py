"""The writer's C encoder (fastproxy.io._encode) writes what the Python encoder writes for
the state `flowstate.exchange_state` builds: byte for byte, for every shape of exchange."""

from __future__ import annotations

import uuid

import pytest

from fastproxy.io import tnetstring
from fastproxy.io._encode import FlowBuffer
from fastproxy.io.flowstate import exchange_state

CLIENT = tnetstring.dumps({"id": "c", "peername": ("127.0.0.1", 1), "tls": False})
SERVER = tnetstring.dumps({"id": "s", "address": ("example.com", 80), "sni": None})
FIELDS = [(b"Host", b"example.com"), (b"X-A", b"1")]
# Heads as `Capture` hands them over (`Head.raw`): the encoder splits them itself.
RAW_GET = b"GET /p?q=1 HTTP/1.1\r\nX-A: \t1 \r\nhOsT:example.com\r\n\r\n"
RAW_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Empty:\r\n\r\n"


def exchange(**changes):
    """A captured exchange tuple (`Capture.data`), with ``changes`` by field name."""
    names = ("t_start method scheme host port authority path version fields host_header "
             "req_body req_size req_chunked t_req_end resp_version status reason "
             "resp_fields t_resp_start resp_body resp_size resp_chunked t_resp_end error "
             "t_error").split()
    values = dict(zip(names, (
        1700000000.123456, b"GET", "http", "example.com", 80, b"example.com", b"/p?q=1",
        b"HTTP/1.1", FIELDS, None, b"", 0, False, 1700000000.123456,
        b"HTTP/1.1", 200, b"OK", [(b"Content-Length", b"5")], 1700000000.2, b"hello", 5,
        False, 1700000000.25, None, 1700000000.3)))
    values.update(changes)
    return tuple(values[name] for name in names)


def expected(data, written: bytes, limit=None) -> bytes:
    state = exchange_state(data, tnetstring.Encoded(CLIENT), tnetstring.Encoded(SERVER), limit)
    state["id"] = tnetstring.loads(written)["id"]
    return tnetstring.dumps(state)


CASES = {
    "get": exchange(),
    "reverse host replaced": exchange(host_header="127.0.0.1:8080"),
    "reverse host added": exchange(host_header="h", fields=[(b"X-A", b"1")]),
    "host any case": exchange(host_header="h", fields=[(b"hOsT", b"a"), (b"HOST", b"b")]),
    "no response": exchange(status=None, resp_version=None, reason=None, resp_fields=None,
                            t_resp_start=None, resp_body=None, resp_size=None,
                            resp_chunked=None, t_resp_end=None, error="cannot connect"),
    "cut short": exchange(resp_body=None, resp_size=0, t_resp_end=None, error="closed ü"),
    "request unfinished": exchange(req_body=None, t_req_end=None, error="gone"),
    "chunked": exchange(method=b"POST", req_body=b"3\r\nabc\r\n0\r\n\r\n", req_size=3,
                        req_chunked=True, t_req_end=1700000000.5,
                        resp_body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", resp_size=11,
                        resp_chunked=True),
    "big body": exchange(resp_body=b"x" * 123456, resp_size=123456),
    "non-ascii host": exchange(host="bücher.example\udcff", port=65535),
    "odd floats": exchange(t_start=0.1, t_req_end=1e22, t_resp_start=1.0, t_resp_end=5e-324),
    "many fields": exchange(resp_fields=[(b"X-%d" % i, b"v" * i) for i in range(300)]),
    "empty values": exchange(fields=[(b"", b"")], reason=b"", path=b"", authority=b""),
    "raw heads": exchange(fields=RAW_GET, resp_fields=RAW_OK),
    "raw heads, host replaced": exchange(fields=RAW_GET, resp_fields=RAW_OK, host_header="h:1"),
    "raw head without host": exchange(fields=b"GET / HTTP/1.0\r\nX-A: 1\r\n\r\n",
                                      host_header="h"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_exchange_encodes_as_its_state(name):
    data = CASES[name]
    buffer = FlowBuffer()
    assert buffer.exchange(data, CLIENT, SERVER, None) is True
    written = buffer.take()
    assert written == expected(data, written)
    assert len(buffer) == 0 and buffer.take() == b""


def test_one_buffer_encodes_every_case_in_turn():
    """Header lists are encoded once and then taken from a cache: the same lists with
    another Host rewrite, or none, must not get the cached encoding of the other."""
    buffer = FlowBuffer()
    for data in [*CASES.values(), *CASES.values()]:
        assert buffer.exchange(data, CLIENT, SERVER, None) is True
        written = buffer.take()
        assert written == expected(data, written)


def test_records_follow_each_other_and_ids_are_uuid4():
    buffer = FlowBuffer()
    for _ in range(600):  # past one pool of random bytes
        buffer.exchange(CASES["get"], CLIENT, SERVER, None)
    buffer.append(b"0:~")
    data, ids = buffer.take(), set()
    while data != b"0:~":
        state, data = tnetstring.pop(data)
        parsed = uuid.UUID(state["id"])
        assert str(parsed) == state["id"] and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        ids.add(state["id"])
    assert len(ids) == 600


def test_over_the_limit_is_left_to_the_caller():
    buffer = FlowBuffer()
    assert buffer.exchange(CASES["get"], CLIENT, SERVER, 4) is False
    assert buffer.exchange(CASES["get"], CLIENT, SERVER, 5) is True
    assert len(buffer) > 0


@pytest.mark.parametrize("bad", [exchange()[:-1], exchange(fields=[(b"a",)]),
                                 exchange(fields=[[b"a", b"b"]]), exchange(path="str"),
                                 exchange(t_resp_end="x"), exchange(resp_fields=None),
                                 exchange(fields=b"GET / HTTP/1.1")])
def test_a_bad_exchange_raises_and_leaves_no_torn_record(bad):
    buffer = FlowBuffer()
    buffer.exchange(CASES["get"], CLIENT, SERVER, None)
    before = len(buffer)
    with pytest.raises((TypeError, ValueError)):
        buffer.exchange(bad, CLIENT, SERVER, None)
    assert len(buffer) == before
    tnetstring.loads(buffer.take())


def test_floats_are_encoded_as_repr_writes_them():
    """Timestamps take an integer fast path; it must agree with repr() (dtoa) always."""
    import random
    import struct
    import time

    from fastproxy.io._encode import _float_leaf
    rng = random.Random(1)
    now = time.time()
    values = [now + rng.random() * 1000 for _ in range(20000)]
    values += [rng.uniform(1, 2 ** 53) for _ in range(5000)]
    values += [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
               for _ in range(5000)]
    values += [1.0, 2.0 ** 52, 2.0 ** 53, 2.0 ** 53 - 1, 0.1, 1e16, 1e-5, 0.5, 1.5,
               9007199254740991.5, 1700000000.0, 4503599627370497.5, -0.0, float("inf")]
    values += [float(i) + j / 1000 for i in range(1, 50) for j in range(1000)]
    for value in values:
        assert _float_leaf(value) == tnetstring.dumps(value), value
    assert _float_leaf(None) == b"0:~"


def test_capture_keeps_a_body_within_the_limit_in_itself():
    """A response with a Content-Length within the limit needs no tee: the capture takes
    the pieces (however many) and `record` joins them; others get a tee."""
    from types import SimpleNamespace

    from fastproxy._core import HTTP1Reader, Route
    from fastproxy.io import capture
    from fastproxy.io._handover import Capture

    def parsed(head: bytes, is_request: bool):
        reader = HTTP1Reader(is_request)
        if not is_request:
            reader.expect_response_to(b"GET")
        reader.feed(head)
        reader.next_event()
        return reader.head

    handed = []
    ctx = SimpleNamespace(options=SimpleNamespace(save_body_limit=100), client_conn=None,
                          server_conn=None, listeners=SimpleNamespace(
                              record_exchange=(lambda c, s, data: handed.append(data),)))
    request = parsed(b"GET / HTTP/1.1\r\n\r\n", True)
    route = Route("http", "h", 80, b"h", b"/", b"GET / HTTP/1.1", frozenset(), None, None)
    for length, pieces in [(12, [b"abcd", b"efgh", b"ijkl"]), (5, [b"hello"]), (0, []),
                           (200, [b"x" * 150, b"y" * 50])]:
        exchange = SimpleNamespace(ctx=ctx, head=request, route=route, rec=None,
                                   request_body_done=True)
        exchange.rec = Capture.start(exchange, capture.tee)
        response = parsed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length, False)
        tee = exchange.rec.response_started(response, 100, capture.tee)
        assert (tee is exchange.rec) == (length <= 100)
        for piece in pieces:
            tee.add(piece)
        exchange.rec.record(exchange)
        data = handed.pop()
        body, size = data[19], data[20]
        assert size == length and body == b"".join(pieces)[:100]


def test_a_view_of_the_buffer_is_its_bytes_and_pins_it():
    """The recorder writes packed exchanges from a view of the buffer: the view shows what
    was appended, and while it is held the buffer neither grows nor empties."""
    buffer = FlowBuffer()
    buffer.append(b"4:abcd,")
    with memoryview(buffer) as view:
        assert view.readonly and bytes(view) == b"4:abcd,"
        with pytest.raises(BufferError):
            buffer.append(b"x" * 100_000)  # would move the memory the view shows
        with pytest.raises(BufferError):
            buffer.clear()
    buffer.clear()
    assert len(buffer) == 0 and buffer.take() == b""


def test_head_fields_splits_a_raw_head_as_the_parser_did():
    """The encoder splits a head it is handed raw with the parser's own code: the same
    fields as `Head.fields`, whatever the whitespace."""
    from fastproxy._core import HTTP1Reader, head_fields

    for raw, is_request in [(RAW_GET, True), (RAW_OK, False),
                            (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %d\r\n" % (i, i)
                                                              for i in range(150)) + b"\r\n",
                             True)]:
        reader = HTTP1Reader(is_request, max_headers=200)
        reader.feed(raw)
        reader.next_event()
        assert reader.head.raw == raw
        assert head_fields(raw) == reader.head.fields
    with pytest.raises(ValueError):
        head_fields(b"GET / HTTP/1.1\r\n")
