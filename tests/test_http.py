"""Headers, Request, Response and HTTPFlow: semantics, wire bytes and mitmproxy's state."""

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastproxy.connection import Client, Server
from fastproxy.flow import FLOW_FORMAT_VERSION, Flow
from fastproxy.http import Headers, HTTPFlow, Request, Response

# -- Headers ---------------------------------------------------------------------------


def sample() -> Headers:
    return Headers([(b"Host", b"example.com"), (b"Accept", b"text/html"),
                    (b"X-A", b"1"), (b"accept", b"application/xml")])


def test_headers_keep_the_given_list() -> None:
    fields = [(b"Host", b"example.com")]
    assert Headers(fields).fields is fields


def test_lookup_is_case_insensitive_and_folds() -> None:
    h = sample()
    assert h["HOST"] == h[b"host"] == "example.com"
    assert h["Accept"] == "text/html, application/xml"
    assert h.get_all("ACCEPT") == ["text/html", "application/xml"]
    assert h.get("missing") is None and h.get("missing", "d") == "d"
    assert "aCCept" in h and b"x-a" in h and "nope" not in h and 3 not in h
    with pytest.raises(KeyError):
        h["nope"]


def test_iteration_yields_unique_names_in_first_spelling() -> None:
    h = sample()
    assert list(h) == ["Host", "Accept", "X-A"]
    assert len(h) == 3
    assert list(h.keys()) == ["Host", "Accept", "X-A"]
    assert h.keys(multi=True) == ["Host", "Accept", "X-A", "accept"]
    assert list(h.items()) == [("Host", "example.com"),
                               ("Accept", "text/html, application/xml"), ("X-A", "1")]
    assert h.items(multi=True)[-1] == ("accept", "application/xml")
    assert h.values(multi=True) == ["example.com", "text/html", "1", "application/xml"]


def test_setitem_replaces_all_values_in_place() -> None:
    h = sample()
    h["ACCEPT"] = "*/*"
    assert list(h.fields) == [(b"Host", b"example.com"), (b"Accept", b"*/*"), (b"X-A", b"1")]
    h["New"] = "v"
    assert h.fields[-1] == (b"New", b"v")


def test_set_all_add_insert_delete() -> None:
    h = sample()
    h.set_all("accept", ["a", "b", "c"])
    assert h.get_all("accept") == ["a", "b", "c"]
    assert [k for k, _ in h.fields] == [b"Host", b"Accept", b"X-A", b"accept", b"accept"]
    h.add("Set-Cookie", "x=1")
    h.add("set-cookie", b"y=2")
    assert h.get_all("SET-COOKIE") == ["x=1", "y=2"]
    h.insert(0, "First", "0")
    assert h.fields[0] == (b"First", b"0")
    del h["accept"]
    assert "accept" not in h and h.get_all("Accept") == []
    with pytest.raises(KeyError):
        del h["accept"]
    assert h.pop("first") == "0" and "first" not in h


def test_str_is_encoded_with_surrogateescape() -> None:
    h = Headers()
    h["X-Raw"] = b"\xff\xfe".decode("utf-8", "surrogateescape")
    assert h.fields == [(b"X-Raw", b"\xff\xfe")]
    assert Headers([(b"X", b"caf\xc3\xa9")])["x"] == "café"


def test_kwargs_turn_underscores_into_dashes() -> None:
    h = Headers(content_type="text/plain", x_forwarded_for=b"1.2.3.4")
    assert list(h.fields) == [(b"content-type", b"text/plain"), (b"x-forwarded-for", b"1.2.3.4")]
    assert Headers([(b"A", b"1")], a="2").fields == [(b"A", b"2")]


@pytest.mark.parametrize("name, value", [("X", "a\r\nEvil: 1"), ("X", "a\nb"), ("X", "\0"),
                                          ("Bad Name", "v"), ("Bad:Name", "v"), ("", "v")])
def test_mutators_refuse_fields_that_would_split(name: str, value: str) -> None:
    h = Headers()
    with pytest.raises(ValueError):
        h[name] = value
    with pytest.raises(ValueError):
        h.add(name, value)
    assert h.fields == ()


def test_fields_assignment_resets_the_index() -> None:
    h = sample()
    assert h["host"] == "example.com"
    h.fields = [(b"HOST", b"other")]
    assert h["host"] == "other" and len(h) == 1


def test_equality_copy_repr() -> None:
    h = sample()
    assert h == Headers(tuple(sample().fields)) and h != Headers()
    assert h != {"Host": "example.com"}
    c = h.copy()
    c["Host"] = "changed"
    assert h["Host"] == "example.com" and c != h
    assert repr(Headers([(b"A", b"1")])) == "Headers[(b'A', b'1')]"


