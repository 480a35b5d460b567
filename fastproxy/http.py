"""HTTP messages and flows with mitmproxy's API: Headers, Request, Response, HTTPFlow.

The proxy builds a `Headers`, a `Request` or `Response` and an `HTTPFlow` for every
exchange, so their constructors only store what they are given: no copies, no validation
(a field list is wrapped in a `Headers`, not copied). Values an addon assigns (header values, method, path, reason, ...) are
checked where they are assigned: CR, LF and NUL are refused so that a header or a request
line cannot be split into two (RFC 9112 §2.2, §3; request smuggling).

`get_state()` produces mitmproxy 11's flow state, key for key.
"""

from __future__ import annotations

import http
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from fastproxy import flow
from fastproxy.io import flowstate
from fastproxy.net import encoding, multipart
from fastproxy.serializable import Serializable, State
from fastproxy.websocket import WebSocketData

Fields = list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]

_MISSING: Any = object()
_FIELD_LINE: Callable[[tuple[bytes, bytes]], bytes] = b": ".join
_BAD_VALUE = re.compile(rb"[\r\n\0]")
_BAD_TOKEN = re.compile(rb"[\x00-\x20:\x7f]")  # header names: no CTL, space or colon
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")  # request-line parts: no CTL or space
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}


def _native(data: bytes) -> str:
    """Bytes as str; headers should be ASCII but are often UTF-8, and must round-trip."""
    return data.decode("utf-8", "surrogateescape")


def _bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise TypeError(f"expected str or bytes, not {type(value).__name__}")


def _checked(value: str | bytes, bad: re.Pattern[bytes], what: str) -> bytes:
    data = _bytes(value)
    if bad.search(data) or (bad is _BAD_TOKEN and not data):
        raise ValueError(f"invalid {what}: {data!r}")
    return data


def _replace_all(fields: Iterable, key: Any, values: Iterable, match: Callable) -> list:
    """`fields` with the values of `key` replaced where they stand (mitmproxy's set_all).

    Surplus old fields are dropped, surplus new values are appended at the end.
    """
    pending = iter(values)
    out = []
    for field in fields:
        if not match(field[0]):
            out.append(field)
        elif (value := next(pending, _MISSING)) is not _MISSING:
            out.append((field[0], value))
    out.extend((key, value) for value in pending)
    return out


