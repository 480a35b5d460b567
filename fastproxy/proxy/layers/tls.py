"""TLS interception: the ClientHello, the upstream handshake, then the client's.

Theory of operation, for one intercepted connection (a CONNECT tunnel whose first byte
is a TLS handshake record, or a client of `reverse:https://...`):

1. The ClientHello is *peeked* from the client's reader until whole (`read_client_hello`);
   no byte is consumed, so the handshake later sees exactly what the client sent.
2. The upstream TLS connection is opened (`proxy/upstream_tls.py`), offering the client's ALPN protocols (those the
   proxy can serve), with the client's SNI; its certificate is verified against the
   system store plus `ssl_verify_upstream_trusted_ca`, unless `ssl_insecure`. An HTTP/1
   client's upstream is offered http/1.1 only (the direct path: an origin speaking both
   would otherwise pick h2), and h2 only when it refuses that with a
   no_application_protocol alert (RFC 7301 §3.2): `http1_h2.py` translates then. In
   reverse:https:// mode this is done for an HTTP/1 client too, so that an h2-only
   origin works.
3. A leaf certificate is minted for the SNI and the upstream certificate's names, and
   the client handshake completes with it, selecting the ALPN the upstream chose. The
   handshake runs in uvloop's `SSLProtocol` (what `loop.start_tls` uses), put on the
   client's transport by hand so that the peeked bytes can be fed to it first.
4. The decrypted connection is a new `Endpoint`: `next_layer.after_tls` chooses what
   serves it, `HttpLayer` (scheme https) or `Http2Layer` (ALPN h2), unchanged.

When the upstream handshake fails (e.g. an untrusted certificate), the client handshake
still completes, and each request gets a 502 naming the reason, with the error on the
flow. Failures of the client handshake (it rejects our certificate, not-TLS bytes) are
logged with host and reason and end only this connection.
"""

from __future__ import annotations

import ssl
import tempfile
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from fastproxy._core import HTTP1Reader
from fastproxy.certs import CertStore, Leaf
from fastproxy.log import logger
from fastproxy.proxy.context import Layer, RootContext, run_layer
from fastproxy.proxy.streams import Endpoint
from fastproxy.proxy.upstream_conn import Upstream, UpstreamError
from fastproxy.proxy.upstream_tls import (
    TlsEndpoint,
    fill_tls_fields,
    open_http1_upstream,
    open_tls_upstream,
    tls_event,
    tls_reason,
)
from fastproxy.tls import ClientHello, ClientHelloData

if TYPE_CHECKING:
    from fastproxy.options import Options

try:  # uvloop's Cython SSLProtocol; asyncio's has the same interface (3.11+)
    from uvloop.loop import SSLProtocol as _UvSSLProtocol
except ImportError:  # pragma: no cover
    _UvSSLProtocol = None
from asyncio.sslproto import SSLProtocol as _AioSSLProtocol

HANDSHAKE = 0x16
CLIENT_HELLO = 1
MAX_CLIENT_HELLO = 64 * 1024
HTTP_ALPNS = (b"h2", b"http/1.1", b"http/1.0")
CONTEXT_CACHE_SIZE = 512


class NotTLS(Exception):
    """The client's first bytes are not a TLS ClientHello (or a malformed one)."""