def test_to_wire() -> None:
    assert sample().to_wire() == (b"Host: example.com\r\nAccept: text/html\r\n"
                                  b"X-A: 1\r\naccept: application/xml\r\n")
    assert bytes(Headers([(b"A", b"1")])) == b"A: 1\r\n"
    assert Headers().to_wire() == b""


def test_headers_state_is_a_tuple_of_byte_pairs() -> None:
    state = sample().get_state()
    assert state == ((b"Host", b"example.com"), (b"Accept", b"text/html"),
                     (b"X-A", b"1"), (b"accept", b"application/xml"))
    # Flow files give lists back.
    assert Headers.from_state([list(f) for f in state]) == sample()


names = st.text("abcXYZ-", min_size=1, max_size=4)
values = st.text(st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
                 max_size=8)


@given(ops=st.lists(st.tuples(st.sampled_from(["set", "add", "del"]), names, values)))
def test_headers_match_a_simple_model(ops: list[tuple[str, str, str]]) -> None:
    """Against a list of (name, value) pairs searched case-insensitively."""
    h, model = Headers(), []
    for op, name, value in ops:
        low = name.lower()
        if op == "add":
            h.add(name, value)
            model.append((name, value))
        elif op == "del" and any(n.lower() == low for n, _ in model):
            del h[name]
            model = [(n, v) for n, v in model if n.lower() != low]
        elif op == "set":
            h[name] = value
            at = [i for i, (n, _) in enumerate(model) if n.lower() == low]
            if at:
                model[at[0]] = (model[at[0]][0], value)
                model = [f for i, f in enumerate(model) if i not in at[1:]]
            else:
                model.append((name, value))
        assert h.items(multi=True) == model
        for n in {n.lower() for n, _ in model}:
            assert h[n] == ", ".join(v for m, v in model if m.lower() == n)
    assert h.to_wire() == b"".join(f"{n}: {v}\r\n".encode() for n, v in model)


# -- Request ---------------------------------------------------------------------------


def treq(**kwargs) -> Request:
    args = dict(host="example.com", port=80, method=b"GET", scheme=b"http", authority=b"",
                path=b"/a/b?x=1&y=2", http_version=b"HTTP/1.1",
                headers=Headers([(b"Host", b"example.com"), (b"Accept", b"*/*")]),
                content=b"", trailers=None, timestamp_start=1.0, timestamp_end=2.0)
    args.update(kwargs)
    return Request(**args)


def test_request_properties_are_str() -> None:
    r = treq(method=b"get")
    assert (r.method, r.scheme, r.host, r.port, r.path) == ("GET", "http", "example.com", 80, "/a/b?x=1&y=2")
    assert (r.authority, r.http_version, r.first_line_format) == ("", "HTTP/1.1", "relative")
    assert r.is_http11 and not r.is_http10 and not r.is_http2
    assert r.stream is False
    assert repr(r) == "Request(GET example.com:80/a/b?x=1&y=2)"


def test_request_setters() -> None:
    r = treq()
    r.method, r.scheme, r.path, r.http_version = "POST", "https", "/p", "HTTP/1.0"
    assert (r._method, r._scheme, r._path, r.is_http10) == (b"POST", b"https", b"/p", True)
    for attr in ("method", "path", "scheme"):
        with pytest.raises(ValueError):
            setattr(r, attr, "a b\r\n")
    with pytest.raises(ValueError):
        r.port = "80"


def test_host_and_port_update_host_header_and_authority() -> None:
    r = treq(authority=b"example.com")
    r.host = "other.org"
    assert r.headers["Host"] == "other.org" and r.authority == "other.org"
    r.port = 8080
    assert r.headers["Host"] == "other.org:8080" and r._authority == b"other.org:8080"
    bare = treq(headers=Headers())
    bare.host = "x.org"
    assert "Host" not in bare.headers and bare.authority == ""


def test_url_round_trip() -> None:
    r = treq()
    assert r.url == "http://example.com/a/b?x=1&y=2"
    r.url = "https://Example.org:8443/new/path?q=1"
    assert (r.scheme, r.host, r.port, r.path) == ("https", "example.org", 8443, "/new/path?q=1")
    assert r.headers["host"] == "example.org:8443"
    assert r.url == "https://example.org:8443/new/path?q=1"
    r.url = "http://[::1]"
    assert (r.host, r.port, r.path, r.url) == ("::1", 80, "/", "http://[::1]/")
    with pytest.raises(ValueError):
        r.url = "/no/host"


