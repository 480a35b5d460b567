"""HTTP message semantics shared by every layer (HTTP/1, HTTP/2, the bridges, WebSocket).

One home for the rules that decide what may be forwarded, so that no layer keeps a copy
of its own (a second copy of the hop-by-hop set is how a framing field named in
`Connection` once got dropped while its body was still relayed: request smuggling).

- hop-by-hop fields and `Connection` tokens (RFC 9110 §7.6.1): a framing field
  (`Content-Length`, `Transfer-Encoding`) named in `Connection` is refused, never dropped;
- field names are tokens and values carry no CR, LF or NUL (RFC 9110 §5.1, §5.5);
- status codes are three digits, 100-999 (RFC 9110 §15);
- fields HTTP/2 forbids (RFC 9113 §8.2.2).

Client-side and upstream-side violations are different errors (`ClientProtocolError`,
`UpstreamProtocolError`): the first is answered 400, the second 502.
"""

from __future__ import annotations

import re

from fastproxy._core import ProtocolError

HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"upgrade"))
"""Fields that describe one connection, never forwarded as they are (RFC 9110 §7.6.1)."""
FRAMING = frozenset((b"content-length", b"transfer-encoding"))
"""Fields that delimit an HTTP/1 body (RFC 9112 §6)."""
HOP_BY_HOP_REFRAMED = HOP_BY_HOP | FRAMING
"""What is dropped from a message whose body the proxy frames anew."""
H2_FORBIDDEN = frozenset((b"connection", b"keep-alive", b"proxy-connection",
                          b"transfer-encoding", b"upgrade"))
"""Connection-specific fields an HTTP/2 message must not carry (RFC 9113 §8.2.2); `te`
is allowed with the value "trailers" only (`check_h2_te`)."""

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class ClientProtocolError(ProtocolError):
    """The client broke the rules: answered 400."""


class UpstreamProtocolError(ProtocolError):
    """The upstream broke the rules: answered 502."""


def is_token(name: bytes) -> bool:
    """True for a valid field name or `Connection` token (RFC 9110 §5.6.2)."""
    return _TOKEN.match(name) is not None


def is_field_value(value: bytes) -> bool:
    """True when a field value has no CTL but HTAB: no CR, LF or NUL (RFC 9110 §5.5)."""
    return _BAD_VALUE.search(value) is None


def check_status(code: int) -> None:
    """Refuse a status code outside 100-999 (RFC 9110 §15: three digits, 1xx to 5xx
    defined; nothing below 100 exists)."""
    if not 100 <= code <= 999:
        raise ProtocolError(f"invalid status code {code}")


def check_fields(fields: list) -> None:
    """Refuse a field whose name is not a token or whose value has CR, LF, NUL or another
    CTL (RFC 9110 §5.1, §5.5). For fields that did not come through the HTTP/1 reader,
    which checks this itself (HTTP/2 headers, fields an addon set)."""
    for name, value in fields:
        if not is_token(name):
            raise ProtocolError(f"invalid field name {name[:64]!r}")
        if not is_field_value(value):
            raise ProtocolError(f"invalid value in field {name[:64].decode('latin-1')}")


def check_h2_te(value: bytes) -> None:
    """RFC 9113 §8.2.2: `te` in HTTP/2 may only say "trailers"."""
    if value.strip(b" \t").lower() != b"trailers":
        raise ProtocolError(f"te other than trailers in HTTP/2: {value[:64]!r}")
