"""`WebSocketFlow`: what the `websocket_start/message/end/error` events receive.

The event table (../shared/spec/events.rst) gives these events a ``WebSocketFlow`` whose
``messages[-1]`` is the newest message, changeable and killable. mitmproxy 7+ scripts
instead read ``flow.websocket.messages`` off the upgraded `HTTPFlow`. One object serves
both: a `WebSocketFlow` is a view of the handshake `HTTPFlow` (every flow attribute reads
and writes the handshake flow's), and ``flow.messages`` *is* ``flow.websocket.messages``,
the same list of the same `WebSocketMessage` objects. Its state is the handshake flow's,
so recordings keep mitmproxy's format (an HTTP flow with ``websocket`` data).

Importable as ``fastproxy.models.WebSocketFlow`` too, where the spec names it.
"""

from __future__ import annotations

from typing import Any

from fastproxy import flow as _flow
from fastproxy.http import HTTPFlow
from fastproxy.serializable import State
from fastproxy.websocket import WebSocketMessage


def _delegate(name: str) -> property:
    def get(self: WebSocketFlow) -> Any:
        return getattr(self.handshake_flow, name)

    def set(self: WebSocketFlow, value: Any) -> None:
        setattr(self.handshake_flow, name, value)
    return property(get, set, doc=f"The handshake flow's ``{name}``.")


class WebSocketFlow(HTTPFlow):
    """One WebSocket connection, as the spec's events see it: a view of its handshake flow."""

    __slots__ = ("handshake_flow",)

    type = "http"  # its state is an HTTP flow's (mitmproxy >= 7 has no "websocket" type)

    handshake_flow: HTTPFlow
    """The HTTP flow of the upgrade (its request, its 101 response, its `websocket` data)."""

    def __init__(self, handshake_flow: HTTPFlow) -> None:  # noqa: D107 - no Flow.__init__
        object.__setattr__(self, "handshake_flow", handshake_flow)

    @property
    def messages(self) -> list[WebSocketMessage]:
        """Every message so far, in order; ``messages[-1]`` is the newest."""
        return self.handshake_flow.websocket.messages

    @property
    def close_code(self) -> int | None:
        """The RFC 6455 §7.1.5 close code, once closed."""
        return self.handshake_flow.websocket.close_code

    @property
    def close_reason(self) -> str | None:
        """The RFC 6455 §7.1.6 close reason, once closed."""
        return self.handshake_flow.websocket.close_reason

    close_message = close_reason  # mitmproxy 4-6's name

    @property
    def closed_by_client(self) -> bool | None:
        """True if the client closed the connection, False if the server did."""
        return self.handshake_flow.websocket.closed_by_client

    @property
    def close_sender(self) -> str | None:
        """"client" or "server" (mitmproxy 4-6's name), None while open."""
        by_client = self.closed_by_client
        return None if by_client is None else ("client" if by_client else "server")

    @property
    def timestamp_end(self) -> float | None:
        """Unix time the WebSocket connection closed."""
        return self.handshake_flow.websocket.timestamp_end

    @property
    def ended(self) -> bool:
        return self.timestamp_end is not None

    def get_state(self) -> State:
        return self.handshake_flow.get_state()

    def set_state(self, state: State) -> None:
        self.handshake_flow.set_state(state)

    @classmethod
    def from_state(cls, state: State) -> WebSocketFlow:
        return cls(HTTPFlow.from_state(state))  # type: ignore[arg-type]

    def copy(self) -> WebSocketFlow:
        return WebSocketFlow(self.handshake_flow.copy())  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WebSocketFlow):
            other = other.handshake_flow
        return self.handshake_flow is other

    def __hash__(self) -> int:
        return hash(self.handshake_flow)

    def __repr__(self) -> str:
        return f"<WebSocketFlow ({len(self.messages)} messages)>"


for _name in (*_flow.Flow.__slots__, *HTTPFlow.__slots__):
    setattr(WebSocketFlow, _name, _delegate(_name))
# Flow.__init_subclass__ registered this class for "http" states: those stay HTTPFlows.
_flow.Flow._types["http"] = HTTPFlow

__all__ = ["WebSocketFlow"]