@given(host=st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True),
       port=st.integers(1, 65535), scheme=st.sampled_from(["http", "https"]),
       path=st.from_regex(r"(/[A-Za-z0-9._~%-]{0,6}){1,3}(\?[a-z]=[a-z0-9]{0,3})?", fullmatch=True))
def test_url_set_then_get_is_identity(host: str, port: int, scheme: str, path: str) -> None:
    default = {"http": 80, "https": 443}[scheme]
    url = f"{scheme}://{host}{'' if port == default else f':{port}'}{path}"
    r = treq()
    r.url = url
    assert r.url == url and (r.host, r.port, r.path) == (host, port, path)


def test_connect_request_url_and_pretty_url() -> None:
    r = treq(method=b"CONNECT", authority=b"example.com:443", path=b"", port=443)
    assert r.first_line_format == "authority"
    assert r.url == "example.com:443" and r.pretty_url == "example.com:443"


def test_pretty_host_and_url_prefer_the_host_header() -> None:
    r = treq(host="10.0.0.1", headers=Headers([(b"Host", b"example.com:8080")]))
    assert r.host_header == "example.com:8080"
    assert r.pretty_host == "example.com"
    assert r.pretty_url == "http://example.com:8080/a/b?x=1&y=2"
    assert treq(headers=Headers()).pretty_url == "http://example.com/a/b?x=1&y=2"
    h2 = treq(http_version=b"HTTP/2.0", authority=b"h2.example", headers=Headers())
    assert h2.host_header == "h2.example" and h2.pretty_host == "h2.example"
    v6 = treq(headers=Headers([(b"Host", b"[::1]:8080")]))
    assert v6.pretty_host == "::1" and v6.pretty_url == "http://[::1]:8080/a/b?x=1&y=2"


def test_query_is_a_live_view() -> None:
    r = treq()
    assert r.query["x"] == "1" and list(r.query) == ["x", "y"] and len(r.query) == 2
    r.query["x"] = "changed"
    assert r.path == "/a/b?x=changed&y=2"
    r.query.add("x", "again")
    assert r.query.get_all("x") == ["changed", "again"]
    del r.query["x"]
    assert r.path == "/a/b?y=2"
    r.query = {"a": "1 2", "b": "&"}
    assert r.path == "/a/b?a=1+2&b=%26" and dict(r.query) == {"a": "1 2", "b": "&"}
    r.query = []
    assert r.path == "/a/b"


def test_path_components() -> None:
    r = treq(path=b"/a%20b//c?q=1")
    assert r.path_components == ("a b", "c")
    r.path_components = ["x/y", "z"]
    assert r.path == "/x%2Fy/z?q=1"


def test_cookies_and_form_are_read() -> None:
    r = treq(headers=Headers([(b"Cookie", b"a=1; b=2"), (b"cookie", b"a=3"),
                              (b"Content-Type", b"application/x-www-form-urlencoded")]),
             content=b"f=1&g=two+words&f=")
    assert r.cookies["a"] == "1" and r.cookies.get_all("a") == ["1", "3"] and r.cookies["b"] == "2"
    assert r.urlencoded_form.items(multi=True) == [("f", "1"), ("g", "two words"), ("f", "")]
    assert len(treq().urlencoded_form) == 0
    r.cookies["a"] = "x"  # writable, as mitmproxy's (tests/test_http_views_writable.py)
    assert r.headers.get_all("cookie") == ["a=x; b=2"]  # one value per key, as a MultiDict


def test_request_make() -> None:
    r = Request.make("post", "https://example.com/submit?x=1", "café",
                     {"Content-Type": "text/plain; charset=latin-1"})
    assert (r.method, r.url, r.raw_content) == ("POST", "https://example.com/submit?x=1", b"caf\xe9")
    assert r.headers["content-length"] == "4"
    r2 = Request.make("GET", "http://h.org:81/", b"", [(b"X", b"1")])
    assert r2.headers.get_all("x") == ["1"] and r2.port == 81 and r2.content == b""
    with pytest.raises(TypeError):
        Request.make("GET", "http://h/", headers=5)


def test_head_bytes_forms() -> None:
    r = treq(headers=Headers([(b"Host", b"example.com")]))
    tail = b" HTTP/1.1\r\nHost: example.com\r\n\r\n"
    assert r.head_bytes("origin") == b"GET /a/b?x=1&y=2" + tail
    assert r.head_bytes() == r.head_bytes("origin")
    assert r.head_bytes("absolute") == b"GET http://example.com/a/b?x=1&y=2" + tail
    r.port = 8080
    assert r.head_bytes("authority") == b"GET example.com:8080 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"
    assert treq(headers=Headers()).head_bytes() == b"GET /a/b?x=1&y=2 HTTP/1.1\r\n\r\n"
    options = treq(method=b"OPTIONS", path=b"*", headers=Headers())
    assert options.head_bytes("absolute") == b"OPTIONS http://example.com HTTP/1.1\r\n\r\n"
    with pytest.raises(ValueError):
        r.head_bytes("bogus")


