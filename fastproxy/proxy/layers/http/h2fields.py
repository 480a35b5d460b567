"""HTTP/2 header blocks (RFC 9113 §8.2, §8.3): pseudo-header rules, field validation,
and the fields an HTTP/1 message keeps on an HTTP/2 stream."""

from __future__ import annotations

import re

from fastproxy._core import ProtocolError
from fastproxy.proxy.layers.http.semantics import (
    H2_FORBIDDEN,
    check_h2_te,
    check_status,
    is_field_value,
)

CONNECTION_SPECIFIC = H2_FORBIDDEN | {b"te", b"host", b"http2-settings"}
"""Not sent on an HTTP/2 stream as they are (RFC 9113 §8.2.2, semantics.H2_FORBIDDEN);
`te: trailers` is put back by `h2_fields`, Host becomes :authority (§8.3.1)."""

_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z").match
_BAD_PATH = re.compile(rb"[\x00-\x20\x7f]").search
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))


class MalformedHeaders(Exception):
    """Received header fields a proxy must not pass on (RFC 9113 §8.1.1: malformed)."""


def _check_field(name: bytes, value: bytes) -> None:
    """One regular field: a lowercase token, a clean value, not connection-specific."""
    if not _NAME(name):
        raise MalformedHeaders(f"invalid field name {name[:64]!r}")
    if not is_field_value(value):
        raise MalformedHeaders(f"CR, LF, NUL or another CTL in the value of {name[:64]!r}")
    if name in H2_FORBIDDEN:
        raise MalformedHeaders(f"connection-specific field {name.decode()} (RFC 9113 §8.2.2)")
    if name == b"te":
        try:
            check_h2_te(value)
        except ProtocolError as e:
            raise MalformedHeaders(str(e)) from None


def parse_request_headers(headers: list) -> tuple[dict, list]:
    """A request's pseudo-header fields and its other fields, checked (MalformedHeaders)."""
    pseudo, fields, cookies = {}, [], 0
    for field in headers:
        name, value = field
        if name[:1] == b":":
            if fields or name not in _REQUEST_PSEUDO or name in pseudo:
                raise MalformedHeaders(f"misplaced or unknown pseudo-header field {name!r}")
            if not is_field_value(value):
                raise MalformedHeaders(f"CR, LF, NUL or another CTL in {name!r}")
            pseudo[name] = value
        else:
            _check_field(name, value)
            fields.append(field)
            if name == b"cookie":
                cookies += 1
    _check_request_pseudo(pseudo)
    if cookies > 1:  # RFC 9113 §8.2.3: one field again, for HTTP/1 and for the addons
        fields = _join_cookies(fields)
    return pseudo, fields


def _check_request_pseudo(pseudo: dict) -> None:
    method = pseudo.get(b":method")
    if method is None or not _NAME(method.lower()):
        raise MalformedHeaders("missing or invalid :method")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        # RFC 9113 §8.5: :authority only
        if b":scheme" in pseudo or b":path" in pseudo or b":authority" not in pseudo:
            raise MalformedHeaders("CONNECT with :scheme or :path, or without :authority")
        return
    if b":protocol" in pseudo and method != b"CONNECT":
        raise MalformedHeaders(":protocol on a request other than CONNECT (RFC 8441 §4)")
    scheme, path = pseudo.get(b":scheme"), pseudo.get(b":path")
    if not scheme or not _NAME(scheme.lower()):
        raise MalformedHeaders("missing or invalid :scheme (RFC 9113 §8.3.1)")
    if not path or _BAD_PATH(path):
        raise MalformedHeaders("missing or invalid :path (RFC 9113 §8.3.1)")
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS") and \
            scheme in (b"http", b"https"):
        raise MalformedHeaders(":path neither absolute nor * (RFC 9113 §8.3.1)")


def check_fields(headers: list, pseudo_allowed: frozenset = frozenset((b":status",))) -> None:
    """Response fields (one :status first, RFC 9113 §8.3.2) or, with no pseudo-header
    field allowed, trailer fields (§8.1): the same checks (MalformedHeaders)."""
    status, regular = None, False
    for name, value in headers:
        if name[:1] == b":":
            if name not in pseudo_allowed or status is not None or regular:
                raise MalformedHeaders(f"misplaced or unknown pseudo-header field {name!r}")
            if len(value) != 3 or not value.isdigit():
                raise MalformedHeaders(f"invalid :status {value[:16]!r}")
            check_status(int(value))
            status = value
        else:
            _check_field(name, value)
            regular = True
    if pseudo_allowed and status is None:
        raise MalformedHeaders("response without :status (RFC 9113 §8.3.2)")


def h2_fields(fields, drop: frozenset = CONNECTION_SPECIFIC) -> list:
    """Fields for an HTTP/2 message: names lowercased, connection-specific ones dropped,
    `te` kept when it says "trailers" only (gRPC needs it; RFC 9113 §8.2.2)."""
    out = []
    for name, value in fields:
        name = name.lower()
        if name not in drop:
            out.append((name, value))
        elif name == b"te" and value.strip(b" \t").lower() == b"trailers":
            out.append((b"te", b"trailers"))
    return out


def _join_cookies(fields: list) -> list:
    cookies = [v for n, v in fields if n == b"cookie"]
    out = [f for f in fields if f[0] != b"cookie"]
    out.append((b"cookie", b"; ".join(cookies)))
    return out
