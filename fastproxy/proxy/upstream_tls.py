"""TLS connections to upstream servers: their contexts, the handshake, ALPN fallback.

The pool (`upstream.py`) opens its https connections here, and the HTTP layers their h2
ones. Certificates are verified against the system store (`SSL_CERT_FILE` and
`SSL_CERT_DIR` apply) plus `ssl_verify_upstream_trusted_ca`, unless `ssl_insecure`.
An HTTP/1 client's upstream is offered http/1.1 only (an origin speaking both would
otherwise pick h2), and h2 only when it refuses that with a no_application_protocol
alert (RFC 7301 §3.2); such upstreams are remembered (`UpstreamTlsState.h2_only`).
The client side of interception (the CA, minted leaves) is `layers/tls.py`'s.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from typing import TYPE_CHECKING

from cryptography import x509

from fastproxy._core import HTTP1Reader
from fastproxy.certs import Cert
from fastproxy.log import logger
from fastproxy.proxy.streams import Endpoint
from fastproxy.proxy.upstream_conn import PoolKey, Upstream, UpstreamError
from fastproxy.tls import TlsData

if TYPE_CHECKING:
    from fastproxy.options import Options
    from fastproxy.proxy.upstream import UpstreamPool

TLS_VERSIONS = {"TLSv1": "TLSv1", "TLSv1.1": "TLSv1.1", "TLSv1.2": "TLSv1.2",
                "TLSv1.3": "TLSv1.3", "SSLv3": "SSLv3"}


class AlpnRefused(UpstreamError):
    """The upstream ended the handshake with no_application_protocol: it speaks none of
    the protocols offered (RFC 7301 §3.2)."""


class UpstreamTlsState:
    """The client-side SSL contexts of one proxy process, built from its options."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._contexts: dict[tuple[bytes, ...], ssl.SSLContext] = {}
        self.h2_only: set[PoolKey] = set()
        """Upstreams that refused http/1.1 (offered h2 at once next time)."""

    def upstream_context(self, alpn_offers: list[bytes]) -> ssl.SSLContext:
        """A client-side context verifying as configured, offering these ALPNs."""
        key = tuple(alpn_offers)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = self._new_context(alpn_offers)
        return context

    def _new_context(self, alpn_offers: list[bytes]) -> ssl.SSLContext:
        options = self.options
        # The system store (SSL_CERT_FILE and SSL_CERT_DIR apply), plus the trusted CA option.
        context = ssl.create_default_context()
        if options.ssl_verify_upstream_trusted_ca:
            context.load_verify_locations(cafile=options.ssl_verify_upstream_trusted_ca)
        if options.ssl_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if alpn_offers:
            context.set_alpn_protocols([p.decode() for p in alpn_offers])
        return context


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_RESET_ON = {"ssl_insecure", "ssl_verify_upstream_trusted_ca", "http2"}


def upstream_tls_state(options: Options) -> UpstreamTlsState:
    """The UpstreamTlsState for these options, made on first use and remade when they
    change."""
    state = _STATES.get(options)
    if state is None:
        state = _STATES[options] = UpstreamTlsState(options)
        options.subscribe(lambda updated: _RESET_ON & updated and _STATES.pop(options, None))
    return state


async def open_tls_upstream(pool: UpstreamPool, key: PoolKey, sni: str | None = None,
                            alpn_offers: list[bytes] | None = None) -> Upstream:
    """A new TLS connection to key's host:port (announced with `serverconnect`)."""
    if alpn_offers is None:  # the pool's HTTP/1.1 connections
        try:
            return await open_tls_upstream(pool, key, sni, [b"http/1.1"])
        except AlpnRefused as e:
            raise await _h2_only(pool, key, sni, e) from None
    options = pool.options
    _, host, port = key
    state = upstream_tls_state(options)
    endpoint = TlsEndpoint(HTTP1Reader(False, options.max_head_size, options.max_headers),
                           pool.loop)
    server = await pool.connect(host, port, endpoint)
    server.tls = True
    server.sni = sni or host
    server.alpn_offers = list(alpn_offers)
    context = state.upstream_context(alpn_offers)
    listeners = pool.addons.listeners
    if listeners.tls_start_server:
        await tls_event(pool.addons, "tls_start_server", server)
    try:
        endpoint.transport = await asyncio.wait_for(
            pool.loop.start_tls(endpoint.transport, endpoint, context,
                                server_hostname=server.sni), options.connect_timeout)
    except (TimeoutError, ssl.SSLError, ssl.CertificateError, OSError) as e:
        reason = tls_reason(e)
        server.error = reason
        endpoint.transport.abort()
        pool.closed(server)
        logger.info("TLS handshake with %s:%d failed: %s", host, port, reason)
        if listeners.tls_failed_server:
            await tls_event(pool.addons, "tls_failed_server", server)
        error = AlpnRefused if _alpn_refused(e) else UpstreamError
        raise error(f"TLS handshake with {host}:{port} failed: {reason}") from None
    fill_tls_fields(server, endpoint.transport.get_extra_info("ssl_object"), peer_chain=True)
    if listeners.tls_established_server:
        await tls_event(pool.addons, "tls_established_server", server)
    endpoint.on_lost = lambda _: pool.closed(server)
    return Upstream(endpoint, server, key)