def test_head_bytes_defaults_to_the_form_received() -> None:
    absolute = treq(authority=b"example.com:81", headers=Headers())
    assert absolute.head_bytes() == b"GET http://example.com:81/a/b?x=1&y=2 HTTP/1.1\r\n\r\n"
    connect = treq(method=b"CONNECT", authority=b"example.com:443", headers=Headers())
    assert connect.head_bytes() == b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"


# -- content ---------------------------------------------------------------------------


@pytest.mark.parametrize("coding, decompress", [("gzip", gzip.decompress), ("deflate", zlib.decompress)])
def test_content_setter_encodes_and_sets_length(coding, decompress) -> None:
    r = Response.make(200, b"", {"Content-Encoding": coding})
    r.content = b"hello " * 50
    assert decompress(r.raw_content) == b"hello " * 50
    assert r.headers["content-length"] == str(len(r.raw_content)) != "300"
    assert r.content == b"hello " * 50
    r.decode()
    assert "content-encoding" not in r.headers and r.raw_content == b"hello " * 50
    assert r.headers["content-length"] == "300"
    r.encode(coding)
    assert r.headers["content-encoding"] == coding and decompress(r.raw_content) == b"hello " * 50


@given(body=st.binary(max_size=1000), coding=st.sampled_from(["gzip", "deflate", "identity"]))
def test_content_round_trip(body: bytes, coding: str) -> None:
    r = Response.make(200, b"", {"content-encoding": coding})
    r.content = body
    assert r.content == body and int(r.headers["Content-Length"]) == len(r.raw_content)


def test_invalid_encoding_handling() -> None:
    r = Response.make(200, b"", {"Content-Encoding": "gzip"})
    r.raw_content = b"not gzip"
    with pytest.raises(ValueError):
        r.content
    assert r.get_content(strict=False) == b"not gzip"
    weird = Response.make(200, b"", {"Content-Encoding": "snappy"})
    weird.content = b"plain"
    assert "content-encoding" not in weird.headers and weird.raw_content == b"plain"
    with pytest.raises(ValueError):
        weird.encode("snappy")
    with pytest.raises(TypeError):
        weird.content = "str"


def test_content_length_untouched_with_transfer_encoding() -> None:
    r = Response.make(200, b"", [(b"Transfer-Encoding", b"chunked")])
    r.content = b"abc"
    assert "content-length" not in r.headers


def test_content_may_be_none() -> None:
    r = Response(b"HTTP/1.1", 200, b"OK", Headers([(b"content-encoding", b"gzip")]), None, None, 1.0, None)
    assert r.content is None and r.text is None and r.raw_content is None
    with pytest.raises(TypeError):
        r.json()
    r.content = None
    assert r.raw_content is None
    assert Response.from_state(r.get_state()).raw_content is None


def test_text_uses_the_charset() -> None:
    r = Response.make(200, "naïve", {"Content-Type": "text/html; charset=ISO-8859-1"})
    assert r.raw_content == b"na\xefve" and r.text == "naïve"
    utf8 = Response.make(200, "naïve", {"Content-Type": "text/plain"})
    assert utf8.raw_content == "naïve".encode() and utf8.text == "naïve"
    utf8.raw_content = b"\xff"
    with pytest.raises(ValueError):
        utf8.text
    assert utf8.get_text(strict=False) == "\udcff"


def test_text_falls_back_to_utf8_and_says_so() -> None:
    r = Response.make(200, b"", {"Content-Type": "text/plain; charset=ascii"})
    r.text = "€"
    assert r.raw_content == "€".encode() and r.headers["content-type"] == "text/plain; charset=utf-8"


def test_json() -> None:
    assert Response.make(200, b'{"a": [1]}').json() == {"a": [1]}


# -- Response --------------------------------------------------------------------------


def test_response_make_and_properties() -> None:
    r = Response.make(404, "gone", {"Content-Type": "text/plain"})
    assert (r.status_code, r.reason, r.http_version, r.content) == (404, "Not Found", "HTTP/1.1", b"gone")
    assert r.headers["content-length"] == "4"
    assert Response.make().reason == "OK" and Response.make(599).reason == ""
    r.reason = "Très bien"
    assert r._reason == b"Tr\xe8s bien" and r.reason == "Très bien"
    with pytest.raises(ValueError):
        r.reason = "x\r\nEvil: 1"
    assert repr(r) == "Response(404, text/plain, 4 bytes)"


