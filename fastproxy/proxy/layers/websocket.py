"""WebSocket (RFC 6455) after an HTTP/1 upgrade: messages via wsproto, when an addon looks.

The handshake stays HTTP: `websocket_handshake(flow)` fires before the upgrade request
goes upstream (`handshake`), and on `101 Switching Protocols` the flow gets its
`WebSocketData` before the `response` hook (`mark_upgraded`), as in mitmproxy 11.
The `websocket_start/message/end/error` events get the spec's `WebSocketFlow`, a view of
that flow whose `messages` are `flow.websocket.messages` (so both styles of addon work).

When some addon listens to a `websocket_*` event (a recorder listens to `websocket_end`),
`WebSocketLayer` speaks WebSocket to both peers with two wsproto connections (server role
toward the client, client role toward the server): each whole message (fragments joined)
becomes `flow.websocket.messages[-1]` for `websocket_message`, and is forwarded, possibly
changed, in its original fragments (or ~4 kB fragments if its length changed), unless
dropped. Pings and pongs are passed through to the other peer, so the peer answers them.
A close frame is answered to its sender and passed on (mitmproxy's behaviour), then both
connections close and `websocket_end` fires with the close code and reason recorded. A peer
that vanishes without a close frame, or sends frames wsproto rejects, ends the flow with
`flow.error` and `websocket_error`.

permessage-deflate (RFC 7692) is kept only as both peers negotiate it, and handled by
wsproto on each side; other extensions are removed from the client's offer, since the
proxy could not parse their frames. With no listener, none of this runs: the upgraded
connection is a pure `_core.Relay` (see `http/connect.relay_upgraded`).
"""

from __future__ import annotations

import asyncio
import codecs
import itertools
import time
from typing import Any, Iterator

import wsproto
import wsproto.events as wse
import wsproto.extensions
import wsproto.utilities
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.frame_protocol import Opcode

from fastproxy.flow import Error
from fastproxy.log import logger
from fastproxy.proxy.context import Layer, RootContext
from fastproxy.proxy.pipes import Pipe
from fastproxy.websocket import WebSocketData, WebSocketMessage
from fastproxy.wsflow import WebSocketFlow

DEFLATE = wsproto.extensions.PerMessageDeflate.name


def wants_websocket_flows(listeners: Any) -> bool:
    """True when some addon listens to a WebSocket message-level event."""
    return bool(listeners.websocket_start or listeners.websocket_message
                or listeners.websocket_end or listeners.websocket_error)


def wants_handshake_flow(listeners: Any) -> bool:
    """True when an upgrade request needs an `HTTPFlow` for the WebSocket events."""
    return bool(listeners.websocket_handshake) or wants_websocket_flows(listeners)


def is_websocket_upgrade(headers: Any) -> bool:
    return headers.get("upgrade", "").strip().lower() == "websocket"


async def handshake(ctx: RootContext, flow: Any) -> None:
    """Before a WebSocket upgrade request goes upstream: fire `websocket_handshake`.

    When the proxy will parse the frames, extension offers other than permessage-deflate
    are removed (their frames would be unreadable to wsproto).
    """
    request = flow.request
    if not is_websocket_upgrade(request.headers):
        return
    if ctx.listeners.websocket_handshake:
        await ctx.addons.trigger("websocket_handshake", flow)
    if wants_websocket_flows(ctx.listeners) and "sec-websocket-extensions" in request.headers:
        offers = [ext for ext in _split(request.headers.get_all("sec-websocket-extensions"))
                  if ext.split(";", 1)[0].strip().lower() == DEFLATE]
        if offers:
            request.headers["Sec-WebSocket-Extensions"] = ", ".join(offers)
        else:
            del request.headers["Sec-WebSocket-Extensions"]


