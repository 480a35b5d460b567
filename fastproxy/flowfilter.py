"""mitmproxy's flow filter expressions: a hand-written parser and the matchers.

Syntax (as in mitmproxy)::

    ~q          request without a response        ~s          has a response
    ~e          has an error                      ~all        every flow
    ~http ~tcp ~udp ~dns ~websocket               flow kind
    ~marked     marked flows                      ~replay ~replayq ~replays
    ~a          response is an asset (CSS, JS, images, fonts)
    ~c CODE     response status code
    ~d rex      request host                      ~m rex      method
    ~u rex      URL                               rex         the same as ~u rex
    ~h rex      a "name: value" header line of request or response (~hq, ~hs: one side)
    ~b rex      body of request or response (~bq, ~bs: one side)
    ~t rex      Content-Type of request or response (~tq, ~ts: one side)
    ~src rex    client address "ip:port"          ~dst rex    server address "host:port"
    ~comment rex   ~marker rex   ~meta rex
    !  not      &  and      |  or      ( ... )  grouping

``!`` binds tightest, then ``&``, then ``|``; filters written side by side are and-ed, loosest
of all (``~d a ~m b | ~m c`` is ``~d a & (~m b | ~m c)``). An argument is a word (anything
up to white space or one of ``()~'"``) or a quoted string with backslash escapes.
Regular expressions are case-insensitive for ~d, ~m and ~u, as in mitmproxy.
"""

from __future__ import annotations

import re
from typing import Any, Callable

Matcher = Callable[[Any], bool]


class Filter:
    """A compiled filter: call it with a flow to get whether it matches."""

    __slots__ = ("pattern", "_match")

    def __init__(self, pattern: str, match: Matcher) -> None:
        self.pattern = pattern
        self._match = match

    def __call__(self, flow: Any) -> bool:
        return bool(self._match(flow))

    def __repr__(self) -> str:
        return f"Filter({self.pattern!r})"


def parse(expr: str) -> Filter:
    """Compile a filter expression. Raises ``ValueError`` on a syntax error."""
    if not expr.strip():
        raise ValueError("empty filter expression")
    return Filter(expr, _Parser(expr).parse())


def match(flt: str | Filter, flow: Any) -> bool:
    """Whether ``flow`` matches ``flt`` (a compiled filter or an expression)."""
    if isinstance(flt, str):
        flt = parse(flt)
    return flt(flow)


# --- what a flow offers the matchers -------------------------------------------------------


def _is_http(f: Any) -> bool:
    return getattr(f, "type", None) == "http"


def _messages(f: Any, side: str) -> list:
    """The request and/or response of an HTTP flow ("q", "s" or "" for both)."""
    if not _is_http(f):
        return []
    found = []
    if side in ("", "q"):
        found.append(f.request)
    if side in ("", "s") and f.response is not None:
        found.append(f.response)
    return found


def _header_block(message: Any) -> bytes:
    """The headers as "name: value" lines, the text ~h matches against."""
    return b"".join(b"%s: %s\r\n" % (k, v) for k, v in message.headers.fields)


def _content_types(message: Any) -> list[bytes]:
    return [v for k, v in message.headers.fields if k.lower() == b"content-type"]


def _body(message: Any) -> bytes | None:
    return message.get_content(strict=False)


def _stream_contents(f: Any, side: str) -> list[bytes]:
    """Message payloads of TCP/UDP flows and WebSocket connections, from one side or both."""
    if _is_http(f):
        messages = f.websocket.messages if getattr(f, "websocket", None) else []
    else:
        messages = getattr(f, "messages", None) or []
    wanted = {"": (True, False), "q": (True,), "s": (False,)}[side]
    return [m.content for m in messages if m.from_client in wanted and m.content is not None]


def _address(addr: Any) -> str | None:
    return f"{addr[0]}:{addr[1]}" if addr else None


# --- the filters ---------------------------------------------------------------------------

_ASSET_TYPES = re.compile(
    rb"text/javascript|application/x-javascript|application/javascript|text/css"
    rb"|image/.*|font/.*|application/font.*"
)

_UNARY: dict[str, Matcher] = {
    "all": lambda f: True,
    "e": lambda f: f.error is not None,
    "http": _is_http,
    "websocket": lambda f: _is_http(f) and getattr(f, "websocket", None) is not None,
    "tcp": lambda f: getattr(f, "type", None) == "tcp",
    "udp": lambda f: getattr(f, "type", None) == "udp",
    "dns": lambda f: getattr(f, "type", None) == "dns",
    "q": lambda f: _is_http(f) and f.response is None,
    "s": lambda f: _is_http(f) and f.response is not None,
    "marked": lambda f: bool(f.marked),
    "replay": lambda f: f.is_replay is not None,
    "replayq": lambda f: f.is_replay == "request",
    "replays": lambda f: f.is_replay == "response",
    "a": lambda f: any(_ASSET_TYPES.match(t) for m in _messages(f, "s") for t in _content_types(m)),
}


def _header_filter(side: str) -> Callable[[re.Pattern], Matcher]:
    return lambda rex: lambda f: any(rex.search(_header_block(m)) for m in _messages(f, side))


def _content_type_filter(side: str) -> Callable[[re.Pattern], Matcher]:
    return lambda rex: lambda f: any(
        rex.search(t) for m in _messages(f, side) for t in _content_types(m)
    )


def _body_filter(side: str) -> Callable[[re.Pattern], Matcher]:
    def make(rex: re.Pattern) -> Matcher:
        def matcher(f: Any) -> bool:
            bodies = [_body(m) for m in _messages(f, side)] + _stream_contents(f, side)
            return any(b is not None and rex.search(b) for b in bodies)

        return matcher

    return make


