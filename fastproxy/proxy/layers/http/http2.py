"""HTTP/2 with the client, to an HTTP/2 or an HTTP/1 upstream (RFC 9113).

`Http2Layer` serves the client's connection (an `H2Conn`, h2conn.py): every request
stream runs `serve_stream` in its own task and becomes a normal `HTTPFlow`, with the
events HTTP/1 flows have:

    requestheaders -> request -> (upstream) -> responseheaders -> response | error

Upstream, a stream becomes a stream of the upstream's HTTP/2 connection when ALPN chose
h2 there, or an HTTP/1.1 request on a pooled keep-alive connection otherwise. The
request body goes up while the response head is awaited, so an early answer (413) is
passed on; `read_timeout` bounds the wait for the head (504).
"""

from __future__ import annotations

import asyncio
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from fastproxy._core import BODY, END, HEAD, ProtocolError, build_head
from fastproxy.flow import Error
from fastproxy.http import Headers, HTTPFlow, Request, Response
from fastproxy.io.bodies import BodyTee
from fastproxy.log import logger
from fastproxy.proxy.context import Layer, RootContext
from fastproxy.proxy.layers.http.deadlines import (
    ReadTimeout,
    head_while_uploading,
    response_head,
)
from fastproxy.proxy.layers.http.h2conn import (
    ClientH2Conn,
    H2Conn,
    H2Limits,
    H2Stream,
    StreamReset,
    gather_stream,
)
from fastproxy.proxy.layers.http.h2fields import (
    CONNECTION_SPECIFIC,
    h2_fields,
)
from fastproxy.proxy.streams import ConnectionGone, Endpoint
from fastproxy.proxy.upstream import Upstream, UpstreamError
from fastproxy.proxy.upstream_tls import open_tls_upstream

_REASONS = {200: b"OK", 502: b"Bad Gateway", 413: b"Payload Too Large",
            504: b"Gateway Timeout"}