class Headers(MutableMapping[str, str], Serializable):
    """HTTP header fields: case-insensitive, multi-valued, in wire order.

    ``Headers([(b"Host", b"example.com"), (b"Accept", b"text/html")])`` keeps the given
    list as ``fields`` (not copied); ``Headers(content_type="text/html")`` turns
    underscores into dashes. ``h["accept"]`` folds repeated fields with ", " (RFC 9110
    §5.3); use `get_all` for Set-Cookie. Names and values are returned as str, decoded as
    UTF-8 with surrogateescape; str given is encoded the same way.
    """

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: Fields = (), **headers: str | bytes) -> None:
        self._fields = fields
        self._index: dict[bytes, list[int]] | None = None
        for name, value in headers.items():
            self[name.replace("_", "-")] = value

    @property
    def fields(self) -> Fields:
        """The raw ``(name, value)`` byte pairs, in order. Assigning replaces them all."""
        return self._fields

    @fields.setter
    def fields(self, fields: Fields) -> None:
        self._fields = fields
        self._index = None

    def _lookup(self) -> dict[bytes, list[int]]:
        """Lower-case name -> field positions, built on the first lookup."""
        index = self._index
        if index is None:
            index = {}
            for i, (name, _) in enumerate(self._fields):
                index.setdefault(name.lower(), []).append(i)
            self._index = index
        return index

    def _raw_values(self, name: str | bytes) -> list[bytes]:
        fields = self._fields
        return [fields[i][1] for i in self._lookup().get(_bytes(name).lower(), ())]

    def __getitem__(self, name: str | bytes) -> str:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            raise KeyError(name)
        return value

    def get(self, name: str | bytes, default: Any = None) -> Any:
        """The (folded) value of `name`, or `default` if there is none."""
        values = self._raw_values(name)
        if not values:
            return default
        return _native(values[0] if len(values) == 1 else b", ".join(values))

    def get_all(self, name: str | bytes) -> list[str]:
        """Every value of `name`, unfolded: for Set-Cookie and Cookie (RFC 6265 §3, §5.4)."""
        return [_native(v) for v in self._raw_values(name)]

    def set_all(self, name: str | bytes, values: Iterable[str | bytes]) -> None:
        """Replace the values of `name` where they stand; extra values go at the end."""
        key = _checked(name, _BAD_TOKEN, "header name")
        lower = key.lower()
        new = [_checked(v, _BAD_VALUE, "header value") for v in values]
        self.fields = _replace_all(self._fields, key, new, lambda n: n.lower() == lower)

    def __setitem__(self, name: str | bytes, value: str | bytes) -> None:
        self.set_all(name, (value,))

    def __delitem__(self, name: str | bytes) -> None:
        lower = _bytes(name).lower()
        if lower not in self._lookup():
            raise KeyError(name)
        self.fields = [f for f in self._fields if f[0].lower() != lower]

    def insert(self, index: int, name: str | bytes, value: str | bytes) -> None:
        """Insert one field at position `index` of `fields`."""
        field = (_checked(name, _BAD_TOKEN, "header name"), _checked(value, _BAD_VALUE, "header value"))
        fields = list(self._fields)
        fields.insert(index, field)
        self.fields = fields

    def add(self, name: str | bytes, value: str | bytes) -> None:
        """Append one field, keeping any with the same name."""
        self.insert(len(self._fields), name, value)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes)):
            return False
        return _bytes(name).lower() in self._lookup()

    def __len__(self) -> int:
        return len(self._lookup())

    def __iter__(self) -> Iterator[str]:
        """Each name once, spelled as it first appears."""
        fields = self._fields
        return (_native(fields[at[0]][0]) for at in self._lookup().values())

    def items(self, multi: bool = False) -> Any:  # type: ignore[override]
        """``(name, value)`` pairs: one per name, folded, or with `multi` one per field."""
        if multi:
            return [(_native(k), _native(v)) for k, v in self._fields]
        return super().items()

    def keys(self, multi: bool = False) -> Any:  # type: ignore[override]
        """Names: once each, or with `multi` once per field."""
        return [k for k, _ in self.items(True)] if multi else super().keys()

    def values(self, multi: bool = False) -> Any:  # type: ignore[override]
        """Values: folded per name, or with `multi` one per field."""
        return [v for _, v in self.items(True)] if multi else super().values()

    def copy(self) -> Headers:
        """A copy with its own field list."""
        return Headers(list(self._fields))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return list(map(tuple, self._fields)) == list(map(tuple, other._fields))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers[{', '.join(map(repr, self._fields))}]"

    def to_wire(self) -> bytes:
        """The HTTP/1 field block: ``Name: value\\r\\n`` per field (RFC 9112 §5)."""
        if not self._fields:
            return b""
        return b"".join((b"\r\n".join(map(_FIELD_LINE, self._fields)), b"\r\n"))

    __bytes__ = to_wire

    def get_state(self) -> State:
        return tuple((k, v) for k, v in self._fields)

    def set_state(self, state: State) -> None:
        self.fields = [(k, v) for k, v in state]

    @classmethod
    def from_state(cls, state: State) -> Headers:
        return cls([(k, v) for k, v in state])


def _make_headers(headers: Any) -> Headers:
    """Headers from a `Headers`, a dict of str/bytes, or (bytes, bytes) pairs."""
    if isinstance(headers, Headers):
        return headers
    if isinstance(headers, Mapping):
        return Headers([(_bytes(k), _bytes(v)) for k, v in headers.items()])
    if isinstance(headers, Iterable):  # str pairs (mitmproxy accepts them) become bytes
        return Headers([(_bytes(k), _bytes(v)) for k, v in headers])
    raise TypeError(f"expected headers as a dict or pairs, not {type(headers).__name__}")


def _head(start: list[bytes], fields: Fields) -> bytes:
    """A message head: start line parts, the field block and the empty line (RFC 9112 §2.1).

    Measured: one outer join over per-field ``b": ".join`` beats flattening every piece.
    """
    if fields:
        start += (b"\r\n", b"\r\n".join(map(_FIELD_LINE, fields)), b"\r\n\r\n")
    else:
        start.append(b"\r\n\r\n")
    return b"".join(start)


