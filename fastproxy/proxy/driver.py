"""The driver: runs one sans-io layer on a client connection (DESIGN.md, "The shape").

It is the only place the layer's sockets, awaits and addon calls live. It turns socket
callbacks into events (events.py) and executes the layer's commands (commands.py):

- `_Socket`, a thin asyncio protocol per connection, queues `DataReceived` and
  `ConnectionClosed` in the driver's inbox; the driver feeds them to the layer one at a
  time, joining consecutive reads of one connection into one event.
- A blocking command (`OpenConnection`, `Hook`) is awaited before the next event is
  fed: events meanwhile wait in the inbox, which is also what `Splice` relays first.
- Back-pressure: no event is fed while a connection's write buffer is full
  (`pause_writing`: the layer's output waits, as a coroutine would in `drain()`), and
  reading pauses on every connection while the inbox holds more than
  `INBOX_HIGH_WATER` bytes.
- `Splice(a, b)` together with `Splice(b, a)` hands both transports to a pair of
  `_core.Relay`s: from then on bytes move inside `data_received`, with no Python object
  per chunk, and the layer only hears of the ends (`ConnectionClosed`).

The driver returns once every connection is closed and every event was handled.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any

from fastproxy._core import Relay
from fastproxy.connection import Connection, ConnectionState, Server
from fastproxy.log import logger
from fastproxy.proxy.commands import (
    CloseConnection,
    Command,
    Hook,
    Log,
    OpenConnection,
    SendData,
    Splice,
)
from fastproxy.proxy.events import (
    ConnectionClosed,
    DataReceived,
    Event,
    HookCompleted,
    OpenCompleted,
    Start,
)
from fastproxy.proxy.sansio import StateMachine
from fastproxy.proxy.upstream import UpstreamError

if TYPE_CHECKING:
    from fastproxy.proxy.context import RootContext

INBOX_HIGH_WATER = 256 * 1024
"""Received bytes not yet handled by the layer before reading pauses."""
INBOX_LOW_WATER = 64 * 1024


class _Socket(asyncio.Protocol):
    """One connection of a driven layer: what it receives becomes events for the layer."""

    __slots__ = (
        "closing",
        "connection",
        "driver",
        "eof",
        "lost",
        "read_paused",
        "relay",
        "transport",
        "write_paused",
    )

    def __init__(self, driver: Driver, connection: Connection) -> None:
        self.driver = driver
        self.connection = connection
        self.transport: Any = None
        self.eof = False
        self.lost = False
        self.closing = False
        """We closed it: its loss is no news for the layer."""
        self.read_paused = False
        self.write_paused = False
        self.relay: Relay | None = None
        """Its `_core.Relay` once spliced: the transport's protocol from then on."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.driver.open += 1

    def data_received(self, data: bytes) -> None:
        self.driver.received(self, data)

    def eof_received(self) -> bool:
        self.eof = True
        self.driver.post(ConnectionClosed(self.connection, half_close=True))
        return True  # keep our sending half open: the other direction may still flow

    def connection_lost(self, exc: BaseException | None) -> None:
        self.driver.lost(self, exc)

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            self.driver.write_paused += 1

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            self.driver.write_paused -= 1
            self.driver.wake()


