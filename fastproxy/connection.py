"""Client and server connections: metadata only, never the socket (see spec/connection-api.md).

A `Client` is made for every accepted connection, so constructing one does no work beyond
the dataclass `__init__`: the default proxy mode is parsed once, at import.
"""

import dataclasses
import enum
import time
import warnings
from abc import ABCMeta
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fastproxy.certs import Cert
from fastproxy.ids import new_id
from fastproxy.io._handover import tracked_setattr
from fastproxy.mode_specs import ProxyMode
from fastproxy.net.server_spec import ServerSpec
from fastproxy.serializable import SerializableDataclass


class ConnectionState(enum.Flag):
    """The current state of the underlying socket."""

    CLOSED = 0
    CAN_READ = 1
    CAN_WRITE = 2
    OPEN = CAN_READ | CAN_WRITE


Address = tuple[str, int]
"""An (ip or host, port) pair. IPv6 sockets may report (host, port, flowinfo, scope_id)."""

TransportProtocol = Literal["tcp", "udp"]

TlsVersion = Literal[
    "SSLv3",
    "TLSv1",
    "TLSv1.1",
    "TLSv1.2",
    "TLSv1.3",
    "DTLSv0.9",
    "DTLSv1",
    "DTLSv1.2",
    "QUICv1",
]

_REGULAR_MODE = ProxyMode.parse("regular")
def _deprecated(old: str, new: str) -> None:
    # stacklevel 3: point at the caller of the deprecated property, not at this helper.
    warnings.warn(f"{old} is deprecated, use {new} instead.", DeprecationWarning, stacklevel=3)


@dataclass(kw_only=True)
class Connection(SerializableDataclass, metaclass=ABCMeta):
    """Base class for client and server connections.

    The connection object exposes metadata about the connection only,
    not the underlying socket object. All I/O is handled by the proxy server exclusively.
    """

    peername: Address | None
    """The remote's `(ip, port)` tuple for this connection."""
    sockname: Address | None
    """Our local `(ip, port)` tuple for this connection."""

    state: ConnectionState = field(default=ConnectionState.CLOSED, metadata={"serialize": False})
    """The current connection state. Not recorded: a recorded connection is never open."""

    # Connections compare by id, so recorded flows keep the identity live flows have.
    id: str = field(default_factory=new_id)
    """A unique UUID4 string identifying the connection."""
    transport_protocol: TransportProtocol = "tcp"
    """The transport protocol in use."""
    error: str | None = None
    """An error with connections to this address, e.g. an untrusted certificate.

    It signals that new connections to this endpoint should not be attempted; a regular
    disconnect does not set it.
    """

    tls: bool = False
    """True if TLS should be established; see `tls_established` for whether it has been."""
    certificate_list: Sequence[Cert] = ()
    """The TLS certificates sent by the peer. The first one is the end-entity certificate
    (RFC 8446 §4.4.2); the order of the others is not to be relied on."""
    alpn: bytes | None = None
    """The application-layer protocol negotiated with ALPN (RFC 7301)."""
    alpn_offers: Sequence[bytes] = ()
    """The ALPN offers sent in the ClientHello."""
    cipher: str | None = None
    """The active cipher name, as OpenSSL's `SSL_CIPHER_get_name` reports it."""
    cipher_list: Sequence[str] = ()
    """The ciphers the proxy accepts on this connection."""
    tls_version: TlsVersion | None = None
    """The active TLS version."""
    sni: str | None = None
    """The Server Name Indication sent in the ClientHello."""

    timestamp_start: float | None = None
    """*Timestamp:* Connection start."""
    timestamp_end: float | None = None
    """*Timestamp:* Connection closed."""
    timestamp_tls_setup: float | None = None
    """*Timestamp:* TLS handshake completed successfully."""

    # Every field set gives the connection a new ``_generation`` (one counter for all: no
    # two connections, nor two versions of one, share a number): the recorder knows a
    # connection unchanged since it sent its state by it (`fastproxy.io._handover`).
    __setattr__ = tracked_setattr

    @property
    def connected(self) -> bool:
        """*Read-only:* True if `state` is `ConnectionState.OPEN`."""
        return self.state is ConnectionState.OPEN

    @property
    def tls_established(self) -> bool:
        """*Read-only:* True if the TLS handshake has completed."""
        return self.timestamp_tls_setup is not None

    @property
    def alpn_proto_negotiated(self) -> bytes | None:
        """*Deprecated:* use `alpn`."""
        _deprecated("Connection.alpn_proto_negotiated", "Connection.alpn")
        return self.alpn

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Connection):
            return self.id == other.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        attrs: dict[str, Any] = {"id": f"…{self.id[-6:]}"}
        for f in dataclasses.fields(self):
            val = getattr(self, f.name)
            if f.name != "id" and val != f.default:
                attrs[f.name] = f"<{len(val)} ciphers>" if f.name == "cipher_list" else val
        return f"{type(self).__name__}({attrs!r})"

    def _tls_summary(self) -> str:
        if self.alpn:
            return f", alpn={self.alpn.decode(errors='replace')}"
        return ", tls" if self.tls_established else ""


