"""Upstream connections: opened with the `serverconnect` event, kept alive, reused.

One pool per worker process, shared by all client connections, keyed by
(scheme, host, port). Idle connections are kept LIFO (the warmest first), at most
`upstream_pool_size` per key, and closed after `upstream_idle_timeout` seconds.

Each listener has its own pool. In upstream mode (`via`) every connection the layers
open to host:port is a CONNECT tunnel through the upstream proxy (RFC 9110 §9.3.6),
except those to the upstream proxy itself (absolute-form requests go there, kept alive
like any other). A SOCKS5 client is told whether its target could be reached, so its
connection is made first (`preconnect`) and parked, reading paused, until the layer
chosen for the tunnel asks for host:port (`connect` adopts it then).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import TYPE_CHECKING

from fastproxy._core import HEAD, HTTP1Reader, ProtocolError, build_head
from fastproxy.connection import ConnectionState, Server
from fastproxy.flow import Error
from fastproxy.hooks import ServerConnectionHookData, current_client
from fastproxy.http import Headers, HTTPFlow, Request, Response
from fastproxy.log import logger
from fastproxy.net.server_spec import ServerSpec
from fastproxy.proxy.proxyauth import basic_credential
from fastproxy.proxy.streams import Endpoint
from fastproxy.proxy.upstream_conn import PoolKey, Upstream, UpstreamError
from fastproxy.proxy.upstream_tls import open_tls_upstream, upstream_tls_state

if TYPE_CHECKING:
    from fastproxy.addonmanager import AddonManager
    from fastproxy.options import Options


class _Parked(asyncio.Protocol):
    """A connection made before the layer that will use it. What the server sends first
    (a server-first protocol: SMTP, SSH) is kept, reading paused, and `wake` called."""

    def __init__(self, wake=None) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.eof = False
        self.data: list[bytes] = []
        self.wake = wake

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data.append(data)
        self.transport.pause_reading()  # uvloop only reads after connection_made: here
        if self.wake is not None:
            self.wake()

    def eof_received(self) -> bool:
        self.eof = True
        if self.wake is not None:
            self.wake()
        return True

    def connection_lost(self, exc) -> None:
        self.lost = True


_parked: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "fastproxy_parked", default=None)
"""[host, port, _Parked, Server] of this client's parked connection (one task each)."""