class Driver:
    """Runs `layer` on the client connection of `ctx` until every connection closed."""

    def __init__(self, ctx: RootContext, layer: StateMachine) -> None:
        self.ctx = ctx
        self.layer = layer
        self.loop = ctx.client.loop
        self.sockets: dict[str, _Socket] = {}
        """By connection id (connections compare by id)."""
        self.servers: list[tuple[Server, Server]] = []
        """(the layer's Server, the pool's) for every connection opened."""
        self.open = 0
        """Connections made and not yet lost."""
        self.write_paused = 0
        """Connections whose write buffer is full: no event is fed meanwhile, unless ..."""
        self.gone_pending = 0
        """... a connection went away: the layer must hear it, or a peer that reads no
        more would hold the other side forever."""
        self.inbox: collections.deque[Event] = collections.deque()
        self.buffered = 0
        self.over_high_water = False
        self.splices: dict[str, Splice] = {}
        self._waiter: asyncio.Future | None = None

    async def run(self) -> None:
        self.layer.post_event = self.post
        self._adopt_client()
        try:
            await self._feed(Start())
            event = None
            while self.inbox or self.open:
                if self.inbox and (not self.write_paused or self.gone_pending):
                    # The previous event lives until the next one is made, on purpose: freed
                    # first, a large message lets glibc trim the heap top, and the next join
                    # faults those pages in again (measured: half the throughput with a
                    # tcp_message addon, 512 KiB messages).
                    event = self._next_event()
                    await self._feed(event)
                else:
                    self._waiter = self.loop.create_future()
                    await self._waiter
        finally:
            self.layer.post_event = None
            for sock in self.sockets.values():
                if not sock.lost and sock.transport is not None:
                    sock.transport.close()
            for mine, pools in self.servers:
                self.ctx.pool.closed(pools)
                mine.state, mine.timestamp_end = pools.state, pools.timestamp_end

    # -- events in -----------------------------------------------------------------------

    def post(self, event: Event) -> None:
        """Queue an event for the layer (from a socket callback or an addon)."""
        self.inbox.append(event)
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def received(self, sock: _Socket, data: bytes) -> None:
        self.buffered += len(data)
        if self.buffered > INBOX_HIGH_WATER and not self.over_high_water:
            self.over_high_water = True
            self.update_reading()
        self.post(DataReceived(sock.connection, data))

    def lost(self, sock: _Socket, exc: BaseException | None) -> None:
        sock.lost = True
        sock.resume_writing()
        self.open -= 1
        connection = sock.connection
        connection.state = ConnectionState.CLOSED
        if not sock.closing:
            error = None if sock.eof else str(exc or "closed")
            self.gone_pending += 1
            self.post(ConnectionClosed(connection, error=error))
        else:
            self.wake()  # nothing for the layer, but the loop may be done

    def _next_event(self) -> Event:
        """The next event of the inbox, with the reads of one connection that follow it
        joined into one `DataReceived`."""
        inbox = self.inbox
        event = inbox.popleft()
        if type(event) is DataReceived:
            if inbox and type(inbox[0]) is DataReceived and inbox[0].connection is event.connection:
                parts = [event.data]
                while inbox and type(inbox[0]) is DataReceived and inbox[0].connection is event.connection:
                    parts.append(inbox.popleft().data)
                event = DataReceived(event.connection, b"".join(parts))
            self.buffered -= len(event.data)
            if self.over_high_water and self.buffered <= INBOX_LOW_WATER:
                self.over_high_water = False
                self.update_reading()
        elif type(event) is ConnectionClosed and not event.half_close and self.gone_pending:
            self.gone_pending -= 1
        return event

    def update_reading(self) -> None:
        """Pause reading on every connection while the inbox is over its mark."""
        pause = self.over_high_water
        for sock in self.sockets.values():
            if sock.lost or sock.relay is not None or sock.transport is None:
                continue
            if pause != sock.read_paused:
                sock.read_paused = pause
                if pause:
                    sock.transport.pause_reading()
                else:
                    sock.transport.resume_reading()

    def _adopt_client(self) -> None:
        """Take over the client's socket from its `Endpoint`, with what it has not read."""
        endpoint = self.ctx.client
        connection = self.ctx.client_conn
        sock = self.sockets[connection.id] = _Socket(self, connection)
        sock.transport = endpoint.transport
        endpoint.on_lost = None
        rest = endpoint.reader.take_rest()
        if rest:
            self.received(sock, rest)
        if endpoint.reader.at_eof:  # a FIN that came before the handover
            sock.eof = True
            self.post(ConnectionClosed(connection, half_close=True))
        if endpoint.closed:
            sock.lost = True
            self.post(ConnectionClosed(connection, error=None if sock.eof else "closed"))
            return
        self.open += 1
        endpoint.transport.set_protocol(sock)
        endpoint.transport.resume_reading()

    # -- commands out --------------------------------------------------------------------

    async def _feed(self, event: Event | None) -> None:
        """Feed `event`, execute the commands; feed the answer of a blocking one, and so on."""
        layer = self.layer
        while event is not None:
            answer = None
            for command in layer.handle_event(event):
                if not command.blocking:
                    self._execute(command)
                elif type(command) is Hook:
                    answer = HookCompleted(command)
                    if getattr(self.ctx.listeners, command.name, None):
                        pending = self.ctx.addons.fire(command.name, command.data)
                        if pending is not None:
                            await pending
                elif type(command) is OpenConnection:
                    answer = await self._open(command)
                else:
                    raise TypeError(f"unknown blocking command {command!r}")
            event = answer

    def _execute(self, command: Command) -> None:
        kind = type(command)
        if kind is SendData:
            sock = self.sockets.get(command.connection.id)
            if sock is not None and not sock.lost and not sock.closing:
                sock.transport.write(command.data)
        elif kind is CloseConnection:
            self._close(command)
        elif kind is Splice:
            self._splice(command)
        elif kind is Log:
            getattr(logger, command.level)(command.message)
        else:
            raise TypeError(f"unknown command {command!r}")

    async def _open(self, command: OpenConnection) -> OpenCompleted:
        """Connect through the pool (which fires `serverconnect`); the layer's `Server`
        takes the pool's state, id included, so both compare equal."""
        connection = command.connection
        sock = self.sockets[connection.id] = _Socket(self, connection)
        try:
            server = await self.ctx.pool.connect(*connection.address, sock)
        except UpstreamError as e:
            del self.sockets[connection.id]
            return OpenCompleted(command, str(e))
        del self.sockets[connection.id]
        connection.set_state(server.get_state())
        connection.state = server.state
        self.sockets[connection.id] = sock
        self.servers.append((connection, server))
        self.ctx.server_conn = connection
        return OpenCompleted(command)

    def _close(self, command: CloseConnection) -> None:
        sock = self.sockets.get(command.connection.id)
        if sock is None or sock.lost or sock.closing:
            return
        transport = sock.transport
        if command.half_close and transport.can_write_eof():
            if not transport.is_closing():
                transport.write_eof()
            return
        sock.closing = True
        transport.close()

    # -- the fast path -------------------------------------------------------------------

    def _splice(self, command: Splice) -> None:
        """Splice a pair: `a -> b` waits for `b -> a`; then both go to `_core.Relay`s.
        (A one-way splice, an HTTP body, is for the HTTP layers' turn.)"""
        if command.tee is not None:
            raise NotImplementedError("Splice with a tee")
        reverse = self.splices.get(command.dst.id)
        if reverse is None or reverse.dst is not command.src:
            self.splices[command.src.id] = command
            return
        del self.splices[command.dst.id]
        self._pair(self.sockets[command.src.id], self.sockets[command.dst.id])

    def _pair(self, a: _Socket, b: _Socket) -> None:
        a.relay, b.relay = Relay(), Relay()
        a.relay.peer, b.relay.peer = b.relay, a.relay
        a.relay.transport, b.relay.transport = a.transport, b.transport
        self._relay_pending(a, b)
        for sock in (a, b):
            relay = sock.relay
            relay.on_close = lambda _relay, exc, sock=sock: self.lost(sock, exc)
            if not sock.lost:
                sock.transport.set_protocol(relay)
                sock.transport.resume_reading()

    def _relay_pending(self, a: _Socket, b: _Socket) -> None:
        """What `a` and `b` sent that the layer was not fed is relayed first, in order."""
        ids = {a.connection.id: (a, b), b.connection.id: (b, a)}
        keep: collections.deque[Event] = collections.deque()
        for event in self.inbox:
            pair = ids.get(getattr(getattr(event, "connection", None), "id", None))
            if pair is None:
                keep.append(event)
                continue
            src, dst = pair
            if type(event) is DataReceived:
                self.buffered -= len(event.data)
                if not dst.lost:
                    dst.transport.write(event.data)
            elif event.half_close:
                src.relay.eof = True
                if not dst.lost and not dst.relay.eof and dst.transport.can_write_eof():
                    dst.transport.write_eof()
                elif not dst.lost:
                    dst.transport.close()
            else:
                self.gone_pending = max(0, self.gone_pending - 1)
                if not dst.lost:
                    dst.transport.close()
        self.inbox = keep


__all__ = ["INBOX_HIGH_WATER", "Driver"]
