"""The thin asyncio protocol that owns one socket of an HTTP connection.

An `Endpoint` feeds what it receives into its `HTTP1Reader` and wakes the one coroutine
(the layer) waiting for it. Writes go straight to the transport; `drain()` waits while
the transport's buffer is over its high-water mark. Reading pauses while more than
`READ_HIGH_WATER` bytes sit unread, so a fast sender cannot make the proxy buffer
without bound.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from fastproxy._core import CLOSED, NEED_DATA, HTTP1Reader

READ_HIGH_WATER = 256 * 1024


class ConnectionGone(Exception):
    """The socket closed while a layer was waiting to read from or write to it."""


class Endpoint(asyncio.Protocol):
    """One socket, its HTTP/1 reader and its flow-control state."""

    __slots__ = ("reader", "transport", "loop", "closed", "on_made", "on_lost",
                 "_waiter", "_drain_waiter", "_write_paused", "_read_paused", "wait_started",
                 "exc")

    def __init__(self, reader: HTTP1Reader, loop: asyncio.AbstractEventLoop,
                 on_made: Callable[["Endpoint"], Any] | None = None) -> None:
        self.reader = reader
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.exc: BaseException | None = None
        self.on_made = on_made
        self.on_lost: Callable[["Endpoint"], Any] | None = None
        self._waiter: asyncio.Future | None = None
        self._drain_waiter: asyncio.Future | None = None
        self._write_paused = False
        self._read_paused = False
        self.wait_started = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        if self.reader.buffered > READ_HIGH_WATER and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.reader.feed_eof()
        self._wake()
        return True  # keep our half open: a response may still be owed (half-close)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.exc = exc
        self.reader.feed_eof()
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionGone("connection lost while writing"))
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- for layers ----------------------------------------------------------------------

    async def next_event(self) -> int:
        """The reader's next event, waiting for bytes as needed (never NEED_DATA)."""
        reader = self.reader
        while True:
            event = reader.next_event()
            if event != NEED_DATA:
                return event
            await self.wait_data()

    async def wait_data(self) -> None:
        """Wait until more bytes (or EOF) arrived."""
        if self.closed and self.reader.buffered == 0:
            self.reader.feed_eof()
            return
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        self.wait_started = self.loop.time()
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self.wait_started = 0.0

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionGone("connection closed")
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is full."""
        if self._write_paused and not self.closed:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter
        if self.closed:
            raise ConnectionGone("connection closed")

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self, exc: BaseException) -> None:
        """Fail whoever waits on this endpoint (used for timeouts) and close it."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    @property
    def idle(self) -> bool:
        """True between messages with nothing buffered (safe to reuse or to close)."""
        return self.reader.at_message_start and not self.closed

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


__all__ = ["Endpoint", "ConnectionGone", "CLOSED", "READ_HIGH_WATER"]