# -- the ClientHello ------------------------------------------------------------------


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello in `data` (TLS records from the start), None if more bytes are
    needed, NotTLS if these bytes cannot be one."""
    body = _handshake_message(data)
    if body is None:
        return None
    try:
        return _parse_hello_body(body)
    except (IndexError, UnicodeDecodeError, ValueError) as e:
        raise NotTLS(f"malformed ClientHello: {e}") from None


def _handshake_message(data: bytes) -> bytes | None:
    """Join handshake records (RFC 8446 §5.1: a message may span records) until the
    first handshake message is whole; return its body."""
    payload = b""
    pos = 0
    while True:
        if len(data) < pos + 5:
            return None
        if data[pos] != HANDSHAKE or data[pos + 1] != 3:
            raise NotTLS("not a TLS handshake record")
        length = int.from_bytes(data[pos + 3:pos + 5], "big")
        if len(data) < pos + 5 + length:
            return None
        payload += data[pos + 5:pos + 5 + length]
        pos += 5 + length
        if len(payload) >= 4:
            if payload[0] != CLIENT_HELLO:
                raise NotTLS("the first handshake message is not a ClientHello")
            size = int.from_bytes(payload[1:4], "big")
            if size > MAX_CLIENT_HELLO:
                raise NotTLS("ClientHello too large")
            if len(payload) >= 4 + size:
                return payload[4:4 + size]


def _parse_hello_body(body: bytes) -> ClientHello:
    pos = 2 + 32  # legacy_version, random
    pos += 1 + body[pos]  # legacy_session_id
    pos += 2 + int.from_bytes(body[pos:pos + 2], "big")  # cipher_suites
    pos += 1 + body[pos]  # legacy_compression_methods
    hello = ClientHello()
    if pos >= len(body):
        return hello  # no extensions
    end = pos + 2 + int.from_bytes(body[pos:pos + 2], "big")
    pos += 2
    while pos + 4 <= end:
        kind = int.from_bytes(body[pos:pos + 2], "big")
        size = int.from_bytes(body[pos + 2:pos + 4], "big")
        ext = body[pos + 4:pos + 4 + size]
        pos += 4 + size
        if kind == 0:  # server_name, RFC 6066 §3
            hello.sni = _parse_sni(ext)
        elif kind == 16:  # application_layer_protocol_negotiation, RFC 7301 §3.1
            hello.alpn_offers = _parse_alpn(ext)
    return hello


def _parse_sni(ext: bytes) -> str | None:
    pos, end = 2, 2 + int.from_bytes(ext[:2], "big")
    while pos + 3 <= end:
        kind, size = ext[pos], int.from_bytes(ext[pos + 1:pos + 3], "big")
        if kind == 0:  # host_name
            return ext[pos + 3:pos + 3 + size].decode("ascii")
        pos += 3 + size
    return None


def _parse_alpn(ext: bytes) -> list[bytes]:
    offers, pos, end = [], 2, 2 + int.from_bytes(ext[:2], "big")
    while pos < end:
        size = ext[pos]
        offers.append(ext[pos + 1:pos + 1 + size])
        pos += 1 + size
    return offers


async def read_client_hello(client: Endpoint) -> ClientHello:
    """Peek at the client's bytes until a whole ClientHello is there (consuming none)."""
    reader = client.reader
    while True:
        hello = parse_client_hello(reader.peek(reader.buffered))
        if hello is not None:
            return hello
        if client.closed or reader.buffered > MAX_CLIENT_HELLO + 5:
            raise NotTLS("the client closed the connection during the ClientHello")
        await client.wait_data()


# -- per-process TLS state: the CA, contexts ----------------------------------------


class TlsState:
    """The CA and the server-side SSL contexts of one proxy process, built from its
    options (the upstream side's are `upstream_tls.UpstreamTlsState`)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.certstore = CertStore.from_confdir(options.confdir)
        for spec in options.certs:
            pattern, sep, path = spec.partition("=")
            pattern, path = (pattern, path) if sep else ("*", pattern)
            self.certstore.add_user_cert(pattern.strip(), Path(path.strip()).expanduser()
                                         .read_bytes())
        self._server: OrderedDict[tuple, tuple[ssl.SSLContext, list[str], Leaf]] = OrderedDict()
        self._tmpdir = tempfile.TemporaryDirectory(prefix="fastproxy-certs-")

    def alpn_offers(self, offers: list[bytes]) -> list[bytes]:
        """The client's offers the proxy can serve (h2 only with the http2 option)."""
        http2 = self.options.http2
        return [p for p in offers if p in HTTP_ALPNS and (http2 or p != b"h2")]

    def server_context(self, leaf: Leaf, alpn: bytes | None) -> tuple[ssl.SSLContext, list[str]]:
        """A server-side context presenting `leaf` and selecting only `alpn`; its ciphers."""
        # Leaves are cached and immutable: their identity is a cheap key (the value keeps
        # the leaf alive, so the id cannot be reused while the entry exists).
        key = (id(leaf), alpn)
        cached = self._server.get(key)
        if cached is not None:
            self._server.move_to_end(key)
            return cached[0], cached[1]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # ssl only loads certificates from files: write the chain and key briefly.
        with tempfile.NamedTemporaryFile(dir=self._tmpdir.name, suffix=".pem") as f:
            f.write(leaf.key_pem + leaf.chain_pem)
            f.flush()
            context.load_cert_chain(f.name)
        if alpn:
            context.set_alpn_protocols([alpn.decode()])
        ciphers = [c["name"] for c in context.get_ciphers()]
        self._server[key] = (context, ciphers, leaf)
        if len(self._server) > CONTEXT_CACHE_SIZE:
            self._server.popitem(last=False)
        return context, ciphers


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_RESET_ON = {"confdir", "certs", "http2"}