def _url(rex: re.Pattern) -> Matcher:
    return lambda f: _is_http(f) and bool(rex.search(f.request.pretty_url))


def _meta(rex: re.Pattern) -> Matcher:
    return lambda f: bool(rex.search("\n".join(f"{k}: {v}" for k, v in f.metadata.items())))


# code -> (regex flags, whether the regex matches bytes, matcher factory)
_REX: dict[str, tuple[int, bool, Callable[[re.Pattern], Matcher]]] = {
    "b": (re.DOTALL, True, _body_filter("")),
    "bq": (re.DOTALL, True, _body_filter("q")),
    "bs": (re.DOTALL, True, _body_filter("s")),
    "h": (re.MULTILINE, True, _header_filter("")),
    "hq": (re.MULTILINE, True, _header_filter("q")),
    "hs": (re.MULTILINE, True, _header_filter("s")),
    "t": (0, True, _content_type_filter("")),
    "tq": (0, True, _content_type_filter("q")),
    "ts": (0, True, _content_type_filter("s")),
    "m": (re.IGNORECASE, False, lambda rex: lambda f: _is_http(f) and bool(rex.search(f.request.method))),
    "d": (
        re.IGNORECASE,
        False,
        lambda rex: lambda f: _is_http(f)
        and bool(rex.search(f.request.host) or rex.search(f.request.pretty_host)),
    ),
    "u": (re.IGNORECASE, False, _url),
    "src": (0, False, lambda rex: lambda f: bool(rex.search(_address(f.client_conn.peername) or ""))),
    "dst": (0, False, lambda rex: lambda f: bool(rex.search(_address(f.server_conn.address) or ""))),
    "comment": (re.MULTILINE, False, lambda rex: lambda f: bool(rex.search(f.comment))),
    "marker": (0, False, lambda rex: lambda f: bool(rex.search(f.marked))),
    "meta": (re.MULTILINE, False, _meta),
}


def _status_code(code: int) -> Matcher:
    return lambda f: _is_http(f) and f.response is not None and f.response.status_code == code


# --- the parser ----------------------------------------------------------------------------

_WORD_END = frozenset("()~'\"") | frozenset(" \t\r\n\f\v")


class _Parser:
    """Recursive descent over the expression text (see the module docstring's grammar)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Matcher:
        m = self._sequence()
        if self._peek():
            self._fail(f"unexpected {self._peek()!r}")
        return m

    def _sequence(self) -> Matcher:
        """Filters side by side, and-ed, up to the end or a closing parenthesis."""
        parts = [self._or()]
        while self._peek() not in ("", ")"):
            parts.append(self._or())
        return parts[0] if len(parts) == 1 else _all_of(parts)

    def _or(self) -> Matcher:
        parts = [self._and()]
        while self._take("|"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else _any_of(parts)

    def _and(self) -> Matcher:
        parts = [self._not()]
        while self._take("&"):
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else _all_of(parts)

    def _not(self) -> Matcher:
        if self._take("!"):
            inner = self._not()
            return lambda f: not inner(f)
        return self._atom()

    def _atom(self) -> Matcher:
        c = self._peek()
        if c == "(":
            self.pos += 1
            inner = self._sequence()
            if not self._take(")"):
                self._fail("missing ')'")
            return inner
        if c == "~":
            return self._operator()
        if c in ("", ")", "&", "|"):
            self._fail("expected a filter")
        return _compile_rex("u", self._argument())

    def _operator(self) -> Matcher:
        m = re.compile(r"~([a-z]+)(?![A-Za-z0-9])").match(self.text, self.pos)
        if not m:
            self._fail("invalid operator")
        code = m.group(1)
        self.pos = m.end()
        if code in _UNARY:
            return _UNARY[code]
        if code == "c":
            arg = self._argument()
            if not arg.isdigit():
                self._fail(f"~c needs a status code, not {arg!r}")
            return _status_code(int(arg))
        if code in _REX:
            return _compile_rex(code, self._argument())
        self._fail(f"unknown operator ~{code}")

    def _argument(self) -> str:
        c = self._peek()
        if c in ("'", '"'):
            return self._quoted(c)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _WORD_END:
            self.pos += 1
        if self.pos == start:
            self._fail("expected an argument")
        return self.text[start : self.pos]

    def _quoted(self, quote: str) -> str:
        chars = []
        i = self.pos + 1
        while i < len(self.text):
            c = self.text[i]
            if c == "\\" and i + 1 < len(self.text):
                chars.append(self.text[i + 1])
                i += 2
                continue
            if c == quote:
                self.pos = i + 1
                return "".join(chars)
            chars.append(c)
            i += 1
        self._fail("unterminated string")

    def _peek(self) -> str:
        """The next non-blank character ('' at the end), after skipping white space."""
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos : self.pos + 1]

    def _take(self, c: str) -> bool:
        if self._peek() == c:
            self.pos += 1
            return True
        return False

    def _fail(self, why: str):
        raise ValueError(f"invalid filter expression {self.text!r} at {self.pos}: {why}")


def _compile_rex(code: str, pattern: str) -> Matcher:
    flags, binary, make = _REX[code]
    try:
        rex = re.compile(pattern.encode() if binary else pattern, flags)
    except re.error as e:
        raise ValueError(f"invalid regular expression {pattern!r} for ~{code}: {e}") from None
    return make(rex)


def _all_of(parts: list[Matcher]) -> Matcher:
    return lambda f: all(p(f) for p in parts)


def _any_of(parts: list[Matcher]) -> Matcher:
    return lambda f: any(p(f) for p in parts)

TFilter = Filter
"""mitmproxy's name for a parsed filter's type (``flowfilter.TFilter``)."""
