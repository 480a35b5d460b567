"""WebSocket messages and the data of one WebSocket connection (mitmproxy 11's model).

As in mitmproxy since version 7, a WebSocket connection is an `HTTPFlow` whose
`websocket` attribute holds a `WebSocketData`: the upgrade request and the 101 response
stay on the flow, and `flow.websocket.messages[-1]` is the newest message in the
`websocket_message` hook. Fragmented messages are reassembled: one `WebSocketMessage` per
whole message. Contents are always `bytes`; `text` decodes a TEXT message.

`inject(flow, to_client, content)` sends a message of the addon's own toward either side
(mitmproxy's `inject.websocket` command).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from wsproto.frame_protocol import Opcode

from fastproxy.serializable import Serializable, SerializableDataclass, State

WebSocketMessageState = tuple[int, bool, bytes, float, bool, bool]


class WebSocketMessage(Serializable):
    """One whole WebSocket message sent by one peer to the other."""

    __slots__ = ("type", "from_client", "content", "timestamp", "dropped", "injected")

    type: Opcode
    """The RFC 6455 §5.2 opcode: `Opcode.TEXT` or `Opcode.BINARY`."""
    from_client: bool
    """True if the client sent this message."""
    content: bytes
    """The message payload (changeable in `websocket_message`)."""
    timestamp: float
    """Unix time the message was received or created."""
    dropped: bool
    """True if the proxy did not forward the message (`drop()` / `kill()`)."""
    injected: bool
    """True if an addon injected the message; no peer sent it."""

    def __init__(self, type: int | Opcode, from_client: bool, content: bytes,
                 timestamp: float | None = None, dropped: bool = False,
                 injected: bool = False) -> None:
        self.type = Opcode(type)
        self.from_client = from_client
        self.content = content
        self.timestamp = timestamp or time.time()
        self.dropped = dropped
        self.injected = injected

    @classmethod
    def from_state(cls, state: State) -> WebSocketMessage:
        return cls(*state)

    def get_state(self) -> WebSocketMessageState:
        return (int(self.type), self.from_client, self.content, self.timestamp,
                self.dropped, self.injected)

    def set_state(self, state: State) -> None:
        typ, self.from_client, self.content, self.timestamp, self.dropped, self.injected = state
        self.type = Opcode(typ)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WebSocketMessage):
            return NotImplemented
        return self.get_state() == other.get_state()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.type == Opcode.TEXT:
            return repr(self.content.decode(errors="replace"))
        return repr(self.content)

    @property
    def is_text(self) -> bool:
        """True for a TEXT message, False for BINARY."""
        return self.type == Opcode.TEXT

    def drop(self) -> None:
        """Do not forward this message to the other peer."""
        self.dropped = True

    def kill(self) -> None:
        """Drop the message (the name the event table uses; mitmproxy 11 prefers drop())."""
        self.drop()

    @property
    def killed(self) -> bool:
        """True once `kill()`/`drop()` was called (the event table's name for `dropped`)."""
        return self.dropped

    @property
    def text(self) -> str:
        """The content of a TEXT message as str; AttributeError for BINARY."""
        if self.type != Opcode.TEXT:
            raise AttributeError(f"{self.type.name.title()} WebSocket frames do not have a 'text' attribute.")
        return self.content.decode()

    @text.setter
    def text(self, value: str) -> None:
        if self.type != Opcode.TEXT:
            raise AttributeError(f"{self.type.name.title()} WebSocket frames do not have a 'text' attribute.")
        self.content = value.encode()


@dataclass
class WebSocketData(SerializableDataclass):
    """Everything about one WebSocket connection; `HTTPFlow.websocket`."""

    messages: list[WebSocketMessage] = field(default_factory=list)
    """All messages sent over this connection, in order."""
    closed_by_client: bool | None = None
    """True if the client closed the connection, False if the server did, None while open."""
    close_code: int | None = None
    """The RFC 6455 §7.1.5 close code."""
    close_reason: str | None = None
    """The RFC 6455 §7.1.6 close reason."""
    timestamp_end: float | None = None
    """Unix time the WebSocket connection closed."""
    _inject: Callable[[WebSocketMessage], None] | None = field(
        default=None, repr=False, compare=False, metadata={"serialize": False})

    def __repr__(self) -> str:
        return f"<WebSocketData ({len(self.messages)} messages)>"


def inject(flow: Any, to_client: bool, content: bytes | str, is_text: bool | None = None) -> None:
    """Send `content` as a new message to the client (`to_client`) or to the server.

    `is_text` defaults to whether `content` is a str. The message goes through the
    `websocket_message` hook like any other, with `injected` set. ValueError if the flow
    is not a live WebSocket connection whose messages the proxy handles (one that some
    addon listens to: a pure relay has nothing to inject into).
    """
    data = getattr(flow, "websocket", None)
    if data is None or data._inject is None or not flow.live:
        raise ValueError("Cannot inject WebSocket messages into a flow that is not live.")
    if is_text is None:
        is_text = isinstance(content, str)
    if isinstance(content, str):
        content = content.encode()
    data._inject(WebSocketMessage(Opcode.TEXT if is_text else Opcode.BINARY,
                                  not to_client, content, injected=True))


__all__ = ["WebSocketData", "WebSocketMessage", "inject"]
