"""An open upstream connection and the error of one that could not be opened.

The pool (`upstream.py`) and the TLS upstreams (`upstream_tls.py`) both make them; this
module is what they share, so that neither imports the other's caller.
"""

from __future__ import annotations

from fastproxy.connection import Server
from fastproxy.proxy.streams import Endpoint

PoolKey = tuple[str, str, int]
"""(scheme, host, port)"""


class UpstreamError(Exception):
    """The upstream server could not be reached."""

    cause: BaseException | None = None
    """The OSError or timeout behind it, when there is one (SOCKS5 reply codes)."""


class Upstream:
    """An open upstream connection: its endpoint and its `Server` object."""

    __slots__ = ("endpoint", "idle_since", "key", "reused", "server")

    def __init__(self, endpoint: Endpoint, server: Server, key: PoolKey) -> None:
        self.endpoint = endpoint
        self.server = server
        self.key = key
        self.idle_since = 0.0
        self.reused = False


__all__ = ["PoolKey", "Upstream", "UpstreamError"]
