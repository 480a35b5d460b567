"""CONNECT tunnels (regular and upstream modes), what runs inside them, and the raw TCP
relay. SOCKS5 and transparent mode choose their tunnel's layer here too.

After `200 Connection established` the first client bytes decide the next layer:
HTTP is parsed as HTTP (`HttpLayer` with the tunnel's host), anything else is relayed
as bytes (`TcpLayer`, see tcp.py). Hosts matching `--tcp-hosts` are TCP flows without
looking; hosts matching `--ignore-hosts` (or missing `--allow-hosts`) are passed through
untouched, with no flow and no events.
"""

from __future__ import annotations

import re
import time

from fastproxy._core import ProtocolError, Relay
from fastproxy.http import Headers, HTTPFlow, Request
from fastproxy.proxy.context import Layer, RootContext, run_layer
from fastproxy.proxy.layers.http.routing import split_authority
from fastproxy.proxy.layers.tcp import TcpLayer, relay
from fastproxy.proxy.mode_specs import RegularMode, UpstreamMode
from fastproxy.proxy.upstream import Upstream, UpstreamError

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
_HTTP_START = re.compile(rb"[A-Z]{3,10} ")
TLS_HANDSHAKE = 0x16


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
    await run_layer(ctx, await choose_tunnel_layer(ctx, host, port))


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
        await run_layer(ctx, await choose_tunnel_layer(ctx, host, port))
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
    from fastproxy.proxy.layers.http.http1_heads import serialize_response
    ctx.client.write(serialize_response(response, close=True))
    ctx.client.transport.close()
    return False


async def choose_tunnel_layer(ctx: RootContext, host: str, port: int) -> Layer:
    """The layer for a tunnel's content, from the host options and its first bytes."""
    from fastproxy.proxy.layers.http.http1 import HttpLayer
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
        from fastproxy.proxy.layers.tls import TlsLayer
        return TlsLayer(ctx, (host, port))
    return TcpLayer(ctx, (host, port))


def _matches(patterns: list, host: str, port: int) -> bool:
    address = f"{host}:{port}"
    return any(re.search(p, address, re.IGNORECASE) for p in patterns)


def _passes_through(options, host: str, port: int) -> bool:
    address = f"{host}:{port}"
    if any(re.search(p, address, re.IGNORECASE) for p in options.ignore_hosts):
        return True
    return bool(options.allow_hosts) and not any(
        re.search(p, address, re.IGNORECASE) for p in options.allow_hosts)


async def relay_upgraded(ctx: RootContext, upstream: Upstream, flow: HTTPFlow | None) -> None:
    """After 101 Switching Protocols: WebSocket messages for the addons, else raw bytes."""
    from fastproxy.proxy.layers.websocket import WebSocketLayer, wants_websocket_flows
    if flow is not None and flow.websocket is not None and wants_websocket_flows(ctx.listeners):
        await run_layer(ctx, WebSocketLayer(ctx, flow, upstream))
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
