"""Which layer comes next: the one place that knows every layer (as mitmproxy's
NextLayer addon).

Layers import no other layer. When one has done its part, it asks this module, through
`ctx.next_layer` (the server puts this module there), what runs next, and runs that with
`run_layer`, which announces it with the `next_layer(layer)` event: a layer an addon
returns from it runs instead. The choices:

- a new client, by its mode (`first_layer`): HTTP/1 (with `--proxyauth`, or through an
  upstream proxy), SOCKS5, transparent, reverse (TCP, or TLS-or-plain HTTP);
- reverse:http(s)://, from the client's first byte (`reverse_layer`): TLS or HTTP/1;
- a tunnel (CONNECT, SOCKS5, transparent) to host:port (`tunnel_layer`): from the host
  options (`--tcp-hosts`, `--ignore-hosts`, `--allow-hosts`), then from its first bytes:
  HTTP/1, TLS or TCP;
- after the client's TLS handshake (`after_tls`): HTTP/2 (ALPN h2), HTTP/1 to an h2-only
  upstream (`Http1ToH2Layer`), or HTTP/1;
- after 101 Switching Protocols (`upgraded_layer`): WebSocket when addons want its
  messages, else None (the HTTP layer relays the bytes).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fastproxy.mode_specs import (
    ReverseMode,
    Socks5Mode,
    TransparentMode,
    UpstreamMode,
)
from fastproxy.proxy.context import Layer, RootContext
from fastproxy.proxy.layers.http.http1 import HttpLayer
from fastproxy.proxy.layers.http.http1_h2 import Http1ToH2Layer
from fastproxy.proxy.layers.http.http2 import Http2Layer
from fastproxy.proxy.layers.http.upstream_mode import UpstreamHttpLayer, auth_layer
from fastproxy.proxy.layers.socks5 import Socks5Layer
from fastproxy.proxy.layers.tcp import TcpLayer
from fastproxy.proxy.layers.tls import ReverseTlsLayer, TlsLayer, tls_state
from fastproxy.proxy.layers.websocket import WebSocketLayer, wants_websocket_flows
from fastproxy.proxy.transparent import TransparentLayer
from fastproxy.proxy.upstream_conn import Upstream

if TYPE_CHECKING:
    from fastproxy.options import Options

_HTTP_START = re.compile(rb"[A-Z]{3,10} ")
TLS_HANDSHAKE = 0x16


def prepare(options: Options) -> None:
    """What the layers need before the first client: the CA (created on first start)."""
    tls_state(options)


def first_layer(ctx: RootContext, validator) -> Layer:
    """The layer a new client of this mode starts with."""
    mode = ctx.mode
    if isinstance(mode, ReverseMode):
        if mode.scheme in ("tcp", "tls"):
            return TcpLayer(ctx, mode.address)
        return ReverseTlsLayer(ctx)  # TLS or plain HTTP, as the client's first byte says
    if isinstance(mode, Socks5Mode):
        return Socks5Layer(ctx, validator)
    if isinstance(mode, TransparentMode):
        return TransparentLayer(ctx)
    if isinstance(mode, UpstreamMode):
        return auth_layer(UpstreamHttpLayer, ctx, validator)
    if validator is not None:
        return auth_layer(HttpLayer, ctx, validator)
    return HttpLayer(ctx)


def reverse_layer(ctx: RootContext, tls: bool) -> Layer:
    """reverse:http(s):// mode, once the client's first byte says whether it is TLS."""
    if tls:
        mode = ctx.mode
        return TlsLayer(ctx, mode.address, upstream_tls=mode.scheme == "https", tunnel=False)
    return HttpLayer(ctx)


async def tunnel_layer(ctx: RootContext, host: str, port: int) -> Layer:
    """The layer for a tunnel's content, from the host options and its first bytes."""
    if _matches(ctx.options.tcp_hosts, host, port):
        return TcpLayer(ctx, (host, port))
    if _passes_through(ctx.options, host, port):
        return TcpLayer(ctx, (host, port), ignore=True)
    client = ctx.client
    while client.reader.buffered == 0 and not client.closed and not client.reader.at_eof:
        if ctx.pool.parked_spoke_first():  # a server-first protocol (SMTP, SSH): bytes
            return TcpLayer(ctx, (host, port))
        await client.wait_data()
        if client.reader.buffered == 0 and client.reader.at_message_start and client.closed:
            break
    first = client.reader.peek(16)
    if first and first[0] != TLS_HANDSHAKE and _HTTP_START.match(first):
        return HttpLayer(ctx, tunnel=(host, port))
    if first and first[0] == TLS_HANDSHAKE:
        return TlsLayer(ctx, (host, port))
    return TcpLayer(ctx, (host, port))


def after_tls(tls: TlsLayer, upstream: Upstream | None, alpn: bytes | None) -> Layer:
    """The HTTP layer for a client whose TLS handshake completed with `alpn`; `upstream`
    is the connection `tls` opened (None if it failed or was not needed)."""
    ctx = tls.ctx
    if alpn == b"h2":
        return Http2Layer(ctx, tls.address if tls.tunnel else None,
                          "https" if tls.upstream_tls else "http", upstream)
    if upstream is not None and upstream.server.alpn == b"h2":
        return Http1ToH2Layer(ctx, tls.address, upstream)  # reverse mode too
    if upstream is not None:
        ctx.server_conn = upstream.server
        ctx.pool.release(upstream)  # the HTTP layer's first request takes it back
    if tls.tunnel:
        return HttpLayer(ctx, tunnel=tls.address, scheme="https")
    return HttpLayer(ctx)


def upgraded_layer(ctx: RootContext, upstream: Upstream, flow) -> Layer | None:
    """After 101 Switching Protocols: WebSocket messages for the addons, else None (the
    bytes are relayed as they are)."""
    if flow is not None and flow.websocket is not None and wants_websocket_flows(ctx.listeners):
        return WebSocketLayer(ctx, flow, upstream)
    return None


def _matches(patterns: list, host: str, port: int) -> bool:
    address = f"{host}:{port}"
    return any(re.search(p, address, re.IGNORECASE) for p in patterns)


def _passes_through(options, host: str, port: int) -> bool:
    address = f"{host}:{port}"
    if any(re.search(p, address, re.IGNORECASE) for p in options.ignore_hosts):
        return True
    return bool(options.allow_hosts) and not any(
        re.search(p, address, re.IGNORECASE) for p in options.allow_hosts)


__all__ = ["after_tls", "first_layer", "prepare", "reverse_layer", "tunnel_layer",
           "upgraded_layer"]