async def mark_upgraded(ctx: RootContext, flow: Any) -> None:
    """On 101: give a WebSocket flow its data, then fire `response` (mitmproxy's order)."""
    if is_websocket_upgrade(flow.response.headers) and is_websocket_upgrade(flow.request.headers):
        flow.websocket = WebSocketData()
    flow.response.timestamp_end = time.time()
    if ctx.listeners.response:
        await ctx.addons.trigger("response", flow)


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


class _Side:
    """One peer: its socket, its wsproto connection and the message being assembled."""

    __slots__ = ("pipe", "ws", "from_client", "fragments", "typ")

    def __init__(self, pipe: Pipe, ws: wsproto.Connection, from_client: bool) -> None:
        self.pipe = pipe
        self.ws = ws
        self.from_client = from_client
        self.fragments: list[list[bytes]] = [[]]
        self.typ = Opcode.BINARY

    @property
    def name(self) -> str:
        return "client" if self.from_client else "server"

    def send(self, event: wse.Event) -> None:
        self.pipe.write(self.ws.send(event))


class WebSocketLayer(Layer):
    """Relays WebSocket messages between client and server, with the events for them."""

    def __init__(self, ctx: RootContext, flow: Any, upstream: Any) -> None:
        super().__init__(ctx)
        self.flow = flow
        self.wsflow = WebSocketFlow(flow)
        """What the websocket_* events get: the spec's WebSocketFlow over `flow`."""
        self.upstream = upstream
        self.ended = False

    async def run(self) -> None:
        ctx, flow = self.ctx, self.flow
        client_ext, server_ext = self._extensions()
        client = _Side(Pipe.adopt(ctx.client), wsproto.Connection(ConnectionType.SERVER, client_ext), True)
        server = _Side(Pipe.adopt(self.upstream.endpoint),
                       wsproto.Connection(ConnectionType.CLIENT, server_ext), False)
        flow.websocket._inject = lambda m: (client if m.from_client else server).pipe.inject(m)
        if ctx.listeners.websocket_start:
            await ctx.addons.trigger("websocket_start", self.wsflow)
        try:
            await asyncio.gather(self.pump(client, server), self.pump(server, client))
        finally:
            client.pipe.close()
            server.pipe.close()
            ctx.pool.closed(self.upstream.server)
        await self.end()

    def _extensions(self) -> tuple[list, list]:
        """permessage-deflate for both wsproto connections, if the server accepted it."""
        header = self.flow.response.headers.get("sec-websocket-extensions", "")
        client_ext, server_ext = [], []
        for ext in wsproto.utilities.split_comma_header(header.encode("ascii", "replace")):
            name = ext.split(";", 1)[0].strip()
            if name == DEFLATE:
                for extensions in (client_ext, server_ext):
                    deflate = wsproto.extensions.PerMessageDeflate()
                    deflate.finalize(ext)
                    extensions.append(deflate)
            else:
                logger.info("WebSocket extension %r is not understood; frames may not parse", name)
        return client_ext, server_ext

    async def pump(self, src: _Side, dst: _Side) -> None:
        """Handle what `src` sends until the connection ends."""
        while not self.ended:
            item = await src.pipe.read()
            if self.ended:
                return
            if isinstance(item, WebSocketMessage):
                await self.deliver(item, dst, [])
                continue
            if item is None:
                self.fail(src, dst, f"{src.name} closed the connection without a close frame")
                return
            src.ws.receive_data(item)
            for event in src.ws.events():
                await self.handle(event, src, dst)
                if self.ended:
                    return

    async def handle(self, event: wse.Event, src: _Side, dst: _Side) -> None:
        if isinstance(event, wse.Message):
            data = event.data
            if isinstance(data, str):
                src.typ, data = Opcode.TEXT, data.encode()
            else:
                src.typ, data = Opcode.BINARY, bytes(data)
            src.fragments[-1].append(data)
            if event.message_finished:
                frames = [b"".join(parts) for parts in src.fragments]
                src.fragments = [[]]
                message = WebSocketMessage(src.typ, src.from_client, b"".join(frames))
                await self.deliver(message, dst, [len(f) for f in frames])
            elif event.frame_finished:
                src.fragments.append([])
        elif isinstance(event, (wse.Ping, wse.Pong)):
            if dst.ws.state is ConnectionState.OPEN:
                dst.send(event)  # the peer's own pong answers the ping, end to end
        elif isinstance(event, wse.CloseConnection):
            if src.ws.state is ConnectionState.OPEN:  # not a close frame: wsproto's ParseFailed
                self.fail(src, dst, f"{src.name} sent invalid WebSocket data: {event.reason}",
                          event.code)
            else:
                self.close(event, src, dst)

    async def deliver(self, message: WebSocketMessage, dst: _Side, lengths: list[int]) -> None:
        """Fire `websocket_message` and forward the message unless it was dropped."""
        flow = self.flow
        flow.websocket.messages.append(message)
        if self.ctx.listeners.websocket_message:
            await self.ctx.addons.trigger("websocket_message", self.wsflow)
        if message.dropped or self.ended or dst.ws.state is not ConnectionState.OPEN:
            return
        for event in fragments(message, lengths):
            dst.send(event)
        await dst.pipe.drain()

    def close(self, event: wse.CloseConnection, src: _Side, dst: _Side) -> None:
        """A close frame: record it, answer it, pass it on, close both connections."""
        data = self.flow.websocket
        data.timestamp_end = time.time()
        data.closed_by_client = src.from_client
        data.close_code, data.close_reason = event.code, event.reason
        for side in (src, dst):
            if side.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                side.send(wse.CloseConnection(event.code, event.reason))
            side.pipe.close()
        self.ended = True

    def fail(self, src: _Side, dst: _Side, message: str, code: int | None = None) -> None:
        """A peer vanished or broke the protocol: record the error, close both."""
        data = self.flow.websocket
        data.timestamp_end = time.time()
        data.closed_by_client = src.from_client
        data.close_code = code
        if self.flow.error is None:
            self.flow.error = Error(message)
        if code is not None and src.ws.state is ConnectionState.OPEN:
            src.send(wse.CloseConnection(code, "invalid data"))
        src.pipe.close()
        dst.pipe.abort()  # as if the proxy were not there: the peer sees the drop
        self.ended = True

    async def end(self) -> None:
        """Fire `websocket_error` (flow.error set) or `websocket_end`."""
        flow, ctx = self.flow, self.ctx
        flow.live = False
        flow.websocket._inject = None
        if flow.error is not None:
            logger.info("WebSocket %s: %s", flow.request.pretty_url, flow.error.msg)
            if ctx.listeners.websocket_error:
                await ctx.addons.trigger("websocket_error", self.wsflow)
        elif ctx.listeners.websocket_end:
            await ctx.addons.trigger("websocket_end", self.wsflow)


FRAGMENT_SIZE = 4000
"""Fragment size for a changed message (mitmproxy's Fragmentizer: some servers refuse
large frames, others refuse continuation frames; an unchanged message keeps its own)."""


def fragments(message: WebSocketMessage, lengths: list[int]) -> Iterator[wse.Message]:
    """wsproto events for `message`: its original fragment lengths if still its length."""
    content = message.content
    if lengths and sum(lengths) == len(content):
        ends = list(itertools.accumulate(lengths))
        pieces = [content[end - n:end] for end, n in zip(ends, lengths)]
    else:
        pieces = [content[o:o + FRAGMENT_SIZE] for o in range(0, len(content), FRAGMENT_SIZE)]
    pieces = pieces or [b""]
    last = len(pieces) - 1
    if message.is_text:  # a split UTF-8 sequence is carried into the next fragment
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        for i, piece in enumerate(pieces):
            yield wse.TextMessage(decoder.decode(piece, i == last), message_finished=i == last)
    else:
        for i, piece in enumerate(pieces):
            yield wse.BytesMessage(piece, message_finished=i == last)