def test_response_head_bytes() -> None:
    r = Response.make(201, b"ok", [(b"X", b"1")])
    assert r.head_bytes() == b"HTTP/1.1 201 Created\r\nX: 1\r\ncontent-length: 2\r\n\r\n"


def test_response_cookies() -> None:
    r = Response.make(200, b"", [(b"Set-Cookie", b"a=1; Path=/; HttpOnly"), (b"set-cookie", b"b=2")])
    value, attrs = r.cookies["a"]
    assert value == "1" and attrs["Path"] == "/" and attrs["HttpOnly"] is None
    assert r.cookies["b"][0] == "2" and list(r.cookies) == ["a", "b"]


# -- state -----------------------------------------------------------------------------


def test_request_state_matches_mitmproxy() -> None:
    r = treq(trailers=Headers([(b"X-Trailer", b"t")]))
    assert r.get_state() == {
        "http_version": b"HTTP/1.1",
        "headers": ((b"Host", b"example.com"), (b"Accept", b"*/*")),
        "content": b"", "trailers": ((b"X-Trailer", b"t"),),
        "timestamp_start": 1.0, "timestamp_end": 2.0,
        "host": "example.com", "port": 80, "method": b"GET", "scheme": b"http",
        "authority": b"", "path": b"/a/b?x=1&y=2",
    }


def test_response_state_matches_mitmproxy() -> None:
    r = Response(b"HTTP/1.1", 200, b"OK", [(b"A", b"b")], b"x", None, 1.0, 2.0)
    assert r.get_state() == {
        "http_version": b"HTTP/1.1", "headers": ((b"A", b"b"),), "content": b"x",
        "trailers": None, "timestamp_start": 1.0, "timestamp_end": 2.0,
        "status_code": 200, "reason": b"OK",
    }


def test_message_state_round_trips() -> None:
    for message in (treq(trailers=Headers([(b"T", b"1")])), Response.make(418, b"tea")):
        state = message.get_state()
        assert type(message).from_state(message.get_state()).get_state() == state
        other = Response.make(500) if isinstance(message, Response) else treq(path=b"/other")
        other.stream = True
        other.set_state(message.get_state())
        assert other.get_state() == state and other.stream is True
        assert message.copy().get_state() == state


def test_message_from_bad_state() -> None:
    with pytest.raises(ValueError):
        Response.from_state({"headers": (), "bogus": 1})


def tflow() -> HTTPFlow:
    client = Client(peername=("127.0.0.1", 50000), sockname=("127.0.0.1", 8080))
    f = HTTPFlow(client, Server(address=("example.com", 80)), live=True)
    f.request = treq()
    return f


def test_http_flow_defaults() -> None:
    f = tflow()
    assert f.type == "http" and f.response is None and f.error is None and f.websocket is None
    assert f.live is True and f.timestamp_start == 1.0
    assert "request = Request(GET" in repr(f)


def test_http_flow_state_round_trips() -> None:
    f = tflow()
    f.response = Response.make(200, b"body")
    f.marked, f.comment, f.metadata = ":grapes:", "note", {"k": [1, 2]}
    state = f.get_state()
    assert state["version"] == FLOW_FORMAT_VERSION == 21 and state["type"] == "http"
    assert state["websocket"] is None and state["response"]["status_code"] == 200
    loaded = Flow.from_state(f.get_state())
    assert isinstance(loaded, HTTPFlow) and loaded.get_state() == state
    assert loaded.live is False and loaded.request.url == f.request.url


def test_http_flow_state_without_response() -> None:
    f = tflow()
    state = f.get_state()
    assert state["response"] is None
    assert HTTPFlow.from_state(f.get_state()).get_state() == state


def test_http_flow_copy_is_independent() -> None:
    f = tflow()
    f.response = Response.make(200, b"x")
    c = f.copy()
    assert isinstance(c, HTTPFlow) and c.id != f.id and c.live is False
    c.request.path = "/changed"
    c.response.headers["X"] = "1"
    assert f.request.path == "/a/b?x=1&y=2" and "X" not in f.response.headers


def test_http_flow_refuses_websocket_state_for_now() -> None:
    state = tflow().get_state()
    state["websocket"] = {"messages": []}
    with pytest.raises(ValueError, match="WebSocket"):
        HTTPFlow.from_state(state)
