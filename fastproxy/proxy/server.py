"""The listener of one worker process: accepts clients and runs their layers.

This is the only module (with `streams.py` and the relay) that touches sockets. Each
accepted connection gets an `Endpoint`, a `Client` and a `RootContext`; its first layer
follows from the proxy mode. Once a second, housekeeping closes connections idle past
`idle_timeout`, heads taking longer than `head_timeout`, and stale upstream connections.
"""

from __future__ import annotations

import asyncio
import socket
import time

from fastproxy._core import HTTP1Reader
from fastproxy.addonmanager import AddonManager
from fastproxy.connection import Client, ConnectionState
from fastproxy.log import logger
from fastproxy.options import Options
from fastproxy.proxy.context import Layer, RootContext, run_layer
from fastproxy.proxy.mode_specs import ProxyMode, ReverseMode
from fastproxy.proxy.streams import ConnectionGone, Endpoint, ResponseTimedOut
from fastproxy.proxy.upstream import UpstreamPool

HOUSEKEEPING_INTERVAL = 1.0


def listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; SO_REUSEPORT lets worker processes share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


class ProxyServer:
    """Accepts client connections on one socket and serves each of them."""

    def __init__(self, options: Options, addons: AddonManager) -> None:
        self.options = options
        self.addons = addons
        self.mode = ProxyMode.parse(options.mode)
        self.loop = asyncio.get_running_loop()
        self.pool = UpstreamPool(self.loop, options, addons)
        self.clients: dict[RootContext, float] = {}
        """Open client connections -> when their current partial head was first seen (or 0).

        Housekeeping looks at `ctx.client`, the endpoint the layers read from now: after
        TLS interception that is the decrypted one, so the timeouts hold there too."""
        self._server: asyncio.AbstractServer | None = None
        self._housekeeping: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, sock: socket.socket | None = None) -> tuple[str, int]:
        """Start listening; returns the address actually bound."""
        options = self.options
        from fastproxy.proxy.layers.tls import tls_state
        tls_state(options)  # the CA exists (created on first start) before clients come
        if sock is None:
            sock = listen_socket(options.listen_host, options.listen_port, options.workers > 1)
        self._server = await self.loop.create_server(self._new_endpoint, sock=sock)
        self._housekeeping = self.loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeep)
        return sock.getsockname()[:2]

    async def stop(self) -> None:
        """Stop accepting, close every connection and wait for their layers to end."""
        if self._server is not None:
            self._server.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for ctx in list(self.clients):
            ctx.client.abort(ConnectionGone("proxy shutting down"))
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.pool.close_all()

    def _new_endpoint(self) -> Endpoint:
        options = self.options
        reader = HTTP1Reader(True, options.max_head_size, options.max_headers)
        return Endpoint(reader, self.loop, self._client_connected)

    def _client_connected(self, endpoint: Endpoint) -> None:
        task = self.loop.create_task(self._serve(endpoint))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, endpoint: Endpoint) -> None:
        transport = endpoint.transport
        client = Client(peername=transport.get_extra_info("peername")[:2],
                        sockname=transport.get_extra_info("sockname")[:2],
                        state=ConnectionState.OPEN, proxy_mode=self.mode)
        ctx = RootContext(client, endpoint, self.mode, self.options, self.addons, self.pool)
        self.clients[ctx] = 0.0
        listeners = self.addons.listeners
        try:
            if listeners.clientconnect:
                await self.addons.trigger("clientconnect", ctx)
            await run_layer(ctx, self.first_layer(ctx))
        except ConnectionGone:
            pass
        except Exception:
            logger.exception("Internal error on the connection from %s:%d", *client.peername)
        finally:
            transport.close()
            self.clients.pop(ctx, None)
            client.state = ConnectionState.CLOSED
            client.timestamp_end = time.time()
            if listeners.clientdisconnect:
                await self.addons.trigger("clientdisconnect", ctx)

    def first_layer(self, ctx: RootContext) -> Layer:
        from fastproxy.proxy.layers.http1 import HttpLayer
        from fastproxy.proxy.layers.tunnel import TcpLayer
        mode = self.mode
        if isinstance(mode, ReverseMode) and mode.scheme in ("tcp", "tls"):
            return TcpLayer(ctx, mode.address)
        if isinstance(mode, ReverseMode) and mode.scheme == "https":
            from fastproxy.proxy.layers.tls import ReverseTlsLayer
            return ReverseTlsLayer(ctx)  # TLS or plain HTTP, as the client's first byte says
        return HttpLayer(ctx)

    def _housekeep(self) -> None:
        """Close idle and slow clients; drop stale upstream connections."""
        now = self.loop.time()
        idle_timeout, head_timeout = self.options.idle_timeout, self.options.head_timeout
        read_timeout = self.options.read_timeout
        for ctx, head_since in list(self.clients.items()):
            awaiting = ctx.awaiting_response
            if awaiting is not None and now - awaiting[1] > read_timeout:
                ctx.awaiting_response = None
                awaiting[0].abort(ResponseTimedOut(
                    f"no response from upstream within read_timeout ({read_timeout:g} s)"))
            endpoint = ctx.client
            reader = endpoint.reader
            if reader.in_head and reader.buffered:
                if not head_since:
                    self.clients[ctx] = now
                elif now - head_since > head_timeout:
                    endpoint.abort(ConnectionGone("request head timed out"))
                continue
            if head_since:
                self.clients[ctx] = 0.0
            if endpoint.wait_started and now - endpoint.wait_started > idle_timeout:
                endpoint.abort(ConnectionGone("idle timeout"))
        self.pool.sweep()
        self._housekeeping = self.loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeep)
