"""CONNECT (regular and upstream modes), and the bytes after 101 Switching Protocols.

After `200 Connection established`, `next_layer.tunnel_layer` chooses what runs in the
tunnel from the host options and the first client bytes (HTTP/1, TLS, TCP); SOCKS5 and
transparent mode ask it the same. After a 101 that `next_layer.upgraded_layer` gives no
layer for (no WebSocket listener), `relay_upgraded` relays the bytes as they are.
"""

from __future__ import annotations

import time

from fastproxy._core import ProtocolError, Relay
from fastproxy.http import Headers, HTTPFlow, Request
from fastproxy.mode_specs import RegularMode, UpstreamMode
from fastproxy.proxy.context import RootContext, run_layer
from fastproxy.proxy.layers.http.http1_heads import serialize_response
from fastproxy.proxy.layers.http.routing import split_authority
from fastproxy.proxy.pipes import relay
from fastproxy.proxy.upstream_conn import Upstream, UpstreamError

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


async def handle_connect(layer, head) -> None:
    """Answer a CONNECT request and run the layer for what the tunnel carries."""
    ctx: RootContext = layer.ctx
    if not isinstance(ctx.mode, (RegularMode, UpstreamMode)) or layer.tunnel is not None:
        layer.refuse(405, "CONNECT is only allowed in regular and upstream modes")
        return
    try:
        host, port = split_authority(head.target, 443)
    except ProtocolError as e:
        layer.refuse(400, f"Bad CONNECT target: {e}")
        return
    if ctx.listeners.http_connect and not await _connect_allowed(ctx, head, host, port):
        return
    if isinstance(ctx.mode, UpstreamMode):
        await _connect_upstream(layer, host, port)
        return
    ctx.client.write(ESTABLISHED)
    await run_layer(ctx, await ctx.next_layer.tunnel_layer(ctx, host, port))


async def _connect_upstream(layer, host: str, port: int) -> None:
    """upstream mode: the tunnel through the upstream proxy is made first, so that its
    refusal reaches the client as a 502; the tunnel's layer then adopts it."""
    ctx: RootContext = layer.ctx
    try:
        await ctx.pool.preconnect(host, port, ctx.client._wake)
    except UpstreamError as e:
        layer.refuse(502, str(e))
        return
    try:
        ctx.client.write(ESTABLISHED)
        await run_layer(ctx, await ctx.next_layer.tunnel_layer(ctx, host, port))
    finally:
        ctx.pool.drop_parked()


async def _connect_allowed(ctx: RootContext, head, host: str, port: int) -> bool:
    """Fire `http_connect`; a non-2xx response set by an addon refuses the tunnel."""
    flow = HTTPFlow(ctx.client_conn, None, live=True)
    flow.request = Request(host, port, b"CONNECT", b"", head.target, b"", head.version,
                           Headers(head.fields), b"", None, time.time(), time.time())
    await ctx.addons.trigger("http_connect", flow)
    response = flow.response
    if flow.error is not None:
        ctx.client.transport.close()
        return False
    if response is None or 200 <= response.status_code < 300:
        return True
    ctx.client.write(serialize_response(response, close=True))
    ctx.client.transport.close()
    return False


async def relay_upgraded(ctx: RootContext, upstream: Upstream, flow: HTTPFlow | None) -> None:
    """After 101 Switching Protocols: the layer `next_layer` chooses (WebSocket messages
    for the addons), else the raw bytes relayed both ways."""
    layer = ctx.next_layer.upgraded_layer(ctx, upstream, flow)
    if layer is not None:
        await run_layer(ctx, layer)
        return
    endpoint = upstream.endpoint
    server_side = Relay()
    server_side.transport = endpoint.transport
    pending = endpoint.reader.take_rest()
    endpoint.on_lost = None
    endpoint.transport.set_protocol(server_side)
    if pending:
        ctx.client.write(pending)
    await relay(ctx, server_side, endpoint.transport)
    ctx.pool.closed(upstream.server)


__all__ = ["ESTABLISHED", "handle_connect", "relay_upgraded"]