class Http2Layer(Layer):
    """Serves the HTTP/2 client connection (see the module docstring).

    `tunnel` is the (host, port) every request goes to when there is one (CONNECT and
    TLS); otherwise (reverse mode) the mode's upstream. `upstream` is the connection the
    TLS layer opened; with ALPN h2 its streams carry the requests.
    """

    def __init__(self, ctx: RootContext, tunnel: tuple[str, int] | None, scheme: str,
                 upstream: Upstream | None) -> None:
        super().__init__(ctx)
        self.tunnel = tunnel
        self.scheme = scheme
        self.upstream = upstream
        self.upstream_h2: H2Conn | None = None
        self.upstream_task: asyncio.Task | None = None
        self.tasks: dict[int, asyncio.Task] = {}
        self.client: ClientH2Conn | None = None
        self.opening = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<Http2Layer {self.tunnel}>"

    async def run(self) -> None:
        ctx = self.ctx
        upstream = self.upstream
        if upstream is not None:
            ctx.server_conn = upstream.server
            if upstream.server.alpn == b"h2":
                self.use_upstream_h2(upstream)
            else:
                ctx.pool.release(upstream)
        client = self.client = ClientH2Conn(ctx.client, self.new_stream, self.stream_reset,
                                            H2Limits(ctx.options))
        client.start()
        try:
            await client.pump()
        finally:
            for task in list(self.tasks.values()):
                task.cancel()
            if self.tasks:
                await asyncio.wait(list(self.tasks.values()), timeout=5)
            if self.upstream_h2 is not None:
                self.upstream_h2.close()
            ctx.client.close()

    def use_upstream_h2(self, upstream: Upstream) -> None:
        h2conn = self.upstream_h2 = H2Conn(upstream.endpoint, True)
        h2conn.server = upstream.server
        h2conn.start()
        self.upstream_task = self.ctx.client.loop.create_task(h2conn.pump())

    def new_stream(self, stream: H2Stream, pseudo: dict, fields: list) -> None:
        task = self.ctx.client.loop.create_task(self.serve_stream(stream, pseudo, fields))
        self.tasks[stream.id] = task
        task.add_done_callback(lambda _: self.tasks.pop(stream.id, None))

    def stream_reset(self, stream: H2Stream) -> None:
        task = self.tasks.get(stream.id)
        if task is not None:
            task.cancel()

    # -- one stream -----------------------------------------------------------------

    async def serve_stream(self, stream: H2Stream, pseudo: dict, fields: list) -> None:
        exchange = H2Exchange(self, stream, pseudo, fields)
        try:
            await exchange.run()
        except asyncio.CancelledError:
            await exchange.fail("stream reset by the client")
            exchange.abort_upstream()
        except ReadTimeout as e:
            exchange.abort_upstream()
            if exchange.response_sent or self.client.closed:
                await exchange.fail(str(e))
                self.client.reset(stream, h2.errors.ErrorCodes.CANCEL)
            else:
                await exchange.error_response(504, str(e))
        except StreamReset as e:
            exchange.abort_upstream()
            # An upstream's malformed response or broken connection is a 502 while no
            # response went out (RFC 9113 §8.1.1: never passed on); its RST_STREAM is
            # passed on as a reset (REFUSED_STREAM tells the client it may retry).
            if str(e).startswith("upstream") and "reset by peer" not in str(e) and \
                    not exchange.response_sent and not self.client.closed and \
                    stream.error is None:
                await exchange.bad_gateway(str(e))
                return
            await exchange.fail(str(e))
            self.client.reset(stream, e.code if "upstream" not in str(e) else
                              h2.errors.ErrorCodes.CANCEL)
        except (ConnectionGone, ProtocolError, h2.exceptions.ProtocolError) as e:
            await exchange.fail(f"connection closed: {e}")
            exchange.abort_upstream()
            self.client.reset(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
        except Exception:
            logger.exception("HTTP/2 stream %d failed", stream.id)
            exchange.abort_upstream()
            self.client.reset(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
        finally:
            self.client.forget(stream)

    async def upstream_h2_conn(self, host: str, port: int) -> H2Conn | None:
        """The upstream HTTP/2 connection for a new stream, or None for HTTP/1."""
        if self.upstream_h2 is not None and self.upstream_h2.usable:
            return self.upstream_h2
        async with self.opening:  # concurrent first streams share one new connection
            return await self._open_upstream_h2(host, port)

    async def _open_upstream_h2(self, host: str, port: int) -> H2Conn | None:
        if self.upstream_h2 is not None and self.upstream_h2.usable:
            return self.upstream_h2
        if self.scheme != "https" or not self.ctx.options.http2:
            return None
        if self.upstream_h2 is None and self.upstream is not None:
            return None  # ALPN chose HTTP/1.1 there
        sni = self.ctx.client_conn.sni if self.tunnel else None
        upstream = await open_tls_upstream(self.ctx.pool, ("https", host, port), sni or host,
                                           [b"h2", b"http/1.1"])
        self.upstream = upstream
        if upstream.server.alpn != b"h2":
            self.ctx.pool.release(upstream)
            return None
        self.use_upstream_h2(upstream)
        return self.upstream_h2


class H2Exchange:
    """One HTTP/2 request stream and its response, as an `HTTPFlow`."""

    __slots__ = (
        "client",
        "ctx",
        "fields",
        "flow",
        "h1",
        "layer",
        "pseudo",
        "response_sent",
        "stream",
        "tee",
        "up_conn",
        "up_stream",
        "upload",
    )

    def __init__(self, layer: Http2Layer, stream: H2Stream, pseudo: dict,
                 fields: list) -> None:
        self.layer = layer
        self.ctx = layer.ctx
        self.client = layer.client
        self.stream = stream
        self.pseudo = pseudo
        self.fields = fields
        self.flow: HTTPFlow | None = None
        self.h1: Upstream | None = None
        self.up_stream: H2Stream | None = None
        self.up_conn: H2Conn | None = None
        self.response_sent = False
        self.upload: asyncio.Task | None = None
        """The request body going out while the response head is awaited."""
        self.tee: BodyTee | None = None
        """A streamed request body kept for the recording (save_stream_file)."""

    # -- the request ------------------------------------------------------------------

    def target(self) -> tuple[str, int, bytes]:
        """Where the request goes: host, port, and the :authority to send."""
        authority = self.pseudo.get(b":authority", b"")
        layer = self.layer
        if layer.tunnel is not None:
            host, port = layer.tunnel
        else:
            host, port = self.ctx.mode.address
            if not self.ctx.options.keep_host_header:  # as routing.py does for HTTP/1
                authority = authority_of(host, port, layer.scheme)
        return host, port, authority

    def make_request(self) -> Request:
        pseudo = self.pseudo
        host, port, authority = self.target()
        scheme = self.layer.scheme.encode()
        method = pseudo.get(b":method", b"GET")
        # Empty only when END_STREAM is the next thing queued: HEADERS, DATA and
        # END_STREAM of a small request often arrive in one read, and are all queued
        # before this runs (a body taken as b"" then was lost: issue 15, finding 1).
        stream = self.stream
        ended = stream.data.at_end()
        trailers = Headers(stream.trailers) if ended and stream.trailers else None
        return Request(host, port, method, scheme, authority, pseudo.get(b":path", b"/"),
                       b"HTTP/2.0", Headers(self.fields), b"" if ended else None,
                       trailers, time.time(), time.time() if ended else None)

    async def run(self) -> None:
        ctx = self.ctx
        addons, listeners = ctx.addons, ctx.listeners
        if not (listeners.requestheaders or listeners.request or listeners.responseheaders
                or listeners.response or listeners.error):
            if await self.run_fast():
                return
        flow = self.flow = HTTPFlow(ctx.client_conn, ctx.server_conn, live=True)
        request = flow.request = self.make_request()
        # The request body is gathered for a `request` listener only; a recording keeps
        # a streamed one up to save_body_limit (issue 15, finding 6).
        gather = bool(addons.body_listeners["request"])
        if listeners.requestheaders:
            await addons.trigger("requestheaders", flow)
        if request.raw_content is None and not (gather and not request.stream) and \
                ctx.options.save_stream_file:
            self.tee = BodyTee(ctx.options.save_body_limit)
        if request.raw_content is None and (gather and not request.stream):
            request.raw_content = await self.gather(self.client, self.stream)
            request.timestamp_end = time.time()
            if self.stream.trailers:
                request.trailers = Headers(self.stream.trailers)
        if listeners.request:
            await addons.trigger("request", flow)
        if flow.error is not None:  # killed
            self.client.reset(self.stream)
            return
        if flow.response is not None:
            await self.respond_from_flow()
            return
        try:
            conn = await self.layer.upstream_h2_conn(request.host, request.port)
        except UpstreamError as e:
            return await self.bad_gateway(str(e))
        if conn is not None:
            await self.via_h2(conn)
        else:
            await self.via_h1()

    # -- no addon listens: headers and DATA passed on, no flow -------------------------

    async def run_fast(self) -> bool:
        """Stream to stream, as HttpLayer's run_fast: no HTTPFlow, no Request. False when
        the upstream is HTTP/1 (the flow path serves it then, without events)."""
        host, port, authority = self.target()
        try:
            conn = await self.layer.upstream_h2_conn(host, port)
        except UpstreamError as e:
            await self.bad_gateway(str(e))
            return True
        if conn is None:
            return False
        self.up_conn = conn
        self.ctx.server_conn = conn.server
        pseudo, stream = self.pseudo, self.stream
        headers = [(b":method", pseudo.get(b":method", b"GET")),
                   (b":scheme", self.layer.scheme.encode()), (b":authority", authority),
                   (b":path", pseudo.get(b":path", b"/"))]
        headers += h2_fields(self.fields)
        ended = stream.data.at_end()
        up = self.up_stream = await conn.open_stream(headers, end=ended)
        upload = None if ended else self.relay_data(self.client, stream, conn, up)
        status, fields = split_response_headers(await self.upload_and_head(upload,
                                                                             up.headers))
        headers = [(b":status", str(status).encode())]
        headers += h2_fields(fields)
        ended = up.data.at_end()
        self.client.conn.send_headers(stream.id, headers, end_stream=ended)
        self.client.flush()
        self.response_sent = True
        if not ended:
            await self.relay_data(conn, up, self.client, stream)
        self.end_upload()
        conn.forget(up)
        return True

    async def relay_data(self, src: H2Conn, src_stream: H2Stream, dst: H2Conn,
                         dst_stream: H2Stream) -> None:
        """DATA frames of one stream onto another until END_STREAM (trailers with it);
        each acknowledged once handed to the other side (end-to-end flow control)."""
        chunks = src_stream.data
        while True:
            item = await chunks.get()
            if item is None:
                break
            if isinstance(item, StreamReset):
                raise StreamReset(f"upstream: {item}" if src is not self.client else str(item),
                                  item.code)
            data, length = item
            end = chunks.at_end() and not src_stream.trailers
            await dst.send_data(dst_stream, data, end)
            src.ack(src_stream, length)
            if end:
                return
        if src_stream.trailers:
            dst.conn.send_headers(dst_stream.id, h2_fields(src_stream.trailers),
                                  end_stream=True)
            dst.flush()
        else:
            dst.end_stream(dst_stream)

    async def gather(self, conn: H2Conn, stream: H2Stream) -> bytes:
        return await gather_stream(conn, stream, self.ctx.options.body_size_limit,
                                   lambda message: StreamReset(
                                       message, h2.errors.ErrorCodes.REFUSED_STREAM))

    async def body_chunks(self):
        """The request body still to come from the client: (bytes, length) pairs."""
        request = self.flow.request
        if request.raw_content is not None:
            if request.raw_content:
                yield request.raw_content, 0
            return
        tee = self.tee
        while True:
            item = await self.stream.data.get()
            if item is None:
                if tee is not None:  # the body (and trailers) in the recorded flow
                    if self.stream.trailers:
                        request.trailers = Headers(self.stream.trailers)
                    tee.attach(self.flow, request, "request")
                    self.tee = None
                return
            if isinstance(item, StreamReset):
                raise item
            if tee is not None:
                tee.add(item[0])
            yield item

    def request_trailers(self) -> list | None:
        """The request's trailer fields to send (the flow's when the body was taken in,
        else the stream's, known once it ended), without connection-specific ones."""
        request = self.flow.request
        if request.raw_content is not None:
            fields = request.trailers.fields if request.trailers else None
        else:
            fields = self.stream.trailers
        if not fields:
            return None
        return h2_fields(fields)

    # -- upstream over HTTP/2 ---------------------------------------------------------

    async def via_h2(self, conn: H2Conn) -> None:
        ctx, flow = self.ctx, self.flow
        request = flow.request
        self.up_conn = conn
        flow.server_conn = ctx.server_conn = conn.server
        authority = request.authority.encode() if request.authority else \
            authority_of(request.host, request.port, request.scheme)
        headers = [(b":method", request.method.encode()), (b":scheme", request.scheme.encode()),
                   (b":authority", authority), (b":path", request.path.encode())]
        headers += h2_fields(request.headers.fields)
        no_body = self.request_trailers() is None and (
            request.raw_content == b"" or request.raw_content is None and
            self.stream.data.at_end())
        up = self.up_stream = await conn.open_stream(headers, end=no_body)
        resp_headers = await self.upload_and_head(
            None if no_body else self.upload_h2(conn, up), up.headers)
        status, fields = split_response_headers(resp_headers)
        response = flow.response = Response(b"HTTP/2.0", status, _REASONS.get(status, b""),
                                            Headers(fields), None, None, time.time(), None)
        await self.response_body(conn, up, response, None)
        self.end_upload()
        conn.forget(up)

    async def upload_h2(self, conn: H2Conn, up: H2Stream) -> None:
        """The request body (then its trailers) onto the upstream stream."""
        async for data, length in self.body_chunks():
            await conn.send_data(up, data, False)
            self.client.ack(self.stream, length)
        trailers = self.request_trailers()
        if trailers:
            conn.conn.send_headers(up.id, trailers, end_stream=True)
        else:
            conn.conn.end_stream(up.id)
        conn.flush()
        self.flow.request.timestamp_end = self.flow.request.timestamp_end or time.time()

    # -- the request body and the response head, at once ---------------------------------

    async def upload_and_head(self, upload, head):
        """The response head (`head`, awaitable), while `upload` (a coroutine sending the
        request body, or None) runs: an origin may answer before it read the whole body
        (a 413 or 405; RFC 9113 §8.1, RFC 9110 §15.5.14), and that answer goes to the
        client at once; the upload goes on meanwhile (`end_upload` stops it after the
        response). read_timeout counts from the end of the upload."""
        timeout = self.ctx.options.read_timeout
        if upload is None:
            return await response_head(head, timeout)
        task = self.upload = self.ctx.client.loop.create_task(upload)
        return await head_while_uploading(task, head, timeout)

    def end_upload(self) -> None:
        """After the response: stop an upload the origin did not wait for, and tell the
        client with RST_STREAM NO_ERROR that the rest is not wanted (RFC 9113 §8.1)."""
        task, self.upload = self.upload, None
        if task is None:
            return
        if task.done():  # finished, or broken by the origin that answered early
            if task.cancelled() or task.exception() is None:
                return
        else:
            task.cancel()
        if self.up_stream is not None and self.up_conn is not None:
            self.up_conn.reset(self.up_stream, h2.errors.ErrorCodes.NO_ERROR)
        if self.h1 is not None:  # the request was not finished: not reusable
            self.h1.endpoint.close()
            self.h1 = None
        self.client.reset(self.stream, h2.errors.ErrorCodes.NO_ERROR)

    # -- upstream over HTTP/1.1 -------------------------------------------------------

    async def via_h1(self) -> None:
        ctx, flow = self.ctx, self.flow
        request = flow.request
        try:
            upstream = self.h1 = await ctx.pool.acquire(request.scheme, request.host,
                                                        request.port)
        except UpstreamError as e:
            return await self.bad_gateway(str(e))
        flow.server_conn = ctx.server_conn = upstream.server
        endpoint = upstream.endpoint
        body = request.raw_content
        fields = [(n, v) for n, v in request.headers.fields
                  if n.lower() not in CONNECTION_SPECIFIC and n.lower() != b"content-length"]
        host = request.authority or authority_of(request.host, request.port,
                                               request.scheme).decode()
        extra = [(b"Host", host.encode())]
        chunked = False
        if body is not None:
            if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                extra.append((b"Content-Length", str(len(body)).encode()))
        else:
            length = request.headers.get("content-length")
            if length is not None and length.isdigit():
                extra.append((b"Content-Length", length.encode()))
            else:
                extra.append((b"Transfer-Encoding", b"chunked"))
                chunked = True
        start = b" ".join((request.method.encode(), request.path.encode(), b"HTTP/1.1"))
        endpoint.write(build_head(start, fields, None, extra))
        if body:
            endpoint.write(body)
        upload = self.upload_h1(endpoint, chunked) if body is None else None
        head = await self.upload_and_head(upload, self.h1_response_head(
            endpoint, request.method.encode()))
        fields = h2_fields(head.fields)
        response = flow.response = Response(head.version, head.status_code, head.reason,
                                            Headers(fields), None, None, time.time(), None)
        await self.response_body(None, None, response, endpoint)
        self.end_upload()
        if self.h1 is None:
            return  # closed: the request body was not all sent
        if head.keep_alive and not endpoint.reader.body_is_close_delimited:
            ctx.pool.release(upstream)
        else:
            endpoint.close()
        self.h1 = None

    async def upload_h1(self, endpoint: Endpoint, chunked: bool) -> None:
        """The request body to an HTTP/1.1 upstream, chunked (trailers in the last chunk)
        when the client gave no content-length."""
        async for data, length in self.body_chunks():
            endpoint.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            await endpoint.drain()
            self.client.ack(self.stream, length)
        if chunked:
            trailers = self.request_trailers()
            endpoint.write(build_head(b"0", trailers, None, None) if trailers
                           else b"0\r\n\r\n")
        self.flow.request.timestamp_end = time.time()

    async def h1_response_head(self, endpoint: Endpoint, method: bytes):
        while True:
            endpoint.reader.expect_response_to(method)
            if await endpoint.next_event() != HEAD:
                raise ConnectionGone("upstream closed the connection before responding")
            head = endpoint.reader.head
            if head.status_code >= 200:
                return head
            if head.status_code == 101:
                raise StreamReset("upstream switched protocols on an HTTP/2 request",
                                  h2.errors.ErrorCodes.PROTOCOL_ERROR)
            endpoint.reader.next_event()  # END of the interim response

    # -- the response -----------------------------------------------------------------

    async def response_body(self, conn: H2Conn | None, up: H2Stream | None,
                            response: Response, endpoint: Endpoint | None) -> None:
        """responseheaders, the body (gathered or streamed to the client), response."""
        ctx, flow = self.ctx, self.flow
        addons, listeners = ctx.addons, ctx.listeners
        if listeners.responseheaders:
            await addons.trigger("responseheaders", flow)
        gather = bool(addons.body_listeners["request"] or addons.body_listeners["response"])
        if gather and not response.stream:
            response.raw_content = await (self.gather(conn, up) if up is not None
                                          else endpoint.gather_body(ctx.options.body_size_limit,
                                                                    _response_too_large))
            response.timestamp_end = time.time()
            if up is not None and up.trailers:
                response.trailers = Headers(up.trailers)
            if listeners.response:
                await addons.trigger("response", flow)
            if flow.error is not None:
                self.client.reset(self.stream)
                return
            await self.send_response(flow.response, flow.response.raw_content or b"")
            return
        await self.send_head(response, end=False)
        client = self.client
        if up is not None:
            while True:
                item = await up.data.get()
                if item is None:
                    break
                if isinstance(item, StreamReset):
                    raise StreamReset(f"upstream: {item}", item.code)
                data, length = item
                await client.send_data(self.stream, data, False)
                conn.ack(up, length)
        else:
            reader = endpoint.reader
            reader.decode = True
            while True:
                event = reader.next_event()
                if event == BODY:
                    await client.send_data(self.stream, reader.chunk, False)
                elif event == END:
                    break
                else:
                    await endpoint.wait_data()
                    if endpoint.closed and reader.buffered == 0 and \
                            not reader.body_is_close_delimited:
                        if reader.next_event() == END:
                            break
                        raise ConnectionGone("upstream closed the connection mid-body")
        client.conn.end_stream(self.stream.id)
        client.flush()
        response.timestamp_end = time.time()
        if listeners.response:
            await addons.trigger("response", flow)

    async def send_head(self, response: Response, end: bool,
                        fields: list | None = None) -> None:
        headers = [(b":status", str(response.status_code).encode())]
        headers += h2_fields(fields or response.headers.fields)
        self.client.conn.send_headers(self.stream.id, headers, end_stream=end)
        self.client.flush()
        self.response_sent = True

    async def send_response(self, response: Response, body: bytes) -> None:
        """A whole response (the body re-framed by its length)."""
        head_request = self.pseudo.get(b":method") == b"HEAD"
        fields = [(n, v) for n, v in response.headers.fields if n.lower() != b"content-length"]
        if not head_request:
            fields.append((b"content-length", str(len(body)).encode()))
        no_body = not body or head_request
        await self.send_head(response, no_body, fields)
        if not no_body:
            await self.client.send_data(self.stream, body, True)

    async def respond_from_flow(self) -> None:
        flow = self.flow
        if self.ctx.listeners.response:
            await self.ctx.addons.trigger("response", flow)
        await self.send_response(flow.response, flow.response.raw_content or b"")
        if not self.stream.ended:  # the rest of the request body is not wanted
            self.client.reset(self.stream, h2.errors.ErrorCodes.NO_ERROR)

    async def bad_gateway(self, message: str) -> None:
        await self.error_response(502, message)

    async def error_response(self, status: int, message: str) -> None:
        """`error` fired on the flow, then a plain-text response with the reason."""
        await self.fail(message)
        body = (message + "\n").encode("utf-8", "replace")
        await self.send_response(Response(b"HTTP/2.0", status, _REASONS.get(status, b""),
                                          Headers([(b"content-type",
                                                    b"text/plain; charset=utf-8")]),
                                          body, None, time.time(), time.time()), body)

    async def fail(self, message: str) -> None:
        logger.info("%s: HTTP/2 stream %d: %s", _peer(self.ctx), self.stream.id, message)
        flow = self.flow
        if flow is not None and flow.error is None:
            flow.error = Error(message)
            if self.ctx.listeners.error:
                await self.ctx.addons.trigger("error", flow)

    def abort_upstream(self) -> None:
        """End the upstream half of a stream that failed or was reset."""
        if self.upload is not None:
            self.upload.cancel()
            self.upload = None
        if self.up_stream is not None and self.up_conn is not None:
            self.up_conn.reset(self.up_stream)
        if self.h1 is not None:
            self.h1.endpoint.close()
            self.h1 = None


def _response_too_large(message: str) -> StreamReset:
    return StreamReset(message, h2.errors.ErrorCodes.INTERNAL_ERROR)


def split_response_headers(headers: list) -> tuple[int, list]:
    """(:status, the regular fields) of a response header block."""
    status, fields = 502, []
    for name, value in headers:
        if name == b":status":
            status = int(value)
        elif not name.startswith(b":"):
            fields.append((name, value))
    return status, fields


def authority_of(host: str, port: int, scheme: str) -> bytes:
    """`host[:port]` as an :authority, the port left out when it is the scheme's."""
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(scheme)
    return (host if port == default else f"{host}:{port}").encode()


def _peer(ctx: RootContext) -> str:
    host, port = ctx.client_conn.peername[:2]
    return f"{host}:{port}"
