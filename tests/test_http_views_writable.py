"""Request/Response views that mitmproxy lets addons change: `urlencoded_form`,
`multipart_form`, `query`, `cookies` (assigned, or changed in place). Unit level here;
tests/test_addon_examples.py drives them through the proxy with real clients."""

from __future__ import annotations

from fastproxy.http import Headers, Response
from tests.test_http import treq


def test_urlencoded_form_in_place_and_assigned():
    r = treq(headers=Headers(content_type="application/x-www-form-urlencoded"), content=b"a=1&b=2")
    form = r.urlencoded_form
    form["mitmproxy"] = "rocks"
    form["a"] = "one"
    assert r.content == b"a=one&b=2&mitmproxy=rocks"
    del r.urlencoded_form["b"]
    assert dict(r.urlencoded_form) == {"a": "one", "mitmproxy": "rocks"}
    r2 = treq(content=b"")
    assert not r2.urlencoded_form
    r2.urlencoded_form = [("foo", "bar"), ("x", "y z")]
    assert r2.headers["content-type"] == "application/x-www-form-urlencoded"
    assert r2.content == b"foo=bar&x=y+z"
    r2.urlencoded_form = {"k": "v"}
    assert r2.content == b"k=v"


def test_multipart_form():
    r = treq(content=b"")
    r.multipart_form = [(b"field", b"value"), ("name", "text")]
    ctype = r.headers["content-type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    assert r.multipart_form.fields == ((b"field", b"value"), (b"name", b"text"))
    r.multipart_form[b"field"] = b"changed"
    assert r.headers["content-type"] == ctype  # boundary kept
    assert dict(r.multipart_form) == {b"field": b"changed", b"name": b"text"}


def test_query_and_request_cookies():
    r = treq(headers=Headers(cookie="a=1; b=2"))
    r.query["mitmproxy"] = "rocks"
    assert r.path.endswith("mitmproxy=rocks")
    r.cookies["a"] = "changed"
    r.cookies.add("c", "3")
    assert r.headers["cookie"] == "a=changed; b=2; c=3"
    r.cookies = {"only": "one"}
    assert r.headers["cookie"] == "only=one"
    r.cookies = []
    assert "cookie" not in r.headers


def test_response_cookies():
    resp = Response.make(200, b"", {"set-cookie": "s=1; Path=/; HttpOnly"})
    value, attrs = resp.cookies["s"]
    assert value == "1" and attrs["Path"] == "/"
    resp.cookies["s"] = ("2", attrs)
    assert resp.headers["set-cookie"] == "s=2; Path=/; HttpOnly"
    resp.cookies["t"] = "3"
    assert resp.headers.get_all("set-cookie") == ["s=2; Path=/; HttpOnly", "t=3"]