def tls_state(options: Options) -> TlsState:
    """The TlsState for these options, made on first use and remade when they change."""
    state = _STATES.get(options)
    if state is None:
        state = _STATES[options] = TlsState(options)
        options.subscribe(lambda updated: _RESET_ON & updated and _STATES.pop(options, None))
    return state


# -- the client side --------------------------------------------------------------------


async def start_client_tls(client: Endpoint, context: ssl.SSLContext,
                           timeout: float) -> Endpoint:
    """Complete the TLS handshake with the client (the ClientHello still unread in its
    reader); return the decrypted endpoint. What `loop.start_tls` does, except that the
    bytes already received are fed to the SSL protocol first."""
    loop = client.loop
    raw = client.transport
    reader = client.reader
    inner = TlsEndpoint(HTTP1Reader(True, reader.max_head_size, reader.max_headers), loop)
    waiter = loop.create_future()
    cls = _UvSSLProtocol if _UvSSLProtocol is not None and _is_uvloop(loop) else _AioSSLProtocol
    protocol = cls(loop, inner, context, waiter, server_side=True,
                   ssl_handshake_timeout=timeout)
    pending = reader.take_rest()
    if client.closed or raw.is_closing():
        raise ConnectionResetError("the client closed the connection")
    raw.set_protocol(protocol)
    protocol.connection_made(raw)
    if pending:
        buf = protocol.get_buffer(len(pending))
        if len(buf) < len(pending):  # the SSL read buffer is 256 KiB; a hello is < 64 KiB
            raise NotTLS("ClientHello larger than the TLS read buffer")
        buf[:len(pending)] = pending
        protocol.buffer_updated(len(pending))
    raw.resume_reading()
    await waiter
    return inner


def _is_uvloop(loop) -> bool:
    return type(loop).__module__.startswith("uvloop")