class MultiDictView(MutableMapping[str, Any]):
    """A live, case-sensitive multidict over pairs another object computes and stores.

    ``view[key]`` is the first value. Every change calls the setter with all pairs
    (``request.query["a"] = "1"`` rewrites the request path). No setter: read-only.
    """

    __slots__ = ("_getter", "_setter")

    def __init__(self, getter: Callable[[], tuple], setter: Callable[[tuple], None] | None = None):
        self._getter = getter
        self._setter = setter

    @property
    def fields(self) -> tuple:
        """The ``(key, value)`` pairs, as the owner has them now."""
        return self._getter()

    @fields.setter
    def fields(self, fields: Iterable[tuple[Any, Any]]) -> None:
        if self._setter is None:
            raise TypeError("this view is read-only")
        self._setter(tuple(fields))

    def __getitem__(self, key: str) -> Any:
        for k, v in self.fields:
            if k == key:
                return v
        raise KeyError(key)

    def get_all(self, key: str) -> list:
        """Every value of `key`, in order."""
        return [v for k, v in self.fields if k == key]

    def set_all(self, key: str, values: Iterable) -> None:
        """Replace the values of `key` where they stand; extra values go at the end."""
        self.fields = _replace_all(self.fields, key, values, key.__eq__)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set_all(key, (value,))

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.fields = [f for f in self.fields if f[0] != key]

    def add(self, key: str, value: Any) -> None:
        """Append one pair."""
        self.fields = (*self.fields, (key, value))

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self.fields))

    def __len__(self) -> int:
        return len({k for k, _ in self.fields})

    def items(self, multi: bool = False) -> Any:  # type: ignore[override]
        """``(key, value)`` pairs: first value per key, or with `multi` every pair."""
        return list(self.fields) if multi else super().items()

    def __repr__(self) -> str:
        return f"MultiDictView{list(self.fields)!r}"


def _charset(content_type: str) -> str:
    """The charset parameter of a Content-Type, else UTF-8 (RFC 9110 §8.3.2)."""
    match = re.search(r";\s*charset\s*=\s*\"?([^\";\s]+)", content_type, re.IGNORECASE)
    charset = match.group(1).lower() if match else "utf-8"
    # GB18030 is a superset of GB2312 and GBK, which sites often mislabel.
    return "gb18030" if charset in ("gb2312", "gbk") else charset


class _RawText:
    """A str attribute over a bytes slot; what is assigned may not contain CTLs or spaces."""

    def __init__(self, slot: str, doc: str, upper: bool = False) -> None:
        self.slot, self.upper, self.__doc__ = slot, upper, doc

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        text = _native(getattr(obj, self.slot))
        return text.upper() if self.upper else text

    def __set__(self, obj: Any, value: str | bytes) -> None:
        setattr(obj, self.slot, _checked(value, _BAD_TARGET, self.slot.lstrip("_")))


