"""Every event an addon can listen to: its name, its arguments and what it means.

This is the one table of events (../shared/spec/events.rst). The addon manager builds its
listener table from it, `fastproxy run --help` documents it, and the proxy asks the
manager, per event, whether anybody listens before building anything for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hook:
    """One event: what it is called, what it is called with, and when it fires."""

    name: str
    args: tuple[str, ...]
    category: str
    doc: str


_TABLE = (
    # General
    Hook("configure", ("options", "updated"), "general",
         "Once on startup (updated holds every option), then whenever options change."),
    Hook("done", (), "general", "Once when the addon is unloaded or the proxy shuts down."),
    Hook("log", ("entry",), "general", "For every log entry (entry.msg, entry.level)."),
    Hook("start", (), "general",
         "Once on startup, before any other event; a returned value replaces the addon."),
    Hook("tick", (), "general", "At a regular sub-second interval."),
    # Connection
    Hook("clientconnect", ("root_layer",), "connection",
         "A client connected; root_layer.client_conn is the Client."),
    Hook("clientdisconnect", ("root_layer",), "connection", "A client disconnected."),
    Hook("next_layer", ("layer",), "connection",
         "Layers are switched; returning a layer object replaces the one chosen."),
    Hook("serverconnect", ("server_conn",), "connection",
         "Before the proxy connects upstream; server_conn.address is set."),
    Hook("serverdisconnect", ("server_conn",), "connection",
         "The proxy has closed an upstream connection."),
    # HTTP
    Hook("http_connect", ("flow",), "http",
         "An HTTP CONNECT request; a non-2xx flow.response is sent and the connection ends."),
    Hook("requestheaders", ("flow",), "http", "A request head arrived; its body is not read yet."),
    Hook("request", ("flow",), "http",
         "A whole request arrived; setting flow.response answers without the upstream."),
    Hook("responseheaders", ("flow",), "http",
         "A response head arrived; set flow.response.stream = True to stream its body."),
    Hook("response", ("flow",), "http", "A whole response arrived."),
    Hook("error", ("flow",), "http", "A flow failed; flow.error says why."),
    # WebSocket
    Hook("websocket_handshake", ("flow",), "websocket",
         "A client asks to upgrade to WebSocket; the handshake headers can be changed."),
    Hook("websocket_start", ("flow",), "websocket", "A WebSocket connection is established."),
    Hook("websocket_message", ("flow",), "websocket",
         "A message arrived (flow.messages[-1]); it can be changed or killed."),
    Hook("websocket_end", ("flow",), "websocket", "A WebSocket connection ended."),
    Hook("websocket_error", ("flow",), "websocket", "A WebSocket connection failed."),
    # TCP
    Hook("tcp_start", ("flow",), "tcp", "A TCP flow starts."),
    Hook("tcp_message", ("flow",), "tcp",
         "A TCP payload arrived (flow.messages[-1]); it can be changed."),
    Hook("tcp_end", ("flow",), "tcp", "A TCP flow ended."),
    Hook("tcp_error", ("flow",), "tcp", "A TCP flow failed."),
)

HOOKS: dict[str, Hook] = {hook.name: hook for hook in _TABLE}
