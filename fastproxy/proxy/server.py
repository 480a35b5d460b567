"""The listeners of one worker process: accept clients and run their layers.

This is the only module (with `streams.py` and the relay) that touches sockets. There is
one listener per `--mode` (`regular@8080`, `socks5@1080`, ...), each with its own
upstream pool (in upstream mode, that pool reaches everything through the upstream
proxy). Each accepted connection gets an `Endpoint`, a `Client` and a `RootContext`; its
first layer follows from its listener's mode (`next_layer.first_layer`).
`block_global` / `block_private` refuse clients by address first, as mitmproxy's block
addon does. Once a second, housekeeping closes connections idle past `idle_timeout`,
heads taking longer than `head_timeout`, and stale upstream connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass

from fastproxy._core import HTTP1Reader
from fastproxy.addonmanager import AddonManager
from fastproxy.connection import Client, ConnectionState
from fastproxy.log import logger
from fastproxy.mode_specs import (
    ProxyMode,
    RegularMode,
    Socks5Mode,
    TransparentMode,
    UpstreamMode,
)
from fastproxy.net.server_spec import ServerSpec
from fastproxy.options import Options
from fastproxy.proxy import next_layer
from fastproxy.proxy.context import Layer, RootContext, run_layer
from fastproxy.proxy.proxyauth import make_validator
from fastproxy.proxy.streams import ConnectionGone, Endpoint, ResponseTimedOut
from fastproxy.proxy.transparent import check_supported
from fastproxy.proxy.upstream import UpstreamPool

HOUSEKEEPING_INTERVAL = 1.0


def listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; SO_REUSEPORT lets worker processes share the port.
    An empty host listens on every address (IPv6 and IPv4 where the system allows)."""
    family = socket.AF_INET6 if ":" in host or (not host and socket.has_ipv6) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if not host and family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


@dataclass(eq=False)
class Listener:
    """One `--mode`: its socket, its upstream pool and what its clients need."""

    mode: ProxyMode
    pool: UpstreamPool
    validator: object = None
    """The proxyauth check for its clients (None: no authentication)."""
    server: asyncio.AbstractServer | None = None
    address: tuple[str, int] | None = None
    check_clients: bool = False
    """Whether block_global / block_private can refuse anyone here (not on loopback)."""


def blocked(peer: str, options: Options) -> str | None:
    """Why a client at `peer` is refused (block_global, block_private), or None."""
    try:
        address = ipaddress.ip_address(peer.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        address = address.ipv4_mapped or address
    if address.is_loopback or address.is_link_local:
        return None
    if options.block_private and address.is_private:
        return "block_private"
    if options.block_global and address.is_global:
        return "block_global"
    return None


class ProxyServer:
    """Accepts client connections on one socket per mode and serves each of them."""

    def __init__(self, options: Options, addons: AddonManager) -> None:
        self.options = options
        self.addons = addons
        self.loop = asyncio.get_running_loop()
        self.modes = parse_modes(options.mode)
        validator = make_validator(options.proxyauth)
        self.listeners = [Listener(mode, self._pool(mode),
                                   validator if _authenticates(mode) else None)
                          for mode in self.modes]
        self.mode = self.modes[0]
        self.pool = self.listeners[0].pool
        self.clients: dict[RootContext, float] = {}
        """Open client connections -> when their current partial head was first seen (or 0).

        Housekeeping looks at `ctx.client`, the endpoint the layers read from now: after
        TLS interception that is the decrypted one, so the timeouts hold there too."""
        self._housekeeping: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    def _pool(self, mode: ProxyMode) -> UpstreamPool:
        via = None
        if isinstance(mode, UpstreamMode):
            via = ServerSpec(mode.scheme, mode.address)
        return UpstreamPool(self.loop, self.options, self.addons, via)

    async def start(self, sock: socket.socket | None = None) -> tuple[str, int]:
        """Start listening (`sock` is for the first mode); returns the first address bound.
        Every listener's address is in `self.listeners`."""
        options = self.options
        next_layer.prepare(options)  # the CA exists (made on first start) before clients come
        for listener in self.listeners:
            mode = listener.mode
            if sock is None:
                sock = listen_socket(mode.listen_host(options.listen_host),
                                     mode.listen_port(options.listen_port), options.workers > 1)
            listener.server = await self.loop.create_server(
                lambda listener=listener: self._new_endpoint(listener), sock=sock)
            listener.address = sock.getsockname()[:2]
            listener.check_clients = not _is_loopback(listener.address[0])
            sock = None
        self._housekeeping = self.loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeep)
        return self.listeners[0].address

    async def stop(self) -> None:
        """Stop accepting, close every connection and wait for their layers to end."""
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for ctx in list(self.clients):
            ctx.client.abort(ConnectionGone("proxy shutting down"))
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for listener in self.listeners:
            await listener.pool.close_all()

    def _new_endpoint(self, listener: Listener) -> Endpoint:
        options = self.options
        reader = HTTP1Reader(True, options.max_head_size, options.max_headers)
        return Endpoint(reader, self.loop, lambda endpoint: self._client_connected(
            endpoint, listener))

    def _client_connected(self, endpoint: Endpoint, listener: Listener) -> None:
        if listener.check_clients and self._refused(endpoint):
            return
        task = self.loop.create_task(self._serve(endpoint, listener))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refused(self, endpoint: Endpoint) -> bool:
        peer = endpoint.transport.get_extra_info("peername")
        reason = blocked(peer[0], self.options) if peer else None
        if reason is None:
            return False
        logger.warning("Client connection from %s refused by the %s option (set %s=false "
                       "to allow it).", peer[0], reason, reason)
        endpoint.transport.abort()
        return True

    async def _serve(self, endpoint: Endpoint, listener: Listener) -> None:
        transport = endpoint.transport
        mode = listener.mode
        client = Client(peername=transport.get_extra_info("peername")[:2],
                        sockname=transport.get_extra_info("sockname")[:2],
                        state=ConnectionState.OPEN, proxy_mode=mode)
        ctx = RootContext(client, endpoint, mode, self.options, self.addons, listener.pool,
                          next_layer)
        self.clients[ctx] = 0.0
        listeners = self.addons.listeners
        try:
            if listeners.clientconnect:
                await self.addons.trigger("clientconnect", ctx)
            await run_layer(ctx, next_layer.first_layer(ctx, listener.validator))
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
        return next_layer.first_layer(ctx, None)

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
        for listener in self.listeners:
            listener.pool.sweep()
        self._housekeeping = self.loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeep)


def parse_modes(specs) -> list[ProxyMode]:
    """The modes of `--mode` (a list, or one spec); ValueError names a bad one."""
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise ValueError("no proxy mode given")
    modes = [ProxyMode.parse(spec) for spec in specs]
    for mode in modes:
        if mode.transport_protocol != "tcp":
            raise ValueError(f"invalid mode {mode.full_spec!r}: UDP modes are not supported")
        if isinstance(mode, TransparentMode):
            check_supported(mode)
    return modes


def _authenticates(mode: ProxyMode) -> bool:
    return isinstance(mode, (RegularMode, UpstreamMode, Socks5Mode))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False
