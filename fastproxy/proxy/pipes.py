"""asyncio byte pipes for the layers not yet sans-io (WebSocket, upgraded connections).

`Pipe` is one socket whose bytes a coroutine reads and writes (websocket.py); `relay()`
pairs two transports with `_core.Relay`s until both ended (`layers/http/connect.py`, after a `101`).
The TCP layer no longer uses them: it is run by proxy/driver.py. They moved here from
layers/tcp.py, which has no asyncio import any more.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any

from fastproxy._core import Relay

if TYPE_CHECKING:
    from fastproxy.proxy.context import RootContext

PIPE_HIGH_WATER = 256 * 1024
"""Unread bytes queued in a `Pipe` before it pauses reading its socket."""
PIPE_LOW_WATER = 64 * 1024


class Pipe(asyncio.Protocol):
    """One socket of a tunnel whose bytes Python handles: reads queued, writes drained.

    `read()` returns what arrived since the last call (joined, at most about
    `PIPE_HIGH_WATER` bytes), an injected message object as it was queued, or None once
    the peer sent FIN or the connection is gone (`eof`, `closed`, `exc` say which).
    """

    __slots__ = (
        "_drain_waiter",
        "_read_paused",
        "_waiter",
        "_write_paused",
        "buffered",
        "closed",
        "eof",
        "exc",
        "items",
        "loop",
        "transport",
    )

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


__all__ = ["PIPE_HIGH_WATER", "PIPE_LOW_WATER", "Pipe", "relay"]
