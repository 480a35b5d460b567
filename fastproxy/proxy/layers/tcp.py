"""Raw TCP as a sans-io state machine: a splice when nobody looks, a `TCPFlow` when an
addon does.

TCP flows arise for `--tcp-hosts`, for tunnels whose first bytes are neither TLS nor HTTP,
and for `--mode reverse:tcp://host:port`. Hosts passed through untouched (`--ignore-hosts`,
hosts outside `--allow-hosts`) never get a flow (`ignore=True`), as in mitmproxy.

The layer takes events and returns commands (events.py, commands.py); it never touches a
socket. proxy/driver.py runs it (`TcpLayer.run`).

- No `tcp_*` listener (and so no recording), or `ignore`: once connected, two `Splice`
  commands; the driver pairs the sockets with `_core.Relay`s. No Python runs per chunk;
  a full write buffer on one side pauses reading on the other, and a FIN is passed on
  as a half-close.
- Otherwise every `DataReceived` is a `TCPMessage`: `tcp_message` fires with it as
  `flow.messages[-1]`, then its (possibly changed) content is sent on. `tcp_start` fires
  once connected, `tcp_end` when both directions ended, `tcp_error` instead when a side
  vanished without a FIN (reset), was gone while bytes were owed to it, or could not be
  reached.

States and transitions (anything else is ignored, as after the end):

    start    --Start-->                    OpenConnection(server), then:
             --OpenCompleted(error)-->     done      (client closed; tcp_start + tcp_error
                                                      for a flow)
             --OpenCompleted, no flow-->   spliced   (Splice both ways)
             --OpenCompleted, flow-->      relaying  (tcp_start)
    relaying --DataReceived/MessageInjected--> relaying (tcp_message, SendData)
             --ConnectionClosed(half)-->   relaying  (half-close the other side), or done
                                                     once both sides sent FIN
             --ConnectionClosed(gone)-->   done      (an error unless the FIN came first)
    done:    both connections closed, then tcp_end or tcp_error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastproxy.connection import Connection, Server
from fastproxy.flow import Error
from fastproxy.proxy.commands import (
    CloseConnection,
    Hook,
    Log,
    OpenConnection,
    SendData,
    Splice,
)
from fastproxy.proxy.context import Layer, RootContext
from fastproxy.proxy.driver import Driver
from fastproxy.proxy.events import (
    ConnectionClosed,
    DataReceived,
    Event,
    OpenCompleted,
    Start,
)
from fastproxy.proxy.sansio import CommandGenerator, StateMachine
from fastproxy.tcp import TCPFlow, TCPMessage


def wants_tcp_flows(listeners: Any) -> bool:
    """True when some addon listens to a TCP event (a recorder listens to tcp_end)."""
    return bool(listeners.tcp_start or listeners.tcp_message or listeners.tcp_end
                or listeners.tcp_error)


@dataclass(frozen=True, slots=True)
class MessageInjected(Event):
    """An addon injected `message` into the live `flow` (`fastproxy.tcp.inject`); it is
    handled as if its sender (`message.from_client`) had sent it."""

    flow: TCPFlow
    message: TCPMessage


class TcpLayer(StateMachine, Layer):
    """Relays bytes between the client and host:port until both sides are done.

    `ignore` is for connections passed through untouched: never a flow, never an event.
    Only `ctx.client_conn` and `ctx.listeners` are read here; the rest of `ctx` is the
    driver's.
    """

    def __init__(self, ctx: RootContext, address: tuple[str, int], ignore: bool = False) -> None:
        Layer.__init__(self, ctx)
        StateMachine.__init__(self)
        self.address = address
        self.ignore = ignore
        self.client: Connection = ctx.client_conn
        self.server = Server(address=address)
        """The upstream connection; the driver fills it in when it connects."""
        self.flow: TCPFlow | None = None
        self.state = "start"
        self.finished: set[str] = set()
        """The sides ("client", "server") that sent their FIN or are gone."""
        self.gone: set[str] = set()
        """The sides that cannot be written to any more."""

    def run(self) -> Any:
        """Serve the connection: a coroutine of the driver, which owns the sockets."""
        return Driver(self.ctx, self).run()

    def _handle(self, event: Event) -> CommandGenerator:
        state = self.state
        if state == "relaying":
            if type(event) is DataReceived:
                from_client = event.connection is self.client
                yield from self._message(TCPMessage(from_client, event.data))
            elif type(event) is MessageInjected:
                yield from self._message(event.message)
            elif type(event) is ConnectionClosed:
                yield from self._closed(event)
        elif state == "start" and type(event) is Start:
            yield from self._start()
        elif state == "spliced" and type(event) is DataReceived:
            # Bytes fed after the splice (proxy/driver.py relays them itself): pass them on.
            yield SendData(self._other(event.connection), event.data)

    # -- start ---------------------------------------------------------------------------

    def _start(self) -> CommandGenerator:
        with_flow = not self.ignore and wants_tcp_flows(self.ctx.listeners)
        self.state = "opening"
        reply: OpenCompleted = yield OpenConnection(self.server)
        if not with_flow:
            if reply.error is not None:
                self.state = "done"
                host, port = self.address
                yield Log(f"tunnel to {host}:{port} failed: {reply.error}", "info")
                yield CloseConnection(self.client)
                return
            self.state = "spliced"
            yield Splice(self.client, self.server)
            yield Splice(self.server, self.client)
            return
        flow = self.flow = TCPFlow(self.client, self.server, live=True)
        if reply.error is not None:
            self.server.error = reply.error
            self.gone.add("server")
            yield Hook("tcp_start", flow)
            yield from self._end(reply.error)
            return
        flow._inject = self._inject
        self.state = "relaying"
        yield Hook("tcp_start", flow)

    def _inject(self, message: TCPMessage) -> None:
        if self.post_event is not None:
            self.post_event(MessageInjected(self.flow, message))

    # -- relaying ------------------------------------------------------------------------

    def _message(self, message: TCPMessage) -> CommandGenerator:
        flow = self.flow
        flow.messages.append(message)
        yield Hook("tcp_message", flow)
        if self.state != "relaying":
            return
        to = "server" if message.from_client else "client"
        if to in self.gone:
            yield from self._end(f"{to} connection closed while sending to it")
        elif message.content:
            yield SendData(self.server if message.from_client else self.client, message.content)

    def _closed(self, event: ConnectionClosed) -> CommandGenerator:
        src = event.connection
        side = "client" if src is self.client else "server"
        if event.half_close:
            self.finished.add(side)
            if ("server" if side == "client" else "client") not in self.gone:
                yield CloseConnection(self._other(src), half_close=True)
        else:
            self.gone.add(side)
            if side not in self.finished:
                self.finished.add(side)
                yield from self._end(f"{side} connection lost: {event.error or 'closed'}")
                return
        if len(self.finished) == 2:
            yield from self._end(None)

    # -- the end -------------------------------------------------------------------------

    def _end(self, error: str | None) -> CommandGenerator:
        """Close what is open, then fire `tcp_error` (with flow.error set) or `tcp_end`."""
        self.state = "done"
        flow = self.flow
        flow.live = False
        flow._inject = None
        for side, connection in (("client", self.client), ("server", self.server)):
            if side not in self.gone:
                self.gone.add(side)
                yield CloseConnection(connection)
        if error is not None and flow.error is None:
            flow.error = Error(error)
        if flow.error is not None:
            host, port = self.address
            yield Log(f"tcp flow to {host}:{port}: {flow.error.msg}", "info")
            yield Hook("tcp_error", flow)
        else:
            yield Hook("tcp_end", flow)

    def _other(self, connection: Connection) -> Connection:
        return self.server if connection is self.client else self.client


__all__ = ["MessageInjected", "TcpLayer", "wants_tcp_flows"]
