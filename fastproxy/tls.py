"""What mitmproxy's TLS events receive (mitmproxy.tls): `ClientHelloData` and `TlsData`.

``tls_clienthello(data)`` fires when a client's ClientHello was read, before anything is
decided; ``tls_start_client/server(data)`` before a handshake, and
``tls_established_*`` / ``tls_failed_*`` after it (the failure's reason is
``data.conn.error``). fastproxy sets up its SSL contexts itself: ``data.ssl_conn`` is
None, and ``data.context`` is the connection's `RootContext` (None for a pooled upstream
connection opened outside any client's task).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastproxy.connection import Client, Connection, Server


@dataclass(slots=True)
class ClientHello:
    """What the proxy reads from a ClientHello (RFC 8446 §4.1.2); parsed by
    `fastproxy.proxy.layers.tls.parse_client_hello`."""

    sni: str | None = None
    alpn_offers: list[bytes] = field(default_factory=list)


@dataclass
class ClientHelloData:
    """Event data for `tls_clienthello`."""

    context: Any
    """The connection's context (``context.client`` is the `Client`)."""
    client_hello: ClientHello
    """The parsed ClientHello (``sni``, ``alpn_offers``)."""
    ignore_connection: bool = False
    """Not honoured yet: fastproxy does not switch to pass-through from this event."""
    establish_server_tls_first: bool = True
    """fastproxy always connects to the server before answering the client."""


@dataclass
class TlsData:
    """Event data for `tls_start_*`, `tls_established_*` and `tls_failed_*`."""

    conn: Connection
    """The connection (Client or Server) the handshake is with."""
    context: Any
    """The connection's context, or None for an upstream connection of the pool."""
    ssl_conn: Any = None
    """Always None: the SSL objects are the event loop's."""
    is_dtls: bool = False


__all__ = ["Client", "ClientHello", "ClientHelloData", "Server", "TlsData"]
