"""Proxy mode specs, as mitmproxy writes them: ``mode[:data][@[listen_host:]listen_port]``.

    ProxyMode.parse("regular")                        # an HTTP(S) proxy
    ProxyMode.parse("reverse:https://example.com@443")  # a reverse proxy listening on 443
    ProxyMode.parse("socks5@127.0.0.1:1080")

Each mode is a frozen subclass of ProxyMode that validates its own data. Modes compare and
hash by their full spec, and their state is the spec, as in mitmproxy's flow files.
"""

from __future__ import annotations

import functools
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any, ClassVar, Literal, Self

from fastproxy.net.server_spec import ServerSpec
from fastproxy.serializable import Serializable

TransportProtocol = Literal["tcp", "udp"]

_UDP_SCHEMES = frozenset({"udp", "dtls", "dns", "quic", "http3"})


@dataclass(frozen=True, eq=False)
class ProxyMode(Serializable):
    """A parsed proxy mode spec. Use `ProxyMode.parse`, not the constructor."""

    full_spec: str
    """The spec as the user wrote it, e.g. "reverse:https://example.com@8443"."""
    data: str
    """The mode's argument: what follows "mode:", e.g. "https://example.com"."""
    custom_listen_host: str | None
    """The listen host given in the spec (after "@"), if any."""
    custom_listen_port: int | None
    """The listen port given in the spec (after "@"), if any."""

    type_name: ClassVar[str]
    """The mode's name, e.g. "regular"; derived from the class name."""
    description: ClassVar[str]
    """A human-readable name for logs."""
    default_port: ClassVar[int] = 8080
    """The port to listen on if neither the spec nor the options give one."""
    transport_protocol: ClassVar[TransportProtocol] = "tcp"
    """The transport this mode's listener speaks."""

    _registry: ClassVar[dict[str, type[ProxyMode]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__.removesuffix("Mode").lower()
        ProxyMode._registry[cls.type_name] = cls

    def __post_init__(self) -> None:
        """Validate `data`; modes without arguments refuse any."""
        if self.data:
            raise ValueError(f"invalid mode {self.full_spec!r}: {self.type_name} takes no argument")

    @classmethod
    def parse(cls, spec: str) -> Self:
        """Parse a mode spec. Raises ValueError with the reason if it is invalid."""
        if not isinstance(spec, str):
            raise ValueError(f"invalid mode {spec!r}: expected a string")
        return _parse(cls, spec)

    def listen_host(self, default: str | None = None) -> str:
        """The host to listen on: from the spec, else `default`, else "" (all hosts)."""
        if self.custom_listen_host is not None:
            return self.custom_listen_host
        return default if default is not None else ""

    def listen_port(self, default: int | None = None) -> int:
        """The port to listen on: from the spec, else `default`, else `default_port`."""
        if self.custom_listen_port is not None:
            return self.custom_listen_port
        return default if default is not None else self.default_port

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ProxyMode):
            return self.full_spec == other.full_spec
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.full_spec)

    def __repr__(self) -> str:
        return f"ProxyMode.parse({self.full_spec!r})"

    def get_state(self) -> str:
        return self.full_spec

    @classmethod
    def from_state(cls, state: str) -> Self:
        return cls.parse(state)

    def set_state(self, state: str) -> None:
        if state != self.full_spec:
            raise FrozenInstanceError("proxy modes are immutable")


@functools.cache
def _parse(cls: type[ProxyMode], spec: str) -> ProxyMode:
    head, at, listen_at = spec.rpartition("@")
    if not at:
        head = listen_at
    name, _, data = head.partition(":")
    mode_cls = ProxyMode._registry.get(name.lower())
    if mode_cls is None:
        known = ", ".join(ProxyMode._registry)
        raise ValueError(f"invalid mode {spec!r}: unknown mode {name!r} (known: {known})")
    if not issubclass(mode_cls, cls):
        raise ValueError(f"invalid mode {spec!r}: not a {cls.type_name} mode")
    host, port = _parse_listen_at(spec, listen_at) if at else (None, None)
    return mode_cls(full_spec=spec, data=data, custom_listen_host=host, custom_listen_port=port)


def _parse_listen_at(spec: str, listen_at: str) -> tuple[str | None, int]:
    """Parse the part after "@": `port`, `host:port` or `[ipv6]:port`."""
    host: str | None
    host, colon, port_str = listen_at.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if colon else None
    if not port_str.isdigit() or not 0 <= int(port_str) <= 65535:
        raise ValueError(f"invalid mode {spec!r}: bad listen port {port_str!r}")
    return host, int(port_str)


def _set(mode: ProxyMode, name: str, value: Any) -> None:
    # Modes are frozen; attributes derived from `data` are set once, while validating.
    object.__setattr__(mode, name, value)


# Subclasses are dataclasses too, so that they are frozen for every attribute, and keep
# ProxyMode's __eq__, __hash__ and __repr__.
_mode = dataclass(frozen=True, eq=False, repr=False)


@_mode
class RegularMode(ProxyMode):
    """An HTTP(S) proxy: clients send CONNECT or absolute-form requests."""

    description = "HTTP(S) proxy"


@_mode
class TransparentMode(ProxyMode):
    """A transparent proxy: the original destination comes from the OS."""

    description = "transparent proxy"


@_mode
class Socks5Mode(ProxyMode):
    """A SOCKSv5 proxy."""

    description = "SOCKS v5 proxy"
    default_port = 1080


@_mode
class UpstreamMode(ProxyMode):
    """An HTTP(S) proxy that forwards everything to another HTTP(S) proxy."""

    description = "HTTP(S) proxy (upstream mode)"
    scheme: Literal["http", "https"] = field(init=False)
    """How to talk to the upstream proxy."""
    address: tuple[str, int] = field(init=False)
    """The upstream proxy's (host, port)."""

    def __post_init__(self) -> None:
        spec = _server_spec(self, default_scheme="http")
        if spec.scheme not in ("http", "https"):
            raise ValueError(
                f"invalid mode {self.full_spec!r}: upstream proxy scheme must be http or https"
            )
        _set(self, "scheme", spec.scheme)
        _set(self, "address", spec.address)


@_mode
class ReverseMode(ProxyMode):
    """A reverse proxy: acts as a server and forwards everything to one target."""

    description = "reverse proxy"
    scheme: str = field(init=False)
    """How to talk to the target: http, https, tls, tcp, udp, dtls, dns, http3 or quic."""
    address: tuple[str, int] = field(init=False)
    """The target's (host, port); the port defaults to the scheme's (80, 443, 53)."""

    def __post_init__(self) -> None:
        spec = _server_spec(self, default_scheme="https")
        _set(self, "scheme", spec.scheme)
        _set(self, "address", spec.address)
        if spec.scheme in _UDP_SCHEMES:
            _set(self, "transport_protocol", "udp")
        _set(self, "description", f"reverse proxy to {self.data}")


def _server_spec(mode: ProxyMode, default_scheme: str) -> ServerSpec:
    if not mode.data:
        raise ValueError(f"invalid mode {mode.full_spec!r}: {mode.type_name} needs a URL")
    try:
        return ServerSpec.parse(mode.data, default_scheme=default_scheme)
    except ValueError as e:
        raise ValueError(f"invalid mode {mode.full_spec!r}: {e}") from None


__all__ = ["ProxyMode", "RegularMode", "TransparentMode", "Socks5Mode", "UpstreamMode",
           "ReverseMode"]
