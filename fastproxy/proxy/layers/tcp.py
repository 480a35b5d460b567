"""Raw TCP: a pure Cython relay when nobody looks, a `TCPFlow` when an addon does.

TCP flows arise for `--tcp-hosts`, for tunnels whose first bytes are neither TLS nor HTTP,
and for `--mode reverse:tcp://host:port`. Hosts passed through untouched (`--ignore-hosts`,
hosts outside `--allow-hosts`) never get a flow (`ignore=True`), as in mitmproxy.

- No `tcp_*` listener (and so no recording): both sockets get a `_core.Relay`. No Python
  runs per chunk; a full write buffer on one side pauses reading on the other
  (back-pressure), and a FIN is passed on as a half-close.
- Otherwise each socket gets a `Pipe` and one coroutine per direction moves the bytes:
  read a chunk, fire `tcp_message` with it as `flow.messages[-1]`, write the (possibly
  changed) content, wait while the destination's buffer is full. `tcp_start` fires once
  connected, `tcp_end` when both directions ended, `tcp_error` instead when a side
  vanished (reset) or the server could not be reached.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from fastproxy._core import Relay
from fastproxy.connection import Server
from fastproxy.flow import Error
from fastproxy.log import logger
from fastproxy.proxy.context import Layer, RootContext
from fastproxy.proxy.upstream import UpstreamError
from fastproxy.tcp import TCPFlow, TCPMessage

PIPE_HIGH_WATER = 256 * 1024
"""Unread bytes queued in a `Pipe` before it pauses reading its socket."""
PIPE_LOW_WATER = 64 * 1024


def wants_tcp_flows(listeners: Any) -> bool:
    """True when some addon listens to a TCP event (a recorder listens to tcp_end)."""
    return bool(listeners.tcp_start or listeners.tcp_message or listeners.tcp_end
                or listeners.tcp_error)


class Pipe(asyncio.Protocol):
    """One socket of a tunnel whose bytes Python handles: reads queued, writes drained.

    `read()` returns what arrived since the last call (joined, at most about
    `PIPE_HIGH_WATER` bytes), an injected message object as it was queued, or None once
    the peer sent FIN or the connection is gone (`eof`, `closed`, `exc` say which).
    """

    __slots__ = ("loop", "transport", "items", "buffered", "eof", "closed", "exc",
                 "_waiter", "_drain_waiter", "_write_paused", "_read_paused")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.items: collections.deque = collections.deque()
        self.buffered = 0
        self.eof = False
        self.closed = False
        self.exc: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._drain_waiter: asyncio.Future | None = None
        self._write_paused = False
        self._read_paused = False

    @classmethod
    def adopt(cls, endpoint: Any) -> Pipe:
        """Take over an `Endpoint`'s socket, with the bytes its reader has not consumed."""
        pipe = cls(endpoint.loop)
        pipe.transport = endpoint.transport
        rest = endpoint.reader.take_rest()
        if rest:
            pipe.data_received(rest)
        endpoint.on_lost = None
        pipe.eof = endpoint.reader.at_eof  # a FIN that came before the handover
        if endpoint.closed:
            pipe.closed = True
        else:
            endpoint.transport.set_protocol(pipe)
            endpoint.transport.resume_reading()
        return pipe

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.items.append(data)
        self.buffered += len(data)
        if self.buffered > PIPE_HIGH_WATER and not self._read_paused and not self.closed:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # keep our sending half open: the other direction may still flow

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.exc = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- for the layer -----------------------------------------------------------------

    def inject(self, item: Any) -> None:
        """Queue a message object to be handled as if this socket had sent it."""
        self.items.append(item)
        self._wake()

    async def read(self) -> Any:
        items = self.items
        while not items:
            if self.eof or self.closed:
                return None
            self._waiter = self.loop.create_future()
            await self._waiter
        item = items.popleft()
        if isinstance(item, bytes):
            if items and isinstance(items[0], bytes):
                parts = [item]
                while items and isinstance(items[0], bytes):
                    parts.append(items.popleft())
                item = b"".join(parts)
            self.buffered -= len(item)
            if self._read_paused and self.buffered <= PIPE_LOW_WATER and not self.closed:
                self._read_paused = False
                self.transport.resume_reading()
        return item

    def write(self, data: bytes) -> None:
        if not self.closed and data:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the socket's write buffer is over its high-water mark."""
        while self._write_paused and not self.closed:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter

    def write_eof(self) -> None:
        """Half-close: send FIN after what is buffered; close if FIN can't be sent."""
        transport = self.transport
        if self.closed or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class TcpLayer(Layer):
    """Relays bytes between the client and host:port until both sides are done.

    `ignore` is for connections passed through untouched: never a flow, never an event.
    """

    def __init__(self, ctx: RootContext, address: tuple[str, int], ignore: bool = False) -> None:
        super().__init__(ctx)
        self.address = address
        self.ignore = ignore
        self.flow: TCPFlow | None = None

    async def run(self) -> None:
        if self.ignore or not wants_tcp_flows(self.ctx.listeners):
            await self.run_relay()
        else:
            await self.run_flow()

    # -- pure relay ----------------------------------------------------------------------

    async def run_relay(self) -> None:
        ctx = self.ctx
        server_side = Relay()
        try:
            server = await ctx.pool.connect(*self.address, server_side)
        except UpstreamError as e:
            logger.info("tunnel to %s:%d failed: %s", *self.address, e)
            ctx.client.close()
            return
        ctx.server_conn = server
        await relay(ctx, server_side, server_side.transport)
        ctx.pool.closed(server)

    # -- with a flow ---------------------------------------------------------------------

    async def run_flow(self) -> None:
        ctx = self.ctx
        addons, listeners = ctx.addons, ctx.listeners
        server_pipe = Pipe(ctx.client.loop)
        try:
            server = await ctx.pool.connect(*self.address, server_pipe)
        except UpstreamError as e:
            flow = self.flow = TCPFlow(ctx.client_conn, Server(address=self.address), live=True)
            flow.server_conn.error = str(e)
            if listeners.tcp_start:
                await addons.trigger("tcp_start", flow)
            await self.end(flow, str(e))
            ctx.client.close()
            return
        ctx.server_conn = server
        flow = self.flow = TCPFlow(ctx.client_conn, server, live=True)
        client_pipe = Pipe.adopt(ctx.client)
        flow._inject = lambda m: (client_pipe if m.from_client else server_pipe).inject(m)
        if listeners.tcp_start:
            await addons.trigger("tcp_start", flow)
        errors: list[str] = []
        try:
            await asyncio.gather(self.pump(client_pipe, server_pipe, True, errors),
                                 self.pump(server_pipe, client_pipe, False, errors))
        finally:
            client_pipe.close()
            server_pipe.close()
            ctx.pool.closed(server)
        await self.end(flow, errors[0] if errors else None)  # the first failure is the cause

    async def pump(self, src: Pipe, dst: Pipe, from_client: bool, errors: list[str]) -> None:
        """Move one direction until its FIN; a failure is appended to `errors`."""
        flow = self.flow
        addons, listeners = self.ctx.addons, self.ctx.listeners
        while True:
            item = await src.read()
            if item is None:
                break
            message = TCPMessage(from_client, item) if isinstance(item, bytes) else item
            flow.messages.append(message)
            if listeners.tcp_message:
                await addons.trigger("tcp_message", flow)
            dst.write(message.content)
            await dst.drain()
            if dst.closed:
                errors.append(f"{_side(not from_client)} connection closed while sending to it")
                src.abort()
                return
        if src.closed and not src.eof:
            errors.append(f"{_side(from_client)} connection lost: {src.exc or 'closed'}")
            dst.abort()
            return
        dst.write_eof()

    async def end(self, flow: TCPFlow, error: str | None) -> None:
        """Fire `tcp_error` (with flow.error set) or `tcp_end`; the flow is no longer live."""
        flow.live = False
        flow._inject = None
        if error is not None and flow.error is None:
            flow.error = Error(error)
        if flow.error is not None:
            logger.info("tcp flow to %s:%d: %s", *self.address, flow.error.msg)
            if self.ctx.listeners.tcp_error:
                await self.ctx.addons.trigger("tcp_error", flow)
        elif self.ctx.listeners.tcp_end:
            await self.ctx.addons.trigger("tcp_end", flow)


