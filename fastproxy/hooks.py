"""Every event an addon can listen to: its name, its arguments and what it means.

This is the one table of events (../shared/spec/events.rst). The addon manager builds its
listener table from it, `fastproxy run --help` documents it, and the proxy asks the
manager, per event, whether anybody listens before building anything for it.

The spec's names are the contract. mitmproxy's current names are in the table too:
`ALIASES` are other names for a spec event (``client_connected(client)`` is
``clientconnect(root_layer)`` seen with mitmproxy's argument): an addon may use either,
the proxy fires the event once, and the manager adapts the arguments for the alias. The
events of category "mitmproxy" have no spec name (``running``, ``server_connected``,
the TLS events...): they are events of their own, under mitmproxy's name and arguments.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastproxy.connection import Client, Server


@dataclass(frozen=True, slots=True)
class Hook:
    """One event: what it is called, what it is called with, and when it fires."""

    name: str
    args: tuple[str, ...]
    category: str
    doc: str


@dataclass(frozen=True, slots=True)
class Alias:
    """mitmproxy's current name for a spec event, and how its arguments are made."""

    name: str
    event: str
    """The spec event it is another name for."""
    args: tuple[str, ...]
    adapt: Callable[..., tuple] | None
    """The spec event's arguments -> the alias's; None: the same arguments."""
    doc: str


current_client: contextvars.ContextVar[Client | None] = contextvars.ContextVar(
    "fastproxy_current_client", default=None)
"""The `Client` served by the running task (set by `RootContext`)."""


@dataclass
class ServerConnectionHookData:
    """Event data for the server connection events (mitmproxy.proxy.server_hooks; also
    importable from `fastproxy.proxy.server_hooks`)."""

    server: Server
    """The server connection this hook is about."""
    client: Client | None
    """The client on whose behalf this server connection was opened."""

    @classmethod
    def of(cls, server: Server) -> ServerConnectionHookData:
        return cls(server, current_client.get())


def _server_data(server_conn: Any) -> tuple:
    return (ServerConnectionHookData.of(server_conn),)


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
    # mitmproxy's events with no spec name (mitmproxy.hooks / proxy.server_hooks / tls)
    Hook("running", (), "mitmproxy", "The proxy is listening (after configure)."),
    Hook("server_connected", ("data",), "mitmproxy",
         "An upstream connection is open; data.server, data.client (ServerConnectionHookData)."),
    Hook("server_connect_error", ("data",), "mitmproxy",
         "An upstream connection failed; data.server.error says why."),
    Hook("tls_clienthello", ("data",), "mitmproxy",
         "A TLS ClientHello arrived (data.client_hello, data.context); "
         "data.ignore_connection = True passes the connection through untouched."),
    Hook("tls_start_client", ("data",), "mitmproxy",
         "TLS toward the client is about to start (data.conn, data.context)."),
    Hook("tls_start_server", ("data",), "mitmproxy", "TLS toward the server is about to start."),
    Hook("tls_established_client", ("data",), "mitmproxy", "TLS with the client is up."),
    Hook("tls_established_server", ("data",), "mitmproxy", "TLS with the server is up."),
    Hook("tls_failed_client", ("data",), "mitmproxy",
         "The TLS handshake with the client failed; data.conn.error says why."),
    Hook("tls_failed_server", ("data",), "mitmproxy",
         "The TLS handshake with the server failed; data.conn.error says why."),
    Hook("http_connect_upstream", ("flow",), "mitmproxy",
         "A CONNECT is about to be sent to an upstream proxy (its headers can be changed)."),
    Hook("http_connected", ("flow",), "mitmproxy",
         "The upstream proxy accepted a CONNECT (upstream mode)."),
    Hook("http_connect_error", ("flow",), "mitmproxy",
         "The upstream proxy refused a CONNECT (upstream mode); flow.error or response say why."),
)

HOOKS: dict[str, Hook] = {hook.name: hook for hook in _TABLE}

ALIASES: dict[str, Alias] = {alias.name: alias for alias in (
    Alias("client_connected", "clientconnect", ("client",),
          lambda root_layer: (root_layer.client_conn,), "clientconnect, given the Client."),
    Alias("client_disconnected", "clientdisconnect", ("client",),
          lambda root_layer: (root_layer.client_conn,), "clientdisconnect, given the Client."),
    Alias("server_connect", "serverconnect", ("data",), _server_data,
          "serverconnect, given ServerConnectionHookData (data.server, data.client)."),
    Alias("server_disconnected", "serverdisconnect", ("data",), _server_data,
          "serverdisconnect, given ServerConnectionHookData."),
    Alias("add_log", "log", ("entry",), None, "log (mitmproxy 7-8's name)."),
)}
"""mitmproxy's current names for spec events, by name."""

ALL_NAMES: tuple[str, ...] = (*HOOKS, *ALIASES, "load")
"""Every method name the manager treats as an event (load(loader) is called on adding)."""