async def open_http1_upstream(pool: UpstreamPool, key: PoolKey, sni: str | None) -> Upstream:
    """The upstream of an HTTP/1 client: offered http/1.1, and h2 (once more, when the
    http2 option allows) only if it refuses http/1.1; the caller checks `server.alpn`."""
    h2_only = upstream_tls_state(pool.options).h2_only
    if key in h2_only and pool.options.http2:  # it refused http/1.1 before: one handshake
        try:
            return await open_tls_upstream(pool, key, sni, [b"h2"])
        except AlpnRefused:
            h2_only.discard(key)
    try:
        return await open_tls_upstream(pool, key, sni, [b"http/1.1"])
    except AlpnRefused:
        if not pool.options.http2:
            raise
        logger.debug("%s:%d refused http/1.1: offering h2", key[1], key[2])
        upstream = await open_tls_upstream(pool, key, sni, [b"h2"])
        if len(h2_only) < 4096:
            h2_only.add(key)
        return upstream


async def _h2_only(pool: UpstreamPool, key: PoolKey, sni: str | None,
                   refused: AlpnRefused) -> UpstreamError:
    """The error for an HTTP/1.1 connection the upstream refused: that of a handshake
    offering h2 when that fails too (e.g. an untrusted certificate), else "h2 only"."""
    if not pool.options.http2:
        return refused
    try:
        upstream = await open_tls_upstream(pool, key, sni, [b"h2"])
    except UpstreamError as e:
        return e
    upstream.endpoint.close()
    return UpstreamError(f"{key[1]}:{key[2]} refused http/1.1 (it speaks h2 only): {refused}")


def _alpn_refused(e: BaseException) -> bool:
    return isinstance(e, ssl.SSLError) and (
        getattr(e, "reason", None) == "TLSV1_ALERT_NO_APPLICATION_PROTOCOL"
        or "no application protocol" in str(e))


def fill_tls_fields(conn, sslobj: ssl.SSLObject, peer_chain: bool) -> None:
    """Set a connection's TLS fields from its completed handshake."""
    conn.tls = True
    conn.timestamp_tls_setup = time.time()
    alpn = sslobj.selected_alpn_protocol()
    conn.alpn = alpn.encode() if alpn else None
    cipher = sslobj.cipher()
    conn.cipher = cipher[0] if cipher else None
    conn.tls_version = TLS_VERSIONS.get(sslobj.version() or "")
    if peer_chain:
        conn.certificate_list = _peer_chain(sslobj)


def _peer_chain(sslobj: ssl.SSLObject) -> list[Cert]:
    """The peer's certificates, end-entity first: the verified chain when there is one."""
    inner = getattr(sslobj, "_sslobj", None)
    chain = []
    for getter in ("get_verified_chain", "get_unverified_chain"):  # public in 3.13
        fn = getattr(sslobj, getter, None) or getattr(inner, getter, None)
        chain = (fn() or []) if fn is not None else []
        if chain:
            break
    ders = [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]
    if not ders:
        leaf = sslobj.getpeercert(binary_form=True)
        ders = [leaf] if leaf else []
    return [Cert(x509.load_der_x509_certificate(der)) for der in ders]


def tls_reason(e: BaseException) -> str:
    """A failed handshake's reason, in one line."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {e.verify_message}"
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


class TlsEndpoint(Endpoint):
    """The decrypted side of a TLS connection (to an upstream, or an intercepted
    client's)."""

    __slots__ = ()

    def eof_received(self) -> bool:
        super().eof_received()
        return False  # over TLS a FIN ends the connection (half-close needs close_notify)


async def tls_event(addons, name: str, conn, ctx=None) -> None:
    """mitmproxy's TLS events (fastproxy.tls.TlsData), only fired when listened to."""
    await addons.trigger(name, TlsData(conn, ctx))


__all__ = ["AlpnRefused", "TlsEndpoint", "UpstreamTlsState", "fill_tls_fields",
           "open_http1_upstream", "open_tls_upstream", "tls_event", "tls_reason",
           "upstream_tls_state"]