class Message(Serializable):
    """What a `Request` and a `Response` share: version, headers, body, trailers, times."""

    __slots__ = ("_http_version", "headers", "raw_content", "trailers",
                 "timestamp_start", "timestamp_end", "stream")

    headers: Headers
    raw_content: bytes | None
    """The body as sent, still content-coded; None if not recorded (streamed)."""
    trailers: Headers | None
    timestamp_start: float
    """*Timestamp:* headers received."""
    timestamp_end: float | None
    """*Timestamp:* last byte received."""
    stream: bool | Callable[[bytes], bytes | Iterable[bytes]]
    """Stream the body instead of buffering it: True, or a function applied to each chunk.

    Set it in `requestheaders` / `responseheaders`; later the body is already buffered.
    """

    def _init_message(self, http_version: bytes, headers: Any, content: bytes | None,
                      trailers: Any, timestamp_start: float, timestamp_end: float | None) -> None:
        self._http_version = http_version
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.raw_content = content
        self.trailers = trailers if trailers is None or isinstance(trailers, Headers) else Headers(trailers)
        self.timestamp_start = timestamp_start
        self.timestamp_end = timestamp_end
        self.stream = False

    @classmethod
    def from_state(cls, state: State) -> Any:
        kwargs = dict(state)
        kwargs["headers"] = Headers.from_state(state["headers"])
        if state.get("trailers") is not None:
            kwargs["trailers"] = Headers.from_state(state["trailers"])
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise ValueError(f"invalid {cls.__name__} state: {e}") from e

    def set_state(self, state: State) -> None:
        loaded = self.from_state(state)
        for name in Message.__slots__ + type(self).__slots__:
            if name != "stream":
                setattr(self, name, getattr(loaded, name))

    http_version = _RawText("_http_version", "The HTTP version, e.g. ``\"HTTP/1.1\"``.")

    @property
    def is_http10(self) -> bool:
        return self._http_version == b"HTTP/1.0"

    @property
    def is_http11(self) -> bool:
        return self._http_version == b"HTTP/1.1"

    @property
    def is_http2(self) -> bool:
        return self._http_version == b"HTTP/2.0"

    @property
    def is_http3(self) -> bool:
        return self._http_version == b"HTTP/3"

    def get_content(self, strict: bool = True) -> bytes | None:
        """Like `content`; with ``strict=False`` undecodable content is returned raw."""
        raw = self.raw_content
        coding = self.headers.get("content-encoding")
        if raw is None or not coding:
            return raw
        try:
            return encoding.decode(raw, coding)
        except ValueError:
            if strict:
                raise
            return raw

    def set_content(self, value: bytes | None) -> None:
        """Encode `value` per Content-Encoding and set Content-Length to match.

        An unsupported Content-Encoding is removed and the body stored as is. Content-Length
        is left alone when Transfer-Encoding is present (RFC 9112 §6.2).
        """
        if value is None:
            self.raw_content = None
            return
        if not isinstance(value, bytes):
            raise TypeError(f"content must be bytes, not {type(value).__name__}; use .text for str")
        coding = self.headers.get("content-encoding")
        try:
            self.raw_content = encoding.encode(value, coding) if coding else value
        except ValueError:
            del self.headers["content-encoding"]
            self.raw_content = value
        if "transfer-encoding" not in self.headers:
            self.headers["content-length"] = str(len(self.raw_content))

    content = property(get_content, set_content, doc=(
        "The body with its Content-Encoding undone; ValueError if that fails. Setting it "
        "encodes and updates Content-Length."))

    def get_text(self, strict: bool = True) -> str | None:
        """Like `text`; with ``strict=False`` undecodable bytes are surrogate-escaped."""
        content = self.get_content(strict)
        if content is None:
            return None
        try:
            return content.decode(_charset(self.headers.get("content-type", "")))
        except (UnicodeDecodeError, LookupError) as e:
            if strict:
                raise ValueError(f"cannot decode body as text: {e}") from e
            return content.decode("utf-8", "surrogateescape")

    def set_text(self, value: str | None) -> None:
        """Set the body from text, in the Content-Type charset, else as UTF-8 (and say so)."""
        if value is None:
            self.set_content(None)
            return
        content_type = self.headers.get("content-type", "")
        try:
            self.set_content(value.encode(_charset(content_type)))
        except (UnicodeEncodeError, LookupError):
            self.headers["content-type"] = _with_utf8(content_type)
            self.set_content(value.encode("utf-8", "surrogateescape"))

    text = property(get_text, set_text, doc=(
        "The body as text, in the Content-Type charset (default UTF-8); ValueError if that fails."))

    def decode(self, strict: bool = True) -> None:
        """Undo the Content-Encoding and remove the header."""
        decoded = self.get_content(strict)
        self.headers.pop("content-encoding", None)
        self.set_content(decoded)

    def encode(self, coding: str) -> None:
        """Apply `coding` ("gzip", "deflate", ...) to the raw body, which is not decoded first.

        Raises ValueError if the coding is not supported.
        """
        if coding.strip().lower() not in encoding.SUPPORTED:
            raise ValueError(f"unsupported content-encoding {coding!r}")
        self.headers["content-encoding"] = coding
        self.set_content(self.raw_content)

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON; TypeError if there is no body (streamed)."""
        content = self.get_content(strict=False)
        if content is None:
            raise TypeError("message content is not available")
        return json.loads(content, **kwargs)


def _with_utf8(content_type: str) -> str:
    """`content_type` with its charset parameter set to utf-8."""
    base = re.sub(r";\s*charset\s*=[^;]*", "", content_type, flags=re.IGNORECASE).strip()
    return f"{base or 'text/plain'}; charset=utf-8"


def _hostport(scheme: str, host: str, port: int) -> str:
    """`host`, with ``:port`` unless it is the scheme's default; IPv6 in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"


def _split_authority(authority: str) -> tuple[str, int | None]:
    """``host[:port]`` -> (host, port or None); IPv6 brackets removed, no validation."""
    host, sep, port = authority.rpartition(":")
    if not sep or not port.isdigit() or (host.count(":") and not host.endswith("]")):
        host, port = authority, ""
    return host.strip("[]"), int(port) if port else None


