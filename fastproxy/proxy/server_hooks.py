"""What mitmproxy's connection events receive (mitmproxy.proxy.server_hooks).

``server_connect(data)``, ``server_connected(data)``, ``server_disconnected(data)`` and
``server_connect_error(data)`` get a `ServerConnectionHookData`: the `Server` and the
`Client` on whose behalf it was opened. fastproxy shares upstream connections between the
clients of a worker, so ``client`` is the client whose request opened the connection
(known from the task serving it), or None outside any client's task.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from fastproxy.connection import Client, Server

current_client: contextvars.ContextVar[Client | None] = contextvars.ContextVar(
    "fastproxy_current_client", default=None)
"""The `Client` served by the running task (set by `RootContext`)."""


@dataclass
class ServerConnectionHookData:
    """Event data for the server connection events."""

    server: Server
    """The server connection this hook is about."""
    client: Client | None
    """The client on whose behalf this server connection was opened."""

    @classmethod
    def of(cls, server: Server) -> ServerConnectionHookData:
        return cls(server, current_client.get())


__all__ = ["ServerConnectionHookData", "current_client"]