@dataclass(eq=False, repr=False, kw_only=True)
class Client(Connection):
    """A connection between a client and the proxy."""

    peername: Address
    """The client's address."""
    sockname: Address
    """The local address we received this connection on."""

    mitmcert: Cert | None = None
    """The certificate the proxy uses to establish TLS with the client."""

    proxy_mode: ProxyMode = _REGULAR_MODE
    """The proxy server type this client has connected to."""

    timestamp_start: float = field(default_factory=time.time)
    """*Timestamp:* TCP SYN received."""

    def __str__(self) -> str:
        state = self.state.name.lower()  # type: ignore[union-attr]
        return f"Client({_format_address(self.peername)}, state={state}{self._tls_summary()})"

    @property
    def address(self) -> Address:
        """*Deprecated:* use `peername`."""
        _deprecated("Client.address", "Client.peername")
        return self.peername

    @address.setter
    def address(self, value: Address) -> None:
        _deprecated("Client.address", "Client.peername")
        self.peername = value

    @property
    def cipher_name(self) -> str | None:
        """*Deprecated:* use `cipher`."""
        _deprecated("Client.cipher_name", "Client.cipher")
        return self.cipher

    @property
    def clientcert(self) -> Cert | None:
        """*Deprecated:* use `certificate_list[0]`."""
        _deprecated("Client.clientcert", "Client.certificate_list")
        return self.certificate_list[0] if self.certificate_list else None

    @clientcert.setter
    def clientcert(self, value: Cert | None) -> None:
        _deprecated("Client.clientcert", "Client.certificate_list")
        self.certificate_list = [value] if value else []


@dataclass(eq=False, repr=False, kw_only=True)
class Server(Connection):
    """A connection between the proxy and an upstream server."""

    address: Address | None
    """The server's `(host, port)`; the host is a domain name or an IP address."""

    peername: Address | None = None
    """The server's resolved `(ip, port)`; set while the connection is established."""
    sockname: Address | None = None
    """Our local `(ip, port)` tuple for this connection."""

    timestamp_start: float | None = None
    """*Timestamp:* Connection establishment started.

    For an IP address this is when the TCP SYN is sent; for a domain, when the DNS lookup starts.
    """
    timestamp_tcp_setup: float | None = None
    """*Timestamp:* TCP ACK received."""

    via: ServerSpec | None = None
    """An upstream proxy through which the connection is to be established, if any."""

    def __str__(self) -> str:
        state = self.state.name.lower()  # type: ignore[union-attr]
        port = f", src_port={self.sockname[1]}" if self.sockname else ""
        return (
            f"Server({_format_address(self.address)}, state={state}"
            f"{self._tls_summary()}{port})"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("address", "via"):
            # Assigning the current value is fine: set_state() does that.
            is_open = self.__dict__.get("state", ConnectionState.CLOSED) != ConnectionState.CLOSED
            if is_open and self.__dict__.get(name) != value:
                raise RuntimeError(f"Cannot change server.{name} on open connection.")
        super().__setattr__(name, value)

    @property
    def ip_address(self) -> Address | None:
        """*Deprecated:* use `peername`."""
        _deprecated("Server.ip_address", "Server.peername")
        return self.peername

    @property
    def cert(self) -> Cert | None:
        """*Deprecated:* use `certificate_list[0]`."""
        _deprecated("Server.cert", "Server.certificate_list")
        return self.certificate_list[0] if self.certificate_list else None

    @cert.setter
    def cert(self, value: Cert | None) -> None:
        _deprecated("Server.cert", "Server.certificate_list")
        self.certificate_list = [value] if value else []


def _format_address(address: Address | None) -> str:
    if not address:
        return "<no address>"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["Connection", "Client", "Server", "ConnectionState"]