def _side(client: bool) -> str:
    return "client" if client else "server"


async def relay(ctx: RootContext, server_side: Relay, server_transport) -> None:
    """Hand the client's transport to a Relay paired with `server_side`; wait for the end."""
    loop = ctx.client.loop
    client_side = Relay()
    client_side.peer, server_side.peer = server_side, client_side
    client_transport = ctx.client.transport
    client_side.transport = client_transport
    server_side.transport = server_transport
    finished = loop.create_future()
    open_sides = [2]

    def side_closed(_relay, _exc) -> None:
        open_sides[0] -= 1
        if open_sides[0] == 0 and not finished.done():
            finished.set_result(None)

    client_side.on_close = server_side.on_close = side_closed
    ctx.client.on_lost = None
    pending = ctx.client.reader.take_rest()
    if pending:
        server_transport.write(pending)
    client_transport.set_protocol(client_side)
    client_transport.resume_reading()
    server_transport.resume_reading()
    server_side.start()
    if server_side.lost:  # gone before the pairing: its on_close was not set yet
        side_closed(server_side, None)
        client_transport.close()
    if ctx.client.closed:
        server_transport.close()
        side_closed(client_side, None)
    elif ctx.client.reader.at_eof:  # the client's FIN came before the handover
        client_side.eof = True
        server_transport.write_eof()
    await finished


__all__ = ["Pipe", "TcpLayer", "relay", "wants_tcp_flows", "PIPE_HIGH_WATER"]