class UpstreamPool:
    """Keep-alive upstream connections of one worker."""

    def __init__(self, loop: asyncio.AbstractEventLoop, options: Options,
                 addons: AddonManager, via: ServerSpec | None = None) -> None:
        self.loop = loop
        self.options = options
        self.addons = addons
        self.via = via
        """The upstream proxy (upstream mode), else None."""
        self.proxy_authorization: bytes | None = None
        if via is not None and options.upstream_auth:
            self.proxy_authorization = basic_credential(options.upstream_auth)
        self.idle: dict[PoolKey, list[Upstream]] = {}
        self._disconnects: set[asyncio.Task] = set()
        """`serverdisconnect` hooks still running (awaited by `close_all`)."""

    async def acquire(self, scheme: str, host: str, port: int) -> Upstream:
        """A warm idle connection to scheme://host:port, or a new one."""
        key = (scheme, host, port)
        return self.take_idle(key) or await self.open(key)

    def take_idle(self, key: PoolKey) -> Upstream | None:
        """A warm idle connection for `key`, if there is one (no coroutine needed)."""
        idle = self.idle.get(key)
        while idle:
            upstream = idle.pop()
            if upstream.endpoint.idle:
                upstream.reused = True
                return upstream
            upstream.endpoint.close()
        return None

    async def open(self, key: PoolKey) -> Upstream:
        """Open a new keep-alive HTTP connection."""
        if key[0] == "https":
            return await open_tls_upstream(self, key)
        options = self.options
        endpoint = Endpoint(HTTP1Reader(False, options.max_head_size, options.max_headers),
                            self.loop)
        server = await self.connect(key[1], key[2], endpoint)
        endpoint.on_lost = lambda _: self.closed(server)
        return Upstream(endpoint, server, key)

    async def connect(self, host: str, port: int, protocol) -> Server:
        """Connect `protocol` to host:port, announcing it with `serverconnect` first.

        The caller reports the connection's end with `closed(server)`.
        """
        slot = _parked.get()
        if slot is not None and slot[0] == host and slot[1] == port:
            _parked.set(None)
            parked = slot[2]
            if not parked.lost:
                server = _adopt(parked.transport, protocol, b"".join(parked.data), slot[3])
                if parked.eof:
                    protocol.eof_received()
                return server
            self.closed(slot[3])  # it went away while parked: connect anew
        via = self.via
        server = Server(address=(host, port), timestamp_start=time.time(), via=via)
        if self.addons.listeners.serverconnect:
            await self.addons.trigger("serverconnect", server)
        host, port = server.address
        tunnel = via is not None and (host, port) != tuple(via.address)
        listeners = self.addons.listeners
        try:
            if tunnel:
                server = await self._connect_via(server, protocol)
            else:
                transport, _ = await asyncio.wait_for(
                    self.loop.create_connection(lambda: protocol, host, port),
                    self.options.connect_timeout)
                server = _opened(server, transport)
        except (TimeoutError, OSError, ProtocolError) as e:
            reason = str(e) or type(e).__name__
            server.error = reason
            if listeners.server_connect_error:
                await self.addons.trigger("server_connect_error",
                                          ServerConnectionHookData.of(server))
            error = UpstreamError(f"cannot connect to {host}:{port}: {reason}")
            error.cause = e
            raise error from None
        if listeners.server_connected:
            await self.addons.trigger("server_connected", ServerConnectionHookData.of(server))
        return server

    async def _connect_via(self, server: Server, protocol) -> Server:
        """A CONNECT tunnel to server.address through the upstream proxy."""
        via, options = self.via, self.options
        host, port = server.address
        endpoint = Endpoint(HTTP1Reader(False, options.max_head_size, options.max_headers),
                            self.loop)
        phost, pport = via.address
        try:
            transport, _ = await asyncio.wait_for(
                self.loop.create_connection(lambda: endpoint, phost, pport),
                options.connect_timeout)
        except (TimeoutError, OSError) as e:
            raise OSError(f"upstream proxy {phost}:{pport}: {str(e) or type(e).__name__}")
        try:
            if via.scheme == "https":
                context = upstream_tls_state(options).upstream_context([])
                transport = endpoint.transport = await asyncio.wait_for(self.loop.start_tls(
                    transport, endpoint, context, server_hostname=phost),
                    options.connect_timeout)
            authority = (f"[{host}]" if ":" in host else host) + f":{port}"
            fields = [(b"Host", authority.encode())]
            if self.proxy_authorization is not None:
                fields.append((b"Proxy-Authorization", self.proxy_authorization))
            flow = await self._connect_flow(server, authority, fields)
            if flow is not None:  # Headers checks what an addon sets through it
                fields = list(flow.request.headers.fields)
            endpoint.write(build_head(b"CONNECT %s HTTP/1.1" % authority.encode(), fields,
                                      None, None))
            reader = endpoint.reader
            reader.expect_response_to(b"CONNECT")
            event = await asyncio.wait_for(endpoint.next_event(), options.connect_timeout)
            head = reader.head if event == HEAD else None
            if flow is not None and head is not None:
                flow.response = Response(head.version, head.status_code, head.reason,
                                         Headers(head.fields), b"", None, time.time(),
                                         time.time())
            if head is None or not 200 <= head.status_code < 300:
                status = f"{head.status_code} {head.reason.decode(errors='replace')}" \
                    if head is not None else "no response"
                reason = f"upstream proxy {phost}:{pport} refused CONNECT {authority}: {status}"
                await self._connect_ended(flow, "http_connect_error", reason)
                raise OSError(reason)
            await self._connect_ended(flow, "http_connected", None)
            rest = reader.take_rest()
        except BaseException:
            transport.abort()
            raise
        return _adopt(transport, protocol, rest, server)
    async def _connect_flow(self, server: Server, authority: str, fields: list):
        """The CONNECT to the upstream proxy as a flow, after `http_connect_upstream` (whose
        addons may change its headers); None when no addon listens to the CONNECT events."""
        listeners = self.addons.listeners
        if not (listeners.http_connect_upstream or listeners.http_connected
                or listeners.http_connect_error):
            return None
        client = current_client.get()
        flow = HTTPFlow(client, server, live=True)
        now = time.time()
        host, port = server.address
        flow.request = Request(host, port, b"CONNECT", b"", authority.encode(), b"",
                               b"HTTP/1.1", Headers(list(fields)), b"", None, now, now)
        if listeners.http_connect_upstream:
            await self.addons.trigger("http_connect_upstream", flow)
        return flow

    async def _connect_ended(self, flow, event: str, error: str | None) -> None:
        """`http_connected` or `http_connect_error` for a CONNECT flow (`_connect_flow`)."""
        if flow is None:
            return
        if error is not None:
            flow.error = Error(error)
        if getattr(self.addons.listeners, event):
            await self.addons.trigger(event, flow)

    async def preconnect(self, host: str, port: int, wake=None) -> Server:
        """Connect to host:port now and park the connection for this client's next
        `connect(host, port, ...)`; `drop_parked` closes it if nobody took it. `wake()` is
        called when the server sends something first."""
        parked = _Parked(wake)
        server = await self.connect(host, port, parked)
        _parked.set([host, port, parked, server])
        return server

    def parked_spoke_first(self) -> bool:
        """Whether this client's parked connection received bytes (or a FIN) already."""
        slot = _parked.get()
        return slot is not None and bool(slot[2].data or slot[2].eof)

    def drop_parked(self) -> None:
        slot = _parked.get()
        if slot is not None:
            _parked.set(None)
            if slot[2].transport is not None:
                slot[2].transport.close()
            self.closed(slot[3])

    def closed(self, server: Server) -> None:
        """An upstream connection ended: record it and fire `serverdisconnect`."""
        server.state = ConnectionState.CLOSED
        server.timestamp_end = time.time()
        if self.addons.listeners.serverdisconnect:
            task = self.loop.create_task(self.addons.trigger("serverdisconnect", server))
            self._disconnects.add(task)
            task.add_done_callback(self._disconnects.discard)

    def release(self, upstream: Upstream) -> None:
        """Return a connection after a complete exchange; closes it if it can't be kept."""
        endpoint = upstream.endpoint
        idle = self.idle.setdefault(upstream.key, [])
        if endpoint.idle and len(idle) < self.options.upstream_pool_size:
            upstream.idle_since = self.loop.time()
            idle.append(upstream)
        else:
            endpoint.close()

    def sweep(self) -> None:
        """Close connections idle for longer than the idle timeout (called periodically)."""
        deadline = self.loop.time() - self.options.upstream_idle_timeout
        for key, idle in list(self.idle.items()):
            keep = [u for u in idle if u.idle_since > deadline and u.endpoint.idle]
            for upstream in idle:
                if upstream not in keep:
                    upstream.endpoint.close()
            if keep:
                self.idle[key] = keep
            else:
                del self.idle[key]

    async def close_all(self) -> None:
        """Close every idle connection and wait for their `serverdisconnect` hooks."""
        for idle in self.idle.values():
            for upstream in idle:
                upstream.endpoint.close()
        self.idle.clear()
        for _ in range(3):  # let the transports report connection_lost
            await asyncio.sleep(0)
        if self._disconnects:
            await asyncio.wait(self._disconnects, timeout=5)
        logger.debug("upstream pool closed")


def _opened(server: Server, transport) -> Server:
    server.timestamp_tcp_setup = time.time()
    server.peername = _address(transport.get_extra_info("peername"))
    server.sockname = _address(transport.get_extra_info("sockname"))
    server.state = ConnectionState.OPEN
    return server


def _adopt(transport, protocol, pending: bytes, server: Server) -> Server:
    """Give an open transport to `protocol`, as if it had just connected."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if pending:
        protocol.data_received(pending)
    transport.resume_reading()
    if server.state != ConnectionState.OPEN:
        _opened(server, transport)
    return server


def _address(address) -> tuple[str, int] | None:
    return (address[0], address[1]) if address else None


__all__ = ["PoolKey", "Upstream", "UpstreamError", "UpstreamPool"]
