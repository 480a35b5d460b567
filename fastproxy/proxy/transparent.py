"""Transparent mode (Linux): the destination the client meant, from the kernel.

A firewall rule (iptables `-j REDIRECT`, nftables `redirect to :PORT`) sends connections
for other hosts to the proxy's port; netfilter's connection tracking remembers where
they were going, and `getsockopt(SO_ORIGINAL_DST)` (IPv4) or
`getsockopt(IP6T_SO_ORIGINAL_DST)` (IPv6) returns it as a sockaddr. The connection is
then served as a CONNECT tunnel to that address would be: TLS interception (the
ClientHello's SNI names the host for the upstream handshake and the minted
certificate), HTTP, WebSocket or TCP.

A connection that was not redirected reports the proxy's own address: it is refused, or
it would loop back into the proxy.
"""

from __future__ import annotations

import socket
import struct
import sys

from fastproxy.log import logger
from fastproxy.proxy.context import Layer, run_layer

SO_ORIGINAL_DST = 80
"""linux/netfilter_ipv4.h, level SOL_IP."""
IP6T_SO_ORIGINAL_DST = 80
"""linux/netfilter_ipv6/ip6_tables.h, level SOL_IPV6."""
SOL_IP = getattr(socket, "SOL_IP", 0)
SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)


def check_supported(mode) -> None:
    """Refuse transparent mode where the kernel cannot tell the original destination."""
    if not sys.platform.startswith("linux"):
        raise ValueError(f"invalid mode {mode.full_spec!r}: transparent mode needs Linux "
                         "(SO_ORIGINAL_DST)")


def original_destination(sock, peer_ip: str) -> tuple[str, int]:
    """The (ip, port) the client connected to before the REDIRECT."""
    if sock.family == socket.AF_INET6 and not peer_ip.startswith("::ffff:"):
        raw = sock.getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST, 28)  # sockaddr_in6
        port = struct.unpack_from("!H", raw, 2)[0]
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    raw = sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)  # sockaddr_in (also v4-mapped)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


class TransparentLayer(Layer):
    """Finds the original destination, then serves the connection as a tunnel to it."""

    async def run(self) -> None:
        ctx = self.ctx
        transport = ctx.client.transport
        client = ctx.client_conn
        try:
            host, port = original_destination(transport.get_extra_info("socket"),
                                              client.peername[0])
        except OSError as e:
            self.refuse(f"cannot get the original destination (SO_ORIGINAL_DST): {e}")
            return
        own = transport.get_extra_info("sockname")
        if (host, port) == (own[0], own[1]) or (port == own[1] and host in _LOCAL):
            self.refuse("not redirected to the proxy by a firewall rule (the original "
                        "destination is the proxy itself)")
            return
        await run_layer(ctx, await ctx.next_layer.tunnel_layer(ctx, host, port))

    def refuse(self, reason: str) -> None:
        peer = self.ctx.client_conn.peername
        logger.warning("%s:%d: transparent mode: %s", peer[0], peer[1], reason)
        self.ctx.client.close()


_LOCAL = frozenset(("0.0.0.0", "::", "127.0.0.1", "::1"))
