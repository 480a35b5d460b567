"""The thin asyncio protocol that owns one socket of an HTTP connection.

An `Endpoint` feeds what it receives into its `HTTP1Reader` and wakes the one coroutine
(the layer) waiting for it. Writes go straight to the transport; `drain()` waits while
the transport's buffer is over its high-water mark. Reading pauses while more than
`READ_HIGH_WATER` bytes sit unread, so a fast sender cannot make the proxy buffer
without bound.

`relay_body()` streams one message body to another endpoint from inside
`data_received`: each received chunk is written on at once, with no coroutine wake-up
and no buffering per chunk, and the sink's full write buffer pauses this side's reading.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from fastproxy._core import BODY, CLOSED, END, NEED_DATA, HTTP1Reader, ProtocolError

READ_HIGH_WATER = 256 * 1024


class ConnectionGone(Exception):
    """The socket closed while a layer was waiting to read from or write to it."""


class ResponseTimedOut(Exception):
    """The upstream sent no whole response head within `read_timeout` (a 504)."""


class EarlyResponse(Exception):
    """The upstream started answering while the request body was still being relayed to
    it (a 413 or 405 sent before reading the body): the relay stops so that the
    response can be read and passed on."""


class BodyErrorBeforeHead(ProtocolError):
    """A response body broke its framing before any of the response went to the
    client, which can therefore still be told so (a 502)."""


class Endpoint(asyncio.Protocol):
    """One socket, its HTTP/1 reader and its flow-control state."""

    __slots__ = ("reader", "transport", "loop", "closed", "on_made", "on_lost",
                 "_waiter", "_drain_waiter", "_write_paused", "_read_paused", "wait_started",
                 "exc", "_relay_sink", "_relay_source", "_relay_done", "_relay_error",
                 "_relay_tee", "_relay_until_reply")

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
        self._relay_sink: Endpoint | None = None
        self._relay_source: Endpoint | None = None
        self._relay_done: asyncio.Future | None = None
        self._relay_error: BaseException | None = None
        self._relay_tee: Any = None
        self._relay_until_reply = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        if self._relay_sink is not None:
            self._relay_buffered()
            return
        source = self._relay_source
        if source is not None and source._relay_until_reply:
            source._end_relay(EarlyResponse())
        if self.reader.buffered > READ_HIGH_WATER and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.reader.feed_eof()
        if self._relay_sink is not None:
            self._relay_buffered()
        self._wake()
        return True  # keep our half open: a response may still be owed (half-close)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.exc = exc
        self.reader.feed_eof()
        if self._relay_sink is not None:
            self._relay_buffered()
        source = self._relay_source
        if source is not None and source._relay_sink is self:
            source._end_relay(ConnectionGone("connection lost while relaying to it"))
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionGone("connection lost while writing"))
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        source = self._relay_source
        if source is not None and not source.closed:
            source.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        source = self._relay_source
        if source is not None and not source.closed:
            source.transport.resume_reading()
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

    def write_both(self, first: bytes, second: bytes) -> None:
        """Two buffers in one write (uvloop sends them with a single writev)."""
        if self.closed:
            raise ConnectionGone("connection closed")
        self.transport.writelines((first, second))

    async def relay_body(self, sink: "Endpoint", head: bytes | None = None,
                         tee: Any = None, until_reply: bool = False) -> None:
        """Stream the current message body to `sink` as received (raw framing); each
        piece also goes to ``tee.add`` when given (a `BodyTee`: recording).

        With `until_reply` (a request body going upstream), bytes from `sink` stop the
        relay with EarlyResponse."""
        if not self.relay_now(sink, head, tee):
            await self.relay_rest(sink, tee, until_reply)
        elif sink._write_paused:
            await sink.drain()

    def relay_now(self, sink: "Endpoint", head: bytes | None = None, tee: Any = None) -> bool:
        """Write `head` and the body bytes already here to `sink`; True if that was all.

        The head goes out in the same write as those bytes: one syscall for a small
        response. Callers on the hot path call this first and `relay_rest` only when
        it returns False, to save a coroutine.
        """
        reader = self.reader
        reader.decode = False
        try:
            event = reader.next_event()
        except ProtocolError as e:
            if head is None:
                raise
            raise BodyErrorBeforeHead(str(e)) from None
        if head is not None:
            if event == BODY:
                if tee is not None:
                    tee.add(reader.chunk)
                sink.write_both(head, reader.chunk)
                event = reader.next_event()
            else:
                sink.write(head)
        while event == BODY:
            if tee is not None:
                tee.add(reader.chunk)
            sink.write(reader.chunk)
            event = reader.next_event()
        return event == END

    async def relay_rest(self, sink: "Endpoint", tee: Any = None,
                         until_reply: bool = False) -> None:
        """Relay the rest of the body from inside `data_received` until it ends (or, with
        `until_reply`, until `sink` sends something: EarlyResponse)."""
        self._relay_error = None
        self._relay_tee = tee
        self._relay_until_reply = until_reply
        self._relay_done = self.loop.create_future()
        self._relay_sink, sink._relay_source = sink, self
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        if self.closed:
            self._relay_buffered()
        if until_reply and sink.reader.buffered:
            self._end_relay(EarlyResponse())
        await self._relay_done
        if self._relay_error is not None:
            raise self._relay_error
        await sink.drain()

    def _relay_buffered(self) -> None:
        """Write on every body byte received so far; finish the relay at the body's end."""
        reader, sink, tee = self.reader, self._relay_sink, self._relay_tee
        try:
            while True:
                event = reader.next_event()
                if event == BODY:
                    if sink.closed:
                        raise ConnectionGone("connection closed while relaying to it")
                    if tee is not None:
                        tee.add(reader.chunk)
                    sink.transport.write(reader.chunk)
                elif event == END:
                    self._end_relay(None)
                    return
                elif event == NEED_DATA:
                    if self.closed:
                        raise ConnectionGone("connection closed in the middle of a body")
                    return
                else:
                    raise ConnectionGone("connection closed in the middle of a body")
        except Exception as e:  # never raise into the event loop's callback
            self._end_relay(e)

    def _end_relay(self, error: BaseException | None) -> None:
        sink = self._relay_sink
        self._relay_sink = self._relay_tee = None
        if sink is not None:
            sink._relay_source = None
        if error is not None:
            self._relay_error = error
        done = self._relay_done
        if done is not None and not done.done():
            done.set_result(None)

    async def gather_body(self, limit: int, too_large: Callable[[str], Exception]) -> bytes:
        """The current message's whole body without transfer coding; `too_large(message)`
        is raised past `limit` bytes, ProtocolError if the peer closes mid-body."""
        reader = self.reader
        reader.decode = True
        pieces, size = [], 0
        while True:
            event = reader.next_event()
            if event == BODY:
                pieces.append(reader.chunk)
                size += len(reader.chunk)
                if size > limit:
                    raise too_large(f"body larger than body_size_limit ({limit} bytes)")
            elif event == END:
                return b"".join(pieces)
            else:
                await self.wait_data()

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
        reader = self.reader
        return reader.at_message_start and not reader.at_eof and not self.closed

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


__all__ = ["Endpoint", "ConnectionGone", "ResponseTimedOut", "EarlyResponse",
           "BodyErrorBeforeHead", "CLOSED", "READ_HIGH_WATER"]
