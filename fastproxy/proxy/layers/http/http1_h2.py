"""HTTP/1 clients to an HTTP/2 upstream: each request one stream of an h2 connection.

A TLS-intercepted HTTP/1 client (ALPN http/1.1, or none) gets an upstream offered
http/1.1, and h2 only when the upstream refuses http/1.1 (tls.py, `open_http1_upstream`;
not with `--set http2=false`). When the upstream speaks h2, `Http1ToH2Layer` serves the
client connection (in a CONNECT tunnel, or in reverse:https:// mode): it reads requests as `HttpLayer` does (same limits, same
400s, pipelining), and sends each one as a stream of an `H2Conn` (http2.py's client side),
one at a time, as HTTP/1 is ordered. Each request is a normal `HTTPFlow` with the events
HTTP/1 flows have:

    requestheaders -> request -> (upstream h2 stream) -> responseheaders -> response | error

Translation (RFC 9113 §8.2.2, §8.3.1): connection-specific fields are dropped, the Host
field becomes :authority, a chunked request body is de-chunked into DATA frames. The
response goes back with a Content-Length when the origin gave one (or when the body was
gathered), chunked otherwise (close-delimited for an HTTP/1.0 client), trailers in the
last chunk. Flow control is end to end as in http2.py: received DATA is acknowledged once
written to the client and its transport drained; request bytes are read from the client
only as fast as the stream's window lets them go.

Requests that cannot travel over an h2 stream (CONNECT, `Upgrade`, e.g. WebSocket) take
the HTTP/1 path (`HttpLayer.exchange`, a pooled HTTP/1.1 connection). If the h2 connection
goes away, the next request opens a new one; should the upstream then pick http/1.1, the
connection is pooled and this client's requests continue over HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import time
from http import HTTPStatus

import h2.errors

from fastproxy._core import BODY, CLOSED, END, ProtocolError, build_head
from fastproxy.http import Headers, Response
from fastproxy.io.bodies import BodyTee
from fastproxy.proxy.context import RootContext
from fastproxy.proxy.layers.http.deadlines import (
    ReadTimeout,
    head_while_uploading,
    response_head,
)
from fastproxy.proxy.layers.http.h2conn import (
    H2Conn,
    H2Stream,
    StreamReset,
    gather_stream,
)
from fastproxy.proxy.layers.http.h2fields import CONNECTION_SPECIFIC
from fastproxy.proxy.layers.http.http1 import (
    CONTINUE,
    BodyTooLarge,
    Exchange,
    HttpLayer,
)
from fastproxy.proxy.layers.http.http2 import authority_of, split_response_headers
from fastproxy.proxy.layers.http.routing import Route, route_request
from fastproxy.proxy.layers.http.semantics import HOP_BY_HOP
from fastproxy.proxy.streams import ConnectionGone
from fastproxy.proxy.upstream import Upstream, UpstreamError
from fastproxy.proxy.upstream_tls import open_tls_upstream

# Not sent on an h2 stream: RFC 9113 §8.2.2, plus what the proxy handles itself
# (Expect: 100-continue is answered here) and the framing it redoes.
REQUEST_DROP = CONNECTION_SPECIFIC | {b"expect", b"trailer", b"content-length"}
RESPONSE_DROP = HOP_BY_HOP | {b"transfer-encoding"}
NO_BODY_STATUS = frozenset((204, 304))


class Http1ToH2Layer(HttpLayer):
    """Serves an HTTP/1 client connection whose upstream speaks HTTP/2 (module docstring).

    `tunnel` is the (host, port) the client's requests go to; `upstream` the h2
    connection the TLS layer opened to it.
    """

    def __init__(self, ctx: RootContext, tunnel: tuple[str, int], upstream: Upstream) -> None:
        super().__init__(ctx, tunnel=tunnel, scheme="https")
        self.conn: H2Conn | None = None
        self.h1_only = False
        """The upstream picked http/1.1 on a reconnection: HttpLayer's path from then on."""
        self.use(upstream)

    def __repr__(self) -> str:
        return f"<Http1ToH2Layer {self.tunnel}>"

    def use(self, upstream: Upstream) -> None:
        conn = self.conn = H2Conn(upstream.endpoint, True)
        conn.server = upstream.server
        conn.start()
        conn.pump_task = upstream.endpoint.loop.create_task(conn.pump())
        self.ctx.server_conn = upstream.server

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self.conn is not None:
                self.conn.close()

    async def exchange(self, head) -> bool:
        if head.method == b"CONNECT" or head.upgrade or self.h1_only:
            return await super().exchange(head)
        try:
            route = route_request(self.ctx, head, self.tunnel, self.scheme)
        except ProtocolError as e:
            self.refuse(400, str(e))
            return False
        conn = await self.h2_conn(route)
        if conn is None:  # the HTTP/1 path: a pooled connection, or a 502 with the reason
            return await super().exchange(head)
        exchange = H2UpstreamExchange(self.ctx, head, route, conn)
        try:
            return await exchange.run()
        except (StreamReset, ConnectionGone) as e:
            exchange.abort_stream()
            message = f"upstream: {e}" if isinstance(e, StreamReset) else f"connection closed: {e}"
            await exchange.fail(message)
            if exchange.response_started:
                self.ctx.client.transport.close()
            else:
                self.refuse(502, message)
            return False
        except ReadTimeout as e:  # no response head within read_timeout: 504
            exchange.abort_stream()
            await exchange.fail(str(e))
            self.refuse(504, str(e))
            return False
        except BodyTooLarge as e:
            exchange.abort_stream()
            await exchange.fail(str(e))
            self.refuse(502 if exchange.response_started else 413, str(e))
            return False
        except ProtocolError as e:  # the client's body framing
            exchange.abort_stream()
            await exchange.fail(f"bad request: {e}")
            self.refuse(400, f"Bad request: {e}")
            return False

    async def h2_conn(self, route: Route) -> H2Conn | None:
        """The h2 connection for the next request; a new one if the last went away.
        None: use HTTP/1 (the upstream picked http/1.1, or cannot be reached)."""
        conn = self.conn
        if conn is not None and conn.usable:
            return conn
        if conn is not None:
            conn.close()
        self.conn = None
        ctx = self.ctx
        try:
            upstream = await open_tls_upstream(ctx.pool, ("https", route.host, route.port),
                                               ctx.client_conn.sni or route.host,
                                               [b"h2", b"http/1.1"])
        except UpstreamError:
            return None  # HttpLayer's path retries once and answers 502 with the reason
        if upstream.server.alpn != b"h2":
            ctx.pool.release(upstream)
            self.h1_only = True
            return None
        self.use(upstream)
        return self.conn


