"""Where a request goes: the upstream and the head to send it with, by proxy mode.

- regular mode: absolute-form targets (`GET http://host:port/path`), rewritten to
  origin-form for the upstream with the Host set to the target's authority (RFC 9112
  §3.2.2);
- inside a CONNECT tunnel: origin-form, to the tunnel's host;
- reverse mode: origin-form, to the configured upstream, with the Host header set to it
  unless `keep_host_header`.
"""

from __future__ import annotations

from fastproxy._core import ProtocolError, Route
from fastproxy.mode_specs import ReverseMode, UpstreamMode
from fastproxy.proxy.layers.http.semantics import HOP_BY_HOP

HOP_BY_HOP_AND_HOST = HOP_BY_HOP | {b"host"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def route_request(ctx, head, tunnel: tuple[str, int] | None,
                  tunnel_scheme: str = "http") -> Route:
    """The route for a request head, or ProtocolError when the target is unusable."""
    if head.host is None and head.version == b"HTTP/1.1":  # the reader checked its value
        raise ProtocolError("HTTP/1.1 request without Host (RFC 9112 3.2)")
    mode = ctx.mode
    target = head.target
    if isinstance(mode, ReverseMode):
        host, port = mode.address
        scheme = "https" if mode.scheme in ("https", "tls") else "http"
        authority, path = b"", _origin_form(target)
        host_header = None if ctx.options.keep_host_header else _host_value(scheme, host, port)
    elif tunnel is not None:
        (host, port), scheme = tunnel, tunnel_scheme
        authority, path, host_header = b"", _origin_form(target), None
    else:
        scheme, host, port, authority, path = parse_absolute_form(target)
        # RFC 9112 §3.2.2: a proxy ignores the Host of an absolute-form request and
        # sends the target's authority instead, so the origin sees the host we routed to.
        host_header = authority.decode("ascii")
        if type(mode) is UpstreamMode:  # to the upstream proxy, still in absolute-form
            return _via_upstream(ctx, head, scheme, authority, path, host_header)
    drop = _drop_set(head, host_header is not None)
    extra = [(b"Host", host_header.encode())] if host_header is not None else None
    start_line = b" ".join((head.method, path, head.version))
    return Route(scheme, host, port, authority, path, start_line, drop, extra, host_header)


def _via_upstream(ctx, head, scheme: str, authority: bytes, path: bytes,
                  host_header: str) -> Route:
    """upstream mode: the route to the upstream proxy (its pool key), the request line in
    absolute-form, and the upstream_auth credential."""
    pool = ctx.pool
    via_scheme, (via_host, via_port) = pool.via
    extra = [(b"Host", authority)]
    drop = _drop_set(head, True)
    if pool.proxy_authorization is not None:  # ours replaces the client's
        extra.append((b"Proxy-Authorization", pool.proxy_authorization))
        drop = drop | {b"proxy-authorization"}
    target = b"%s://%s%s" % (scheme.encode(), authority, path)
    start_line = b" ".join((head.method, target, head.version))
    return Route(via_scheme, via_host, via_port, authority, path, start_line, drop, extra,
                 host_header)


def parse_absolute_form(target: bytes) -> tuple[str, str, int, bytes, bytes]:
    """(scheme, host, port, authority, path) of `http://host[:port]/path`."""
    scheme_end = target.find(b"://")
    scheme = target[:scheme_end].lower().decode("ascii", "replace") if scheme_end > 0 else ""
    if scheme not in _DEFAULT_PORTS:
        raise ProtocolError(
            f"invalid request target {target[:100]!r}: a proxy request needs absolute-form "
            "(http://host/path)")
    rest = target[scheme_end + 3:]
    slash = rest.find(b"/")
    authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
    query = authority.find(b"?")
    if query >= 0:
        authority, path = authority[:query], b"/" + authority[query:]
    host, port = split_authority(authority, _DEFAULT_PORTS[scheme])
    return scheme, host, port, authority, path


def split_authority(authority: bytes, default_port: int) -> tuple[str, int]:
    """host and port of `host`, `host:port`, `[v6]` or `[v6]:port`."""
    try:
        text = authority.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"non-ASCII authority {authority[:100]!r}") from None
    if "@" in text:
        raise ProtocolError("credentials in the request target are not allowed")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ProtocolError(f"invalid authority {text!r}")
        host, rest = text[1:end], text[end + 1:]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ProtocolError(f"invalid authority {text!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ProtocolError(f"invalid port in {text!r}")
    return host, int(port_text)


def _origin_form(target: bytes) -> bytes:
    if target.startswith(b"/") or target == b"*":
        return target
    if b"://" in target:  # absolute-form is allowed everywhere (RFC 9112 §3.2.2)
        return parse_absolute_form(target)[4]
    raise ProtocolError(f"invalid request target {target[:100]!r}")


def _drop_set(head, rewrite_host: bool) -> frozenset:
    if not (head.upgrade or head.connection is not None or head.expect_continue):
        return HOP_BY_HOP_AND_HOST if rewrite_host else HOP_BY_HOP  # the usual case: no allocation
    drop = HOP_BY_HOP
    if head.upgrade:
        drop = drop - {b"upgrade", b"connection"}  # the upgrade is end to end here
    elif head.connection is not None:
        drop = drop | head.connection_tokens  # checked by the reader: no framing field
    if rewrite_host:
        drop = drop | {b"host"}
    if head.expect_continue:
        drop = drop | {b"expect"}  # the proxy answers 100 Continue itself
    return drop


def _host_value(scheme: str, host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
