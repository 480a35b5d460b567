"""SOCKS5 (RFC 1928), with username/password authentication (RFC 1929).

Theory of operation, for one client:

1. greeting: VER=5, NMETHODS, METHODS. The proxy picks 0x00 (no authentication) or,
   with `--proxyauth`, 0x02 (username/password); none acceptable: 0xFF and close.
2. with 0x02: VER=1, ULEN, UNAME, PLEN, PASSWD; status 0x00 or 0x01 (and close).
3. request: VER=5, CMD, RSV, ATYP, DST.ADDR, DST.PORT. Only CONNECT (0x01) is served
   (0x07 otherwise); addresses are IPv4 (0x01), a domain name (0x03) or IPv6 (0x04),
   anything else gets 0x08.
4. the target is connected to first, so that the reply says whether it could be
   (RFC 1928 §6 codes, `reply_code`); the connection is parked until the tunnel's layer
   asks for it (`UpstreamPool.preconnect`).
5. then the tunnel is served as a CONNECT tunnel is: TLS interception, HTTP/1, HTTP/2,
   WebSocket or TCP, from the first bytes and the host options (`next_layer.tunnel_layer`).

Every wait has the driver's deadline: bytes of an unfinished handshake fall under
`head_timeout`, an idle client under `idle_timeout`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct

from fastproxy._core import build_head
from fastproxy.log import logger
from fastproxy.proxy.context import Layer, RootContext, run_layer
from fastproxy.proxy.proxyauth import log_failure
from fastproxy.proxy.upstream_conn import UpstreamError

VERSION = 5
NO_AUTH, USERPASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 0x01, 0x03, 0x04
REP_SUCCEEDED = 0x00
REP_GENERAL_FAILURE = 0x01
REP_NETWORK_UNREACHABLE = 0x03
REP_HOST_UNREACHABLE = 0x04
REP_CONNECTION_REFUSED = 0x05
REP_TTL_EXPIRED = 0x06
REP_COMMAND_NOT_SUPPORTED = 0x07
REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class SocksError(Exception):
    """The handshake failed; `reply` is the code to answer with (None: just close)."""

    def __init__(self, message: str, reply: int | None = None) -> None:
        super().__init__(message)
        self.reply = reply


def reply_code(cause: BaseException | None) -> int:
    """The RFC 1928 §6 reply code for a failed connection to the target."""
    if isinstance(cause, (asyncio.TimeoutError, TimeoutError)):
        return REP_TTL_EXPIRED
    if isinstance(cause, socket.gaierror):
        return REP_HOST_UNREACHABLE
    code = getattr(cause, "errno", None)
    if code == errno.ECONNREFUSED:
        return REP_CONNECTION_REFUSED
    if code == errno.ENETUNREACH:
        return REP_NETWORK_UNREACHABLE
    if code in (errno.EHOSTUNREACH, errno.EHOSTDOWN):
        return REP_HOST_UNREACHABLE
    return REP_GENERAL_FAILURE


def reply(code: int, bound: tuple | None = None) -> bytes:
    """A reply with BND.ADDR/BND.PORT (the proxy's side of the target connection)."""
    if bound:
        try:
            ip = ipaddress.ip_address(bound[0])
            atyp = ATYP_IPV4 if ip.version == 4 else ATYP_IPV6
            return bytes((VERSION, code, 0, atyp)) + ip.packed + struct.pack("!H", bound[1])
        except ValueError:
            pass
    return bytes((VERSION, code, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0))


def _http_error(message: str) -> bytes:
    """A 400 for an HTTP client that came to the SOCKS5 port (so that it sees why)."""
    body = (message + "\n").encode("utf-8", "replace")
    fields = [(b"Content-Type", b"text/plain; charset=utf-8"),
              (b"Content-Length", str(len(body)).encode()), (b"Connection", b"close")]
    return build_head(b"HTTP/1.1 400 Bad Request", fields, None, None) + body


class Socks5Layer(Layer):
    """The SOCKS5 handshake, then the tunnel's layer."""

    def __init__(self, ctx: RootContext, validator=None) -> None:
        super().__init__(ctx)
        self.validator = validator
        self.address: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return "<Socks5Layer>"

    async def run(self) -> None:
        ctx = self.ctx
        try:
            await self.negotiate_method()
            host, port = self.address = await self.read_request()
            server = await self.connect(host, port)
        except SocksError as e:
            self.fail(e)
            return
        try:
            ctx.client.write(reply(REP_SUCCEEDED, server.sockname))
            await run_layer(ctx, await ctx.next_layer.tunnel_layer(ctx, host, port))
        finally:
            ctx.pool.drop_parked()

    def fail(self, e: SocksError) -> None:
        peer = self.ctx.client_conn.peername
        logger.info("%s:%d: SOCKS5: %s", peer[0], peer[1], e)
        client = self.ctx.client
        if not client.closed:
            if e.reply is not None:
                client.write(reply(e.reply))
            client.transport.close()

    # -- reading the handshake ---------------------------------------------------------

    async def take(self, n: int) -> bytes:
        """The next n bytes of the handshake (consumed)."""
        client = self.ctx.client
        reader = client.reader
        while reader.buffered < n:
            if client.closed or reader.at_eof:
                raise SocksError("client closed the connection during the handshake")
            await client.wait_data()
        rest = reader.take_rest()
        if len(rest) > n:
            reader.feed(rest[n:])
        return rest[:n]

    async def negotiate_method(self) -> None:
        version = (await self.take(1))[0]
        if version != VERSION:
            self.wrong_version(version)
        methods = await self.take((await self.take(1))[0])
        wanted = NO_AUTH if self.validator is None else USERPASS
        if wanted not in methods:
            self.ctx.client.write(bytes((VERSION, NO_ACCEPTABLE)))
            if self.validator is not None:
                log_failure(self.ctx.client_conn.peername, "socks5", None)
            raise SocksError(f"no acceptable authentication method in {list(methods)}")
        self.ctx.client.write(bytes((VERSION, wanted)))
        if wanted == USERPASS:
            await self.authenticate()

    def wrong_version(self, version: int) -> None:
        if 0x41 <= version <= 0x5A:  # an HTTP method: tell the user what went wrong
            self.ctx.client.write(_http_error(
                f"Invalid SOCKS version: expected 0x05, got {version:#04x}. This port "
                "serves SOCKS5 (did you mean an HTTP proxy, --mode regular?)"))
        raise SocksError(f"invalid SOCKS version {version:#04x}")

    async def authenticate(self) -> None:
        """RFC 1929: one username/password exchange."""
        if (await self.take(1))[0] != 1:
            raise SocksError("invalid username/password subnegotiation version")
        user = await self.take((await self.take(1))[0])
        password = await self.take((await self.take(1))[0])
        name = user.decode("utf-8", "replace")
        if not self.validator(name, password.decode("utf-8", "replace")):
            log_failure(self.ctx.client_conn.peername, "socks5", name)
            self.ctx.client.write(b"\x01\x01")
            raise SocksError(f"authentication failed for user {name!r}")
        self.ctx.client.write(b"\x01\x00")

    async def read_request(self) -> tuple[str, int]:
        version, command, _, atyp = await self.take(4)
        if version != VERSION:
            raise SocksError(f"invalid SOCKS version {version:#04x} in request",
                             REP_GENERAL_FAILURE)
        if atyp == ATYP_IPV4:
            host = str(ipaddress.IPv4Address(await self.take(4)))
        elif atyp == ATYP_IPV6:
            host = str(ipaddress.IPv6Address(await self.take(16)))
        elif atyp == ATYP_DOMAIN:
            raw = await self.take((await self.take(1))[0])
            try:
                host = raw.decode("idna")
            except UnicodeError:
                raise SocksError(f"invalid domain name {raw[:64]!r}", REP_HOST_UNREACHABLE)
        else:
            raise SocksError(f"unknown address type {atyp:#04x}", REP_ADDRESS_TYPE_NOT_SUPPORTED)
        port = struct.unpack("!H", await self.take(2))[0]
        if command != CMD_CONNECT:
            raise SocksError(f"unsupported command {command:#04x} (only CONNECT)",
                             REP_COMMAND_NOT_SUPPORTED)
        return host, port

    async def connect(self, host: str, port: int):
        try:
            return await self.ctx.pool.preconnect(host, port, self.ctx.client._wake)
        except UpstreamError as e:
            raise SocksError(str(e), reply_code(e.cause)) from None