class TlsLayer(Layer):
    """Intercepts the TLS connection of a client to `address` (see the module docstring).

    `upstream_tls` is False in reverse mode to an http:// target: only the client side
    is TLS then.
    """

    def __init__(self, ctx: RootContext, address: tuple[str, int], *,
                 upstream_tls: bool = True, tunnel: bool = True) -> None:
        super().__init__(ctx)
        self.address = address
        self.upstream_tls = upstream_tls
        self.tunnel = tunnel
        self.hello: ClientHello | None = None

    def __repr__(self) -> str:
        return f"<TlsLayer {self.address[0]}:{self.address[1]}>"

    async def run(self) -> None:
        ctx = self.ctx
        host, port = self.address
        try:
            hello = self.hello = await read_client_hello(ctx.client)
        except NotTLS as e:
            logger.info("%s: TLS to %s:%d failed: %s", _peer(ctx), host, port, e)
            ctx.client.close()
            return
        state = tls_state(ctx.options)
        client_conn = ctx.client_conn
        client_conn.sni = hello.sni
        client_conn.alpn_offers = list(hello.alpn_offers)
        listeners = ctx.listeners
        if listeners.tls_clienthello:
            await ctx.addons.trigger("tls_clienthello", ClientHelloData(ctx, hello))
        offers = state.alpn_offers(hello.alpn_offers)
        upstream, alpn = await self.open_upstream(state, hello, offers)
        names = [hello.sni or host]
        organization = None
        if upstream is not None and self.tunnel and upstream.server.certificate_list:
            cert = upstream.server.certificate_list[0]
            names += cert.altnames
            organization = cert.organization
        if host not in names:
            names.append(host)
        leaf = state.certstore.get_leaf(names, organization)
        context, ciphers = state.server_context(leaf, alpn)
        if listeners.tls_start_client:
            await tls_event(ctx.addons, "tls_start_client", client_conn, ctx)
        try:
            inner = await start_client_tls(ctx.client, context, ctx.options.head_timeout)
        except (TimeoutError, ssl.SSLError, OSError, ConnectionError, NotTLS) as e:
            logger.info("%s: TLS handshake with the client for %s failed: %s", _peer(ctx),
                        hello.sni or host, tls_reason(e))
            if listeners.tls_failed_client:
                client_conn.error = tls_reason(e)
                await tls_event(ctx.addons, "tls_failed_client", client_conn, ctx)
            if upstream is not None:
                upstream.endpoint.close()
            ctx.client.transport.close()
            return
        fill_tls_fields(client_conn, inner.transport.get_extra_info("ssl_object"), False)
        client_conn.mitmcert = leaf.cert
        client_conn.cipher_list = ciphers
        ctx.client = inner
        if listeners.tls_established_client:
            await tls_event(ctx.addons, "tls_established_client", client_conn, ctx)
        await run_layer(ctx, ctx.next_layer.after_tls(self, upstream, client_conn.alpn))

    async def open_upstream(self, state: TlsState, hello: ClientHello,
                            offers: list[bytes]) -> tuple[Upstream | None, bytes | None]:
        """The upstream connection (None if it failed) and the ALPN to give the client."""
        host, port = self.address
        if not self.tunnel:
            # Reverse mode: the proxy is the server the client asked for. It speaks h2
            # whatever the upstream speaks; the HTTP layers connect upstream per request,
            # except for an HTTP/1 client of an https origin, whose upstream is opened
            # now to learn whether the origin refuses http/1.1 (then Http1ToH2Layer).
            fallback = b"http/1.1" if b"http/1.1" in offers else None
            if b"h2" in offers or not self.upstream_tls:
                return None, (b"h2" if b"h2" in offers else fallback)
            idle = self.ctx.pool.take_idle(("https", host, port))
            if idle is not None:  # a pooled HTTP/1.1 connection: no handshake needed
                return idle, fallback
            try:
                upstream = await open_http1_upstream(self.ctx.pool, ("https", host, port),
                                                     host)
            except UpstreamError:
                return None, fallback  # HttpLayer answers each request with a 502
            return upstream, fallback
        sni = hello.sni
        try:
            if b"h2" in offers:
                upstream = await open_tls_upstream(self.ctx.pool, ("https", host, port),
                                                   sni or host, offers)
            else:  # an HTTP/1 client: http/1.1 to the upstream, unless it refuses
                upstream = await open_http1_upstream(self.ctx.pool, ("https", host, port),
                                                     sni or host)
        except UpstreamError:
            # Finish the client handshake anyway: its requests get a 502 with the reason.
            fallback = b"h2" if b"h2" in offers else None
            return None, (b"http/1.1" if b"http/1.1" in offers else fallback)
        alpn = upstream.server.alpn
        if alpn in offers:
            return upstream, alpn
        return upstream, next((p for p in offers if p != b"h2"), None)


class ReverseTlsLayer(Layer):
    """reverse:https:// or reverse:http:// mode: TLS if the client starts with a
    ClientHello (as mitmdump, plain and TLS clients share the port); `next_layer` chooses
    from that first byte."""

    async def run(self) -> None:
        ctx = self.ctx
        client = ctx.client
        while client.reader.buffered == 0 and not client.closed and not client.reader.at_eof:
            await client.wait_data()
        first = client.reader.peek(1)
        tls = bool(first) and first[0] == HANDSHAKE
        await run_layer(ctx, ctx.next_layer.reverse_layer(ctx, tls))


def _peer(ctx: RootContext) -> str:
    host, port = ctx.client_conn.peername[:2]
    return f"{host}:{port}"


__all__ = [
    "ClientHello",
    "NotTLS",
    "ReverseTlsLayer",
    "TlsLayer",
    "TlsState",
    "parse_client_hello",
    "tls_state",
]
