"""Server specs name an upstream server or proxy: a scheme and a (host, port) address.

    ServerSpec.parse("http://example.com:8080") == ("http", ("example.com", 8080))
    ServerSpec.parse("example.com", default_scheme="https") == ("https", ("example.com", 443))

A ServerSpec is a tuple, like mitmproxy's, so its state `[scheme, [host, port]]` is what
mitmproxy writes for `server_conn.via`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any, Literal, NamedTuple, get_args

Scheme = Literal["http", "https", "http3", "tls", "dtls", "tcp", "udp", "dns", "quic"]
SCHEMES: tuple[str, ...] = get_args(Scheme)
DEFAULT_PORTS = {"http": 80, "https": 443, "http3": 443, "quic": 443, "dns": 53}

_SPEC_RE = re.compile(
    r"""
    ^
    (?:(?P<scheme>[a-z0-9]+)://)?  # the scheme is optional
    (?P<host>\[[^\]]+\]|[^:/\[\]]+)  # DNS name, IPv4 address, or [IPv6 address]
    (?::(?P<port>\d+))?            # the port is optional
    /?                             # a trailing slash is fine, a path is not
    $
    """,
    re.VERBOSE | re.IGNORECASE,
)
_LABEL_RE = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)", re.IGNORECASE)


class ServerSpec(NamedTuple):
    """An upstream server or proxy to connect to."""

    scheme: Scheme
    """The protocol to speak, e.g. "http" or "tls"."""
    address: tuple[str, int]
    """The server's (host, port); host is a domain name or an IP address."""

    @classmethod
    def parse(cls, spec: str, default_scheme: str | None = None) -> ServerSpec:
        """Parse `[scheme://]host[:port][/]`. Raises ValueError if the spec is invalid."""
        return _parse(spec, default_scheme)

    def get_state(self) -> list[Any]:
        return [self.scheme, list(self.address)]

    @classmethod
    def from_state(cls, state: Any) -> ServerSpec:
        try:
            scheme, (host, port) = state
        except (TypeError, ValueError):
            raise ValueError(f"invalid server spec state: {state!r}") from None
        if scheme not in SCHEMES or not isinstance(host, str) or not _is_port(port):
            raise ValueError(f"invalid server spec state: {state!r}")
        return cls(scheme, (host, port))

    def __str__(self) -> str:
        host, port = self.address
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@functools.cache
def _parse(spec: str, default_scheme: str | None) -> ServerSpec:
    m = _SPEC_RE.match(spec)
    if not m:
        raise ValueError(f"invalid server spec {spec!r}: expected [scheme://]host[:port]")
    scheme = (m["scheme"] or default_scheme or "").lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"invalid server spec {spec!r}: scheme {scheme or '(none)'!r} "
            f"is not one of {', '.join(SCHEMES)}"
        )
    host = m["host"].removeprefix("[").removesuffix("]")
    if not _is_host(host):
        raise ValueError(f"invalid server spec {spec!r}: bad host {host!r}")
    return ServerSpec(scheme, (host, _port(spec, scheme, m["port"])))  # type: ignore[arg-type]


def _port(spec: str, scheme: str, given: str | None) -> int:
    if given is None:
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"invalid server spec {spec!r}: {scheme} needs a port")
        return DEFAULT_PORTS[scheme]
    port = int(given)
    if not _is_port(port):
        raise ValueError(f"invalid server spec {spec!r}: port {port} is out of range")
    return port


def _is_port(port: Any) -> bool:
    return isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536


def _is_host(host: str) -> bool:
    """An IP address, or a DNS name (RFC 1123 labels, plus "_" seen in the wild)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL_RE.fullmatch(x) for x in name.split("."))
