"""Upstream connections: opened with the `serverconnect` event, kept alive, reused.

One pool per worker process, shared by all client connections, keyed by
(scheme, host, port). Idle connections are kept LIFO (the warmest first), at most
`upstream_pool_size` per key, and closed after `upstream_idle_timeout` seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from fastproxy._core import HTTP1Reader
from fastproxy.connection import ConnectionState, Server
from fastproxy.log import logger
from fastproxy.proxy.streams import Endpoint

if TYPE_CHECKING:
    from fastproxy.addonmanager import AddonManager
    from fastproxy.options import Options

PoolKey = tuple[str, str, int]


class UpstreamError(Exception):
    """The upstream server could not be reached."""


class Upstream:
    """An open upstream connection: its endpoint and its `Server` object."""

    __slots__ = ("endpoint", "server", "key", "idle_since", "reused")

    def __init__(self, endpoint: Endpoint, server: Server, key: PoolKey) -> None:
        self.endpoint = endpoint
        self.server = server
        self.key = key
        self.idle_since = 0.0
        self.reused = False


class UpstreamPool:
    """Keep-alive upstream connections of one worker."""

    def __init__(self, loop: asyncio.AbstractEventLoop, options: Options,
                 addons: AddonManager) -> None:
        self.loop = loop
        self.options = options
        self.addons = addons
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
            from fastproxy.proxy.layers.tls import open_tls_upstream
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
        server = Server(address=(host, port), timestamp_start=time.time())
        if self.addons.listeners.serverconnect:
            await self.addons.trigger("serverconnect", server)
        host, port = server.address
        try:
            transport, _ = await asyncio.wait_for(
                self.loop.create_connection(lambda: protocol, host, port),
                self.options.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            reason = str(e) or type(e).__name__
            server.error = reason
            raise UpstreamError(f"cannot connect to {host}:{port}: {reason}") from None
        server.timestamp_tcp_setup = time.time()
        server.peername = _address(transport.get_extra_info("peername"))
        server.sockname = _address(transport.get_extra_info("sockname"))
        server.state = ConnectionState.OPEN
        return server

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


def _address(address) -> tuple[str, int] | None:
    return (address[0], address[1]) if address else None