def _parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an absolute URL; ValueError if it has no host."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in URL {url!r}")
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
    path = urllib.parse.urlunsplit(("", "", parts.path, parts.query, parts.fragment))
    return parts.scheme, parts.hostname, port, path if path.startswith("/") else "/" + path


class Request(Message):
    """An HTTP request."""

    __slots__ = ("_host", "_port", "_method", "_scheme", "_authority", "_path")

    def __init__(self, host: str, port: int, method: bytes, scheme: bytes, authority: bytes,
                 path: bytes, http_version: bytes, headers: Headers | Fields,
                 content: bytes | None, trailers: Headers | Fields | None,
                 timestamp_start: float, timestamp_end: float | None) -> None:
        self._host = host
        self._port = port
        self._method = method
        self._scheme = scheme
        self._authority = authority
        self._path = path
        self._init_message(http_version, headers, content, trailers, timestamp_start, timestamp_end)

    @classmethod
    def make(cls, method: str, url: str, content: bytes | str = b"",
             headers: Any = ()) -> Request:
        """A request for `url`, with Content-Length set from `content`."""
        now = time.time()
        req = cls("", 0, _checked(method, _BAD_TARGET, "method"), b"", b"", b"", b"HTTP/1.1",
                  _make_headers(headers), b"", None, now, now)
        req.url = url
        if isinstance(content, str):
            req.text = content
        else:
            req.content = content
        return req

    def get_state(self) -> State:
        trailers = self.trailers
        return flowstate.request(  # the layout's, keyword for keyword
            http_version=self._http_version, headers=self.headers.get_state(),
            content=self.raw_content, trailers=None if trailers is None else trailers.get_state(),
            timestamp_start=self.timestamp_start, timestamp_end=self.timestamp_end,
            host=self._host, port=self._port, method=self._method, scheme=self._scheme,
            authority=self._authority, path=self._path)

    def __repr__(self) -> str:
        hostport = f"{self._host}:{self._port}" if self._host and self._port else ""
        return f"Request({self.method} {hostport}{self.path})"

    @property
    def first_line_format(self) -> str:
        """The request-target form: "authority" (CONNECT), "absolute" or "relative"."""
        if self._method.upper() == b"CONNECT":
            return "authority"
        return "absolute" if self._authority else "relative"

    method = _RawText("_method", "The method, upper case, e.g. ``\"GET\"``.", upper=True)
    scheme = _RawText("_scheme", "``\"http\"`` or ``\"https\"``.")

    @property
    def authority(self) -> str:
        """The request-target's authority (absolute/authority form) or HTTP/2 :authority."""
        try:
            return self._authority.decode("idna")
        except UnicodeError:
            return _native(self._authority)

    @authority.setter
    def authority(self, value: str | bytes) -> None:
        if isinstance(value, str):
            try:
                value = value.encode("idna")
            except UnicodeError:
                value = _bytes(value)
        self._authority = _checked(value, _BAD_TARGET, "authority")

    @property
    def host(self) -> str:
        """The target host. Setting it also updates the Host header and authority, if set."""
        return self._host

    @host.setter
    def host(self, value: str | bytes) -> None:
        self._host = value.decode("idna") if isinstance(value, bytes) else value
        self._update_host_and_authority()

    @property
    def port(self) -> int:
        """The target port. Setting it also updates the Host header and authority, if set."""
        return self._port

    @port.setter
    def port(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"port must be an integer, not {value!r}")
        self._port = value
        self._update_host_and_authority()

    def _update_host_and_authority(self) -> None:
        hostport = _hostport(self.scheme, self._host, self._port)
        if "Host" in self.headers:
            self.headers["Host"] = hostport
        if self._authority:
            self.authority = hostport

    path = _RawText("_path", "The request-target's path and query (``\"/a?b=c\"``), or ``\"*\"``.")

    @property
    def host_header(self) -> str | None:
        """The Host header, or for HTTP/2 and 3 the :authority (RFC 9113 §8.3.1)."""
        if self.is_http2 or self.is_http3:
            return self.authority or self.headers.get("Host")
        return self.headers.get("Host")

    @property
    def url(self) -> str:
        """The full URL; setting it updates scheme, host, port and path."""
        if self.first_line_format == "authority":
            return f"{self._host}:{self._port}"
        path = self.path
        return f"{self.scheme}://{_hostport(self.scheme, self._host, self._port)}{'' if path == '*' else path}"

    @url.setter
    def url(self, value: str | bytes) -> None:
        scheme, host, port, path = _parse_url(_native(_bytes(value)))
        self.scheme = scheme
        self.path = path
        self._host = host
        self._port = port
        self._update_host_and_authority()

    @property
    def pretty_host(self) -> str:
        """`host_header`'s host if there is one, else `host` (the Host header may lie)."""
        host_header = self.host_header
        return _split_authority(host_header)[0] if host_header else self._host

    @property
    def pretty_url(self) -> str:
        """Like `url`, but with the host and port of `host_header`."""
        if self.first_line_format == "authority":
            return self.authority
        host_header = self.host_header
        if not host_header:
            return self.url
        host, port = _split_authority(host_header)
        port = port or _DEFAULT_PORTS.get(self.scheme) or 443
        path = "" if self.path == "*" else self.path
        return f"{self.scheme}://{_hostport(self.scheme, host, port)}{path}"

    def _split_path(self) -> tuple[str, str, str]:
        """(path, query, fragment) of the request-target."""
        rest, _, fragment = self.path.partition("#")
        path, _, query = rest.partition("?")
        return path, query, fragment

    def _get_query(self) -> tuple[tuple[str, str], ...]:
        pairs = urllib.parse.parse_qsl(self._split_path()[1], keep_blank_values=True,
                                       errors="surrogateescape")
        return tuple(pairs)

    def _set_query(self, pairs: Iterable[tuple[str, str]]) -> None:
        path, _, fragment = self._split_path()
        query = urllib.parse.urlencode(list(pairs), errors="surrogateescape")
        self.path = path + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")

    @property
    def query(self) -> MultiDictView:
        """The query string as a live multidict: changing it rewrites `path`."""
        return MultiDictView(self._get_query, self._set_query)

    @query.setter
    def query(self, value: Iterable[tuple[str, str]] | Mapping[str, str]) -> None:
        self._set_query(value.items() if isinstance(value, Mapping) else value)

    @property
    def path_components(self) -> tuple[str, ...]:
        """The path's non-empty segments, percent-decoded."""
        segments = self._split_path()[0].split("/")
        return tuple(urllib.parse.unquote(s, errors="surrogateescape") for s in segments if s)

    @path_components.setter
    def path_components(self, components: Iterable[str]) -> None:
        _, query, fragment = self._split_path()
        quoted = (urllib.parse.quote(c, safe="", errors="surrogateescape") for c in components)
        self.path = "/" + "/".join(quoted) + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")

    def _get_cookies(self) -> tuple[tuple[str, str], ...]:
        pairs = []
        for header in self.headers.get_all("Cookie"):
            for item in header.split(";"):
                name, _, value = item.strip().partition("=")
                if name:
                    pairs.append((name, value))
        return tuple(pairs)

    def _set_cookies(self, pairs: Iterable[tuple[str, str]]) -> None:
        header = "; ".join(f"{name}={value}" for name, value in pairs)
        if header:
            self.headers["Cookie"] = header
        elif "cookie" in self.headers:
            del self.headers["Cookie"]

    @property
    def cookies(self) -> MultiDictView:
        """The Cookie header's ``name=value`` pairs (RFC 6265 §5.4), as a live multidict:
        changing it rewrites the header (one ``Cookie`` field)."""
        return MultiDictView(self._get_cookies, self._set_cookies)

    @cookies.setter
    def cookies(self, value: Iterable[tuple[str, str]] | Mapping[str, str]) -> None:
        self._set_cookies(value.items() if isinstance(value, Mapping) else value)

    def _get_urlencoded_form(self) -> tuple[tuple[str, str], ...]:
        if "application/x-www-form-urlencoded" not in self.headers.get("content-type", "").lower():
            return ()
        text = self.get_text(strict=False) or ""
        return tuple(urllib.parse.parse_qsl(text, keep_blank_values=True, errors="surrogateescape"))

    def _set_urlencoded_form(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.headers["content-type"] = "application/x-www-form-urlencoded"
        self.content = urllib.parse.urlencode(list(pairs), errors="surrogateescape").encode()

    @property
    def urlencoded_form(self) -> MultiDictView:
        """The body's form fields if it is application/x-www-form-urlencoded, as a live
        multidict; changing it (or assigning pairs or a dict) rewrites the body and sets
        that Content-Type, as mitmproxy does."""
        return MultiDictView(self._get_urlencoded_form, self._set_urlencoded_form)

    @urlencoded_form.setter
    def urlencoded_form(self, value: Iterable[tuple[str, str]] | Mapping[str, str]) -> None:
        self._set_urlencoded_form(value.items() if isinstance(value, Mapping) else value)

    def _get_multipart_form(self) -> tuple[tuple[bytes, bytes], ...]:
        return multipart.decode(self.headers.get("content-type", ""), self.get_content(strict=False) or b"")

    def _set_multipart_form(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        boundary = multipart.boundary_of(self.headers.get("content-type", ""))
        content_type, body = multipart.encode(pairs, boundary)
        self.headers["content-type"] = content_type
        self.content = body

    @property
    def multipart_form(self) -> MultiDictView:
        """The body's multipart/form-data fields (bytes keys and values) as a live multidict;
        changing it re-encodes the body (keeping the boundary)."""
        return MultiDictView(self._get_multipart_form, self._set_multipart_form)

    @multipart_form.setter
    def multipart_form(self, value: Iterable[tuple[Any, Any]] | Mapping[Any, Any]) -> None:
        self._set_multipart_form(value.items() if isinstance(value, Mapping) else value)

    def head_bytes(self, form: str | None = None) -> bytes:
        """The HTTP/1 request head: request line, fields and the empty line (RFC 9112 §3.2).

        `form` is "origin" (``GET /p``), "absolute" (``GET http://h/p``) or "authority"
        (``CONNECT h:443``); by default, the form the request arrived in.
        """
        form = form or {"relative": "origin"}.get(self.first_line_format, self.first_line_format)
        if form == "origin":
            target = self._path
        elif form == "absolute":
            # An asterisk-form OPTIONS becomes the bare authority (RFC 9112 §3.2.4).
            path = b"" if self._path == b"*" else self._path
            target = b"".join((self._scheme, b"://", self._target_authority(), path))
        elif form == "authority":
            target = self._target_authority()
        else:
            raise ValueError(f"unknown request-target form {form!r}")
        return _head([self._method, b" ", target, b" ", self._http_version], self.headers.fields)

    def start_line(self, http_version: bytes) -> bytes:
        """The origin-form request line for the upstream: ``METHOD path VERSION``."""
        return b" ".join((self._method, self._path, http_version))

    def _target_authority(self) -> bytes:
        if self._authority:
            return self._authority
        hostport = _hostport(self.scheme, self._host, self._port)
        return hostport.encode("ascii") if hostport.isascii() else hostport.encode("idna")


class Response(Message):
    """An HTTP response."""

    __slots__ = ("status_code", "_reason")

    status_code: int
    """The status code, e.g. ``200``."""

    def __init__(self, http_version: bytes, status_code: int, reason: bytes,
                 headers: Headers | Fields, content: bytes | None,
                 trailers: Headers | Fields | None, timestamp_start: float,
                 timestamp_end: float | None) -> None:
        self.status_code = status_code
        self._reason = reason
        self._init_message(http_version, headers, content, trailers, timestamp_start, timestamp_end)

    @classmethod
    def make(cls, status_code: int = 200, content: bytes | str = b"",
             headers: Any = ()) -> Response:
        """A response with the standard reason phrase and Content-Length set from `content`."""
        now = time.time()
        resp = cls(b"HTTP/1.1", status_code, _REASONS.get(status_code, b""),
                   _make_headers(headers), None, None, now, now)
        if isinstance(content, str):
            resp.text = content
        else:
            resp.content = content
        return resp

    def get_state(self) -> State:
        trailers = self.trailers
        return flowstate.response(  # the layout's, keyword for keyword
            http_version=self._http_version, headers=self.headers.get_state(),
            content=self.raw_content, trailers=None if trailers is None else trailers.get_state(),
            timestamp_start=self.timestamp_start, timestamp_end=self.timestamp_end,
            status_code=self.status_code, reason=self._reason)

    def __repr__(self) -> str:
        if not self.raw_content:
            return f"Response({self.status_code}, no content)"
        content_type = self.headers.get("content-type", "unknown content type")
        return f"Response({self.status_code}, {content_type}, {len(self.raw_content)} bytes)"

    @property
    def reason(self) -> str:
        """The reason phrase, e.g. ``"Not Found"``; empty for HTTP/2."""
        return self._reason.decode("iso-8859-1")

    @reason.setter
    def reason(self, value: str | bytes) -> None:
        data = value.encode("iso-8859-1") if isinstance(value, str) else value
        self._reason = _checked(data, _BAD_VALUE, "reason")

    def _get_cookies(self) -> tuple[tuple[str, tuple[str, MultiDictView]], ...]:
        return tuple(_parse_set_cookie(h) for h in self.headers.get_all("set-cookie"))

    def _set_cookies(self, pairs: Iterable[tuple[str, Any]]) -> None:
        self.headers.set_all("set-cookie", [_format_set_cookie(n, v) for n, v in pairs])

    @property
    def cookies(self) -> MultiDictView:
        """Set-Cookie as name -> (value, attributes) (RFC 6265 §4.1), as a live multidict:
        changing it rewrites the Set-Cookie fields. Attributes without a value
        (``HttpOnly``) map to None.
        """
        return MultiDictView(self._get_cookies, self._set_cookies)

    @cookies.setter
    def cookies(self, value: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> None:
        self._set_cookies(value.items() if isinstance(value, Mapping) else value)

    def status_line(self) -> bytes:
        """``VERSION code reason`` as bytes (RFC 9112 §4)."""
        return b"%s %d %s" % (self._http_version, self.status_code, self._reason)

    def head_bytes(self) -> bytes:
        """The HTTP/1 response head: status line, fields and the empty line (RFC 9112 §4)."""
        start = [self._http_version, b" ", b"%d" % self.status_code, b" ", self._reason]
        return _head(start, self.headers.fields)


def _format_set_cookie(name: str, value: Any) -> str:
    """A Set-Cookie value from name and value or (value, attributes)."""
    if isinstance(value, str):
        return f"{name}={value}"
    value, attrs = value
    items = attrs.items(multi=True) if hasattr(attrs, "fields") else (
        attrs.items() if isinstance(attrs, Mapping) else attrs)
    parts = [f"{name}={value}"]
    parts += [k if v is None else f"{k}={v}" for k, v in items]
    return "; ".join(parts)


def _parse_set_cookie(header: str) -> tuple[str, tuple[str, MultiDictView]]:
    first, *attributes = header.split(";")
    name, _, value = first.strip().partition("=")
    attrs = []
    for attribute in attributes:
        key, sep, val = attribute.strip().partition("=")
        attrs.append((key, val if sep else None))
    frozen = tuple(attrs)
    return name, (value, MultiDictView(lambda: frozen))


class HTTPFlow(flow.Flow):
    """One HTTP exchange: the request, the response once there is one, or an error."""

    __slots__ = ("request", "response", "websocket")

    type = "http"
    request: Request
    response: Response | None
    """The server's response; it may come with an `error` if sending it back failed."""
    websocket: Any
    """The `fastproxy.websocket.WebSocketData` if this flow was upgraded to WebSocket."""

    def __init__(self, client_conn: Any, server_conn: Any, live: bool = False) -> None:
        super().__init__(client_conn, server_conn, live)
        self.request = None  # type: ignore[assignment]  # set by the layer that parses it
        self.response = None
        self.websocket = None

    def get_state(self) -> State:
        # The layout is recording's (`fastproxy.io.flowstate`): one table for every writer.
        # None before the request went upstream: an unconnected server, as mitmproxy has.
        server = self.server_conn or flow.Server(address=None)
        return flowstate.of_http_flow(self, self.client_conn.get_state(), server.get_state(),
                                      copied=True)

    def set_state(self, state: State) -> None:
        request, response = state.pop("request"), state.pop("response")
        websocket = state.pop("websocket", None)
        super().set_state(state)
        self.request = Request.from_state(request)
        self.response = None if response is None else Response.from_state(response)
        self.websocket = None if websocket is None else WebSocketData.from_state(websocket)

    @property
    def timestamp_start(self) -> float:
        """*Read-only:* when the request's headers arrived."""
        return self.request.timestamp_start

    def __repr__(self) -> str:
        parts = [f"{name} = {value}" for name in ("request", "response", "error")
                 if (value := getattr(self, name)) is not None]
        return "<HTTPFlow\r\n  " + "\r\n  ".join(parts) + ">"


__all__ = ["Headers", "HTTPFlow", "Message", "MultiDictView", "Request", "Response"]
