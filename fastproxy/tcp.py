"""TCP flows: a raw byte stream, chunked into messages as it was received (mitmproxy's model).

TCP is a stream, not messages: a `TCPMessage` is whatever one read returned, so its
boundaries carry no meaning. `flow.messages[-1]` is the newest in the `tcp_message` hook,
and changing its `content` changes what is forwarded. `inject(flow, to_client, content)`
sends bytes of the addon's own (mitmproxy's `inject.tcp`).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from fastproxy import flow
from fastproxy.connection import Client, Server
from fastproxy.serializable import Serializable, State


class TCPMessage(Serializable):
    """One chunk of a TCP stream, as one read returned it."""

    __slots__ = ("from_client", "content", "timestamp")

    from_client: bool
    """True if the client sent these bytes."""
    content: bytes
    """The bytes (changeable in `tcp_message`; empty bytes forwards nothing)."""
    timestamp: float
    """Unix time the bytes were received."""

    def __init__(self, from_client: bool, content: bytes, timestamp: float | None = None) -> None:
        self.from_client = from_client
        self.content = content
        self.timestamp = timestamp or time.time()

    @classmethod
    def from_state(cls, state: State) -> TCPMessage:
        return cls(*state)

    def get_state(self) -> tuple[bool, bytes, float]:
        return self.from_client, self.content, self.timestamp

    def set_state(self, state: State) -> None:
        self.from_client, self.content, self.timestamp = state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TCPMessage):
            return NotImplemented
        return self.get_state() == other.get_state()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{'->' if self.from_client else '<-'} {self.content!r}"


class TCPFlow(flow.Flow):
    """A TCP connection relayed by the proxy, with the messages that crossed it."""

    __slots__ = ("messages", "_inject")

    type = "tcp"
    messages: list[TCPMessage]
    """The messages transmitted over this connection; the newest is `messages[-1]`."""

    def __init__(self, client_conn: Client, server_conn: Server, live: bool = False) -> None:
        super().__init__(client_conn, server_conn, live)
        self.messages = []
        self._inject: Callable[[TCPMessage], None] | None = None

    def get_state(self) -> State:
        state = super().get_state()
        state["messages"] = [m.get_state() for m in self.messages]
        return state

    def set_state(self, state: State) -> None:
        messages = state.pop("messages")
        super().set_state(state)
        self.messages = [TCPMessage.from_state(m) for m in messages]

    def __repr__(self) -> str:
        return f"<TCPFlow ({len(self.messages)} messages)>"


def inject(flow: Any, to_client: bool, content: bytes) -> None:
    """Send `content` to the client (`to_client`) or to the server of a live TCP flow.

    The bytes go through the `tcp_message` hook like received ones. ValueError if the
    flow is not live or its connection is a pure relay (nobody listens to TCP events).
    """
    if getattr(flow, "_inject", None) is None or not flow.live:
        raise ValueError("Cannot inject TCP messages into a flow that is not live.")
    flow._inject(TCPMessage(not to_client, content))


__all__ = ["TCPFlow", "TCPMessage", "inject"]