class H2UpstreamExchange(Exchange):
    """One HTTP/1 request sent as an h2 stream, and its response back in HTTP/1."""

    __slots__ = ("conn", "lingering", "up", "upload")

    def __init__(self, ctx: RootContext, head, route: Route, conn: H2Conn) -> None:
        super().__init__(ctx, head, route)
        self.conn = conn
        self.up: H2Stream | None = None
        self.upload: asyncio.Task | None = None
        """The request body going out while the response head is awaited."""
        self.lingering = False
        """An early response went out before the request body was read: the client
        connection is closed after `linger`."""

    async def run(self) -> bool:
        self.ctx.server_conn = self.conn.server
        finished = await self.request_events()
        if finished is not None:
            return finished
        upload = await self.send_request_h2()
        if upload is not None:
            self.upload = self.ctx.client.loop.create_task(upload)
        keep_alive = await self.receive_response()
        if self.lingering:
            await self.linger()
        return keep_alive

    async def linger(self, seconds: float = 1.0) -> None:
        """Read and drop what the client still sends, a moment, then close: closing with
        unread bytes makes TCP send RST, which can destroy the response in flight
        (RFC 9112 §9.6, "tear-down")."""
        client = self.ctx.client
        reader, loop = client.reader, client.loop
        deadline = loop.time() + seconds
        try:
            while not client.closed and loop.time() < deadline:
                reader.take_rest()
                await asyncio.wait_for(client.wait_data(), deadline - loop.time())
        except (TimeoutError, ConnectionGone):
            pass
        client.transport.close()

    # -- the request ----------------------------------------------------------------------

    def request_headers(self) -> list:
        request = self.flow.request
        authority = request.headers.get("host") or request.authority or \
            authority_of(request.host, request.port, request.scheme).decode()
        headers = [(b":method", request.method.encode()), (b":scheme", request.scheme.encode()),
                   (b":authority", authority.encode()), (b":path", request.path.encode())]
        drop = REQUEST_DROP | self.head.connection_tokens
        headers += [(n.lower(), v) for n, v in request.headers.fields if n.lower() not in drop]
        body = request.raw_content
        if body is not None:
            if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                headers.append((b"content-length", str(len(body)).encode()))
        elif not self.head.chunked and self.head.content_length >= 0:
            headers.append((b"content-length", str(self.head.content_length).encode()))
        return headers

    async def send_request_h2(self):
        """Open the stream; the coroutine that sends the body (None without one), run
        while the response head is awaited: an origin may answer early (a 413 before
        it read the body; RFC 9110 §15.5.14)."""
        conn, request = self.conn, self.flow.request
        body = request.raw_content
        if body is None and self.request_body_done:
            body = b""
        up = self.up = await conn.open_stream(self.request_headers(), end=body == b"")
        if body:
            return conn.send_data(up, body, True)
        if body is None:
            return self.stream_request_body_h2(up)
        return None

    async def stream_request_body_h2(self, up: H2Stream) -> None:
        """The client's body, de-chunked, into DATA frames as the stream's window allows."""
        client, conn = self.ctx.client, self.conn
        if self.head.expect_continue and self.head.version == b"HTTP/1.1":
            client.write(CONTINUE)
        reader = client.reader
        reader.decode = True
        while True:
            event = reader.next_event()
            if event == BODY:
                await conn.send_data(up, reader.chunk, False)
            elif event == END:
                break
            elif event == CLOSED or client.closed and reader.buffered == 0:
                raise ConnectionGone("the client closed the connection mid-body")
            else:
                await client.wait_data()
        self.request_body_done = True
        conn.conn.end_stream(up.id)
        conn.flush()
        self.flow.request.timestamp_end = time.time()

    # -- the response ---------------------------------------------------------------------

    async def receive_response(self) -> bool:
        ctx, flow, up = self.ctx, self.flow, self.up
        addons, listeners = ctx.addons, ctx.listeners
        timeout = ctx.options.read_timeout
        status, fields = split_response_headers(
            await head_while_uploading(self.upload, up.headers, timeout)
            if self.upload is not None else await response_head(up.headers, timeout))
        self.response_started = True
        flow.request.timestamp_end = flow.request.timestamp_end or time.time()
        response = flow.response = Response(b"HTTP/2.0", status, _reason(status),
                                            Headers(fields), None, None, time.time(), None)
        if listeners.responseheaders:
            await addons.trigger("responseheaders", flow)
        if self.head.method == b"HEAD" or status in NO_BODY_STATUS:
            return await self.deliver_without_body()
        if (self.gathers_bodies() and not response.stream) or (up.ended and up.data.qsize() <= 1):
            response.raw_content = await self.gather_h2()
            response.timestamp_end = time.time()
            if up.trailers:
                response.trailers = Headers(up.trailers)
            if listeners.response:
                await addons.trigger("response", flow)
            if flow.error is not None:
                ctx.client.transport.close()
                return False
            self.write_h1_response(flow.response)
            return self.done()
        await self.stream_response()
        response.timestamp_end = time.time()
        if listeners.response:
            await addons.trigger("response", flow)
        return self.done()

    async def deliver_without_body(self) -> bool:
        """HEAD, 204, 304: the head as the origin sent it (a HEAD's Content-Length is the
        GET's), after `response`, so that what the addons change reaches the client."""
        flow = self.flow
        flow.response.raw_content = await self.gather_h2()
        flow.response.timestamp_end = time.time()
        if self.ctx.listeners.response:
            await self.ctx.addons.trigger("response", flow)
        if flow.error is not None:
            self.ctx.client.transport.close()
            return False
        response = flow.response
        if response.raw_content and self.head.method != b"HEAD":
            self.write_h1_response(response)
        else:
            self.ctx.client.write(self.response_head(_status_line(response),
                                                     list(response.headers.fields),
                                                     RESPONSE_DROP, None))
        return self.done()

    async def gather_h2(self) -> bytes:
        return await gather_stream(self.conn, self.up, self.ctx.options.body_size_limit,
                                   BodyTooLarge)

    def write_h1_response(self, response: Response) -> None:
        """A whole response, its body framed by Content-Length."""
        body = response.raw_content or b""
        fields = list(response.headers.fields)
        extra = [(b"Content-Length", str(len(body)).encode())]
        head = self.response_head(_status_line(response), fields,
                                  RESPONSE_DROP | {b"content-length"}, extra)
        if body and self.head.method != b"HEAD":
            self.ctx.client.write_both(head, body)
        else:
            self.ctx.client.write(head)

    async def stream_response(self) -> None:
        """DATA frames to the client as they come: Content-Length if the origin gave one,
        else chunked (close-delimited to an HTTP/1.0 client)."""
        ctx, conn, up, response = self.ctx, self.conn, self.up, self.flow.response
        client = ctx.client
        fields = list(response.headers.fields)
        extra = None
        chunked = False
        if "content-length" not in response.headers:
            if self.head.version == b"HTTP/1.1":
                extra, chunked = [(b"Transfer-Encoding", b"chunked")], True
            else:
                self.client_keep_alive = False  # the end of the body is the end of the connection
        client.write(self.response_head(_status_line(response), fields, RESPONSE_DROP, extra))
        tee = BodyTee(ctx.options.save_body_limit) if ctx.options.save_stream_file else None
        while True:
            item = await up.data.get()
            if item is None:
                break
            if isinstance(item, StreamReset):
                raise item
            data, length = item
            if data:
                if tee is not None:
                    tee.add(data)
                client.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                await client.drain()
            conn.ack(up, length)
        if chunked:
            trailers = build_head(b"0", up.trailers, None, None) if up.trailers else b"0\r\n\r\n"
            client.write(trailers)
        if tee is not None:
            tee.attach(self.flow, response)

    # -- the end ------------------------------------------------------------------------

    def done(self) -> bool:
        self.end_upload()
        self.conn.forget(self.up)
        if not self.client_keep_alive and not self.lingering:
            self.ctx.client.transport.close()
        return self.client_keep_alive

    def abort_stream(self) -> None:
        """Reset the upstream stream of an exchange that failed."""
        if self.upload is not None:
            self.upload.cancel()
            self.upload = None
        if self.up is not None:
            self.conn.reset(self.up)

    def end_upload(self) -> None:
        """After the response: an upload the origin did not wait for is stopped, the
        stream reset NO_ERROR, and the client connection closed (the rest of its body
        would be read as the next request)."""
        task, self.upload = self.upload, None
        if task is None:
            return
        if task.done():
            if task.cancelled() or task.exception() is None:
                return
        else:
            task.cancel()
            self.conn.reset(self.up, h2.errors.ErrorCodes.NO_ERROR)
        self.client_keep_alive = False
        self.lingering = True


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _status_line(response: Response) -> bytes:
    """HTTP/1.1 whatever version the response came in (RFC 9110 §6.2)."""
    reason = response.reason or _reason(response.status_code).decode()
    return f"HTTP/1.1 {response.status_code} {reason}".encode("utf-8", "surrogateescape")


__all__ = ["H2UpstreamExchange", "Http1ToH2Layer"]
