"""The header checks that replace h2's inbound validation (http2.py): what must never
reach an HTTP/1 head or a flow is refused."""

from __future__ import annotations

import pytest

from fastproxy.proxy.layers.http.h2fields import MalformedHeaders, check_fields, parse_request_headers

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"),
        (b":path", b"/x")]


def test_a_normal_request_splits_pseudo_and_fields():
    pseudo, fields = parse_request_headers(BASE + [(b"accept", b"*/*")])
    assert pseudo[b":path"] == b"/x" and fields == [(b"accept", b"*/*")]


def test_cookies_are_joined():
    _, fields = parse_request_headers(BASE + [(b"cookie", b"a=1"), (b"cookie", b"b=2")])
    assert fields == [(b"cookie", b"a=1; b=2")]


@pytest.mark.parametrize("headers", [
    BASE + [(b"x", b"a\r\nb")],
    BASE + [(b"x", b"a\nb")],
    BASE + [(b"x", b"a\x00b")],
    BASE + [(b"X-Upper", b"v")],
    BASE + [(b"bad name", b"v")],
    BASE + [(b"transfer-encoding: chunked", b"v")],
    [(b":method", b"GET"), (b":path", b"/a b")],
    [(b":method", b"GET"), (b":path", b"/a\r\nb")],
    [(b":method", b"G T"), (b":path", b"/")],
    [(b":path", b"/")],
    BASE + [(b"x", b"v"), (b":path", b"/late")],
    BASE + [(b":status", b"200")],
    BASE + [(b":path", b"/twice")],
])
def test_malformed_requests_are_refused(headers):
    with pytest.raises(MalformedHeaders):
        parse_request_headers(headers)


def test_response_and_trailer_fields():
    check_fields([(b":status", b"200"), (b"server", b"x")])
    with pytest.raises(MalformedHeaders):
        check_fields([(b":status", b"200"), (b"x", b"a\r\nb")])
    with pytest.raises(MalformedHeaders):
        check_fields([(b":status", b"200")], frozenset())  # no pseudo field in trailers
