"""HTTP/1 proxying: requests from one client connection, answered in order.

For each request head the layer picks the upstream, then either streams the body
through (when no addon needs it: the received bytes are written on as they are) or
gathers it for the addons. `HTTPFlow` objects exist only when some addon listens to an
HTTP event; the events fire in mitmproxy's order:

    requestheaders -> request -> (upstream) -> responseheaders -> response | error

Framing follows RFC 9112: bodies keep their framing when streamed and get a
Content-Length when gathered; hop-by-hop fields (RFC 9110 §7.6.1) are not forwarded.
"""

from __future__ import annotations

import time
from typing import Any, Coroutine

from fastproxy._core import (
    BODY,
    CLOSED,
    END,
    HEAD,
    NEED_DATA,
    ProtocolError,
    build_head,
)
from fastproxy.flow import Error
from fastproxy.http import Headers, HTTPFlow, Request, Response
from fastproxy.io import capture
from fastproxy.io._handover import Capture
from fastproxy.io.bodies import BodyTee
from fastproxy.log import logger
from fastproxy.proxy.context import Layer, RootContext
from fastproxy.proxy.layers.http.connect import handle_connect, relay_upgraded
from fastproxy.proxy.layers.http.http1_heads import (
    CLOSE_FIELD,
    KEEP_ALIVE_FIELD,
    InvalidFlowHeaders,
    check_flow_request,
    checked_response_line,
    error_response,
    reframed_drop,
    status_line_of,
    with_hop_by_hop,
    with_host,
    without_host,
)
from fastproxy.proxy.layers.http.routing import Route, route_request
from fastproxy.proxy.layers.http.semantics import (
    HOP_BY_HOP,
    HOP_BY_HOP_REFRAMED,
)
from fastproxy.proxy.layers.websocket import handshake as websocket_handshake
from fastproxy.proxy.layers.websocket import mark_upgraded, wants_handshake_flow
from fastproxy.proxy.streams import (
    BodyErrorBeforeHead,
    ConnectionGone,
    EarlyResponse,
    ResponseTimedOut,
)
from fastproxy.proxy.upstream import Upstream, UpstreamError

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BodyTooLarge(Exception):
    """A body to gather exceeds `body_size_limit`."""


class BadUpstream(Exception):
    """The upstream sent no valid response head (closed, or not HTTP/1): a 502."""


class StaleUpstream(BadUpstream):
    """A reused keep-alive connection closed before any byte of the response: the origin
    timed it out as the request went out. An idempotent request without a body is then
    sent again on a fresh connection (RFC 9112 §9.3.1, RFC 9110 §9.2.2)."""


IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))


class HttpLayer(Layer):
    """Serves HTTP/1 requests on the client connection until it closes.

    `tunnel` is the CONNECT target when this layer runs inside a tunnel (the requests
    are then in origin-form and go to that host).
    """

    def __init__(self, ctx: RootContext, tunnel: tuple[str, int] | None = None,
                 scheme: str = "http") -> None:
        super().__init__(ctx)
        self.tunnel = tunnel
        self.scheme = scheme
        """The tunnel's scheme: "https" when the TLS layer decrypted it."""

    async def run(self) -> None:
        client = self.ctx.client
        reader = client.reader
        while True:
            try:
                event = reader.next_event()
                while event == NEED_DATA:
                    await client.wait_data()
                    event = reader.next_event()
            except ProtocolError as e:
                self.refuse(400, f"Bad request: {e}")
                return
            except ConnectionGone:
                return
            if event == CLOSED:
                return
            if not reader.has_body:
                reader.next_event()  # its END: the next event is the next request's head
            if not await self.exchange(reader.head):
                return

    def refuse(self, status: int, message: str) -> None:
        """Answer a request that cannot be served, and close the client connection."""
        logger.info("%s: %d %s", _peer(self.ctx), status, message)
        client = self.ctx.client
        if not client.closed:
            client.write(error_response(status, message))
            client.transport.close()

    async def exchange(self, head) -> bool:
        """Serve one request; True when the client connection stays open for the next."""
        if head.method == b"CONNECT":
            return await self.connect(head)
        try:
            route = route_request(self.ctx, head, self.tunnel, self.scheme)
        except ProtocolError as e:
            self.refuse(400, str(e))
            return False
        exchange = self.exchange_class(self.ctx, head, route)
        try:
            return await exchange.run()
        except (BadUpstream, BodyErrorBeforeHead, InvalidFlowHeaders) as e:
            message = f"bad response from upstream: {e}" \
                if isinstance(e, BodyErrorBeforeHead) else str(e)
            await exchange.fail(message)
            self.refuse(502, message)
            return False
        except ResponseTimedOut as e:
            await exchange.fail(str(e))
            self.refuse(504, str(e))
            return False
        except ConnectionGone as e:
            await exchange.fail(f"connection closed: {e}")
            return False
        except BodyTooLarge as e:
            await exchange.fail(str(e))
            self.refuse(502 if exchange.response_started else 413, str(e))
            return False
        except ProtocolError as e:
            if exchange.response_started:  # the response head went out: close instead
                await exchange.fail(f"bad response from upstream: {e}")
                self.ctx.client.transport.close()
            else:
                await exchange.fail(f"bad request: {e}")
                self.refuse(400, f"Bad request: {e}")
            return False

    async def connect(self, head) -> bool:
        await handle_connect(self, head)
        return False


class Exchange:
    """One request and its response, with or without an `HTTPFlow`."""

    __slots__ = ("ctx", "head", "route", "flow", "upstream", "response_started",
                 "client_keep_alive", "request_body_done", "rec")

    def __init__(self, ctx: RootContext, head, route: Route) -> None:
        self.ctx = ctx
        self.head = head
        self.route = route
        self.flow: HTTPFlow | None = None
        self.upstream: Upstream | None = None
        self.response_started = False
        self.client_keep_alive = head.keep_alive
        self.request_body_done = not ctx.client.reader.has_body
        self.rec: Capture | None = None
        """What `capture` keeps of an exchange recorded without a flow (run_fast)."""

    def run(self) -> Coroutine[Any, Any, bool]:
        """The coroutine that serves this exchange: with a flow when an addon listens.

        A plain function returning the coroutine, so that awaiting it adds no frame
        that every wake-up of the exchange would pass through."""
        listeners = self.ctx.listeners
        if listeners.http_flows or (self.head.upgrade and wants_handshake_flow(listeners)):
            return self.run_with_flow()
        return self.run_fast()

    # -- no addon listens: bytes straight through -------------------------------------

    async def run_fast(self) -> bool:
        """The hot path; calls that usually need not wait are made without a coroutine."""
        head, route, ctx = self.head, self.route, self.ctx
        rec = self.rec = Capture.start(self, capture.tee) \
            if ctx.listeners.record_exchange else None
        request_head = build_head(route.start_line, head.fields, route.drop, route.extra)
        upstream = ctx.pool.take_idle((route.scheme, route.host, route.port))
        if upstream is None:
            upstream = await self.open_upstream(route.scheme, route.host, route.port)
            if upstream is None:
                return False
        else:
            self.upstream = upstream
            ctx.server_conn = upstream.server
        had_body = not self.request_body_done
        if had_body:
            await self.stream_request_body(request_head)
        else:
            upstream.endpoint.write(request_head)
        try:
            resp = await self.read_response_head(upstream, head.method)
        except StaleUpstream:
            upstream = await self.reopen_stale(upstream, had_body)
            if upstream is None:
                return False
            upstream.endpoint.write(request_head)
            resp = await self.read_response_head(upstream, head.method)
        tee = None if rec is None else \
            rec.response_started(resp, ctx.options.save_body_limit, capture.tee)
        if resp.status_code == 101:
            if rec is not None:
                rec.record(self)
            return await self.switch_protocols(upstream, status_line_of(resp), resp.fields)
        response_head = self.response_head(status_line_of(resp), resp.fields,
                                           self.response_drop(resp), None)
        source, client = upstream.endpoint, ctx.client
        if not source.relay_now(client, response_head, tee):
            await source.relay_rest(client, tee)
        elif client._write_paused:
            await client.drain()
        if rec is not None:
            rec.record(self)
        return self.finish(upstream, resp)

    # -- with a flow: events for the addons -------------------------------------------

    def gathers_bodies(self) -> bool:
        """Whether some addon needs whole bodies (in `request` or `response`)."""
        body_listeners = self.ctx.addons.body_listeners
        return bool(body_listeners["request"] or body_listeners["response"])

    async def request_events(self) -> bool | None:
        """Make the flow and fire `requestheaders` and `request` (the body gathered
        between them when an addon needs it).

        Returns None when the request is to go upstream; otherwise the exchange is
        over (an addon killed the flow or answered it) and the result says whether the
        client connection stays open.
        """
        ctx = self.ctx
        addons, listeners = ctx.addons, ctx.listeners
        flow = self.flow = self.make_flow()
        request = flow.request
        if listeners.requestheaders:
            pending = addons.fire("requestheaders", flow)
            if pending is not None:
                await pending
        if self.gathers_bodies() and not request.stream and not self.request_body_done:
            request.raw_content = await self.gather_body(ctx.client, True)
            request.timestamp_end = time.time()
        if listeners.request:
            pending = addons.fire("request", flow)
            if pending is not None:
                await pending
        if flow.error is not None:  # killed by an addon
            ctx.client.transport.close()
            return False
        if flow.response is not None:
            return await self.answer_from_flow(flow)
        return None

    async def run_with_flow(self) -> bool:
        finished = await self.request_events()
        if finished is not None:
            return finished
        ctx, flow = self.ctx, self.flow
        addons, listeners = ctx.addons, ctx.listeners
        request = flow.request
        if self.head.upgrade:
            await websocket_handshake(ctx, flow)
        upstream = await self.open_upstream(request.scheme, request.host, request.port)
        if upstream is None:
            return False
        had_body = not self.request_body_done
        if had_body and callable(request.stream):
            return await self.stream_request_through(upstream, request)
        if had_body:
            await self.stream_request_body(self.request_bytes(request))
            request.timestamp_end = time.time()
        else:
            upstream.endpoint.write(self.request_bytes(request))
        try:
            resp_head = await self.read_response_head(upstream, self.head.method)
        except StaleUpstream:
            upstream = await self.reopen_stale(upstream, had_body)
            if upstream is None:
                return False
            upstream.endpoint.write(self.request_bytes(request))
            resp_head = await self.read_response_head(upstream, self.head.method)
        response = flow.response = Response(resp_head.version, resp_head.status_code,
                                            resp_head.reason, Headers(resp_head.fields),
                                            None, None, time.time(), None)
        if listeners.responseheaders:
            pending = addons.fire("responseheaders", flow)
            if pending is not None:
                await pending
        if resp_head.status_code == 101:
            return await self.switch_protocols(upstream, checked_response_line(response),
                                               list(response.headers.fields))
        if not upstream.endpoint.reader.has_body:
            return await self.deliver_bodyless(flow, upstream, resp_head)
        if self.gathers_bodies() and not response.stream:
            try:
                response.raw_content = await self.gather_body(upstream.endpoint, False)
            except ProtocolError as e:
                raise BodyErrorBeforeHead(str(e)) from None
            response.timestamp_end = time.time()
            return await self.deliver_gathered(flow, upstream, resp_head)
        if callable(response.stream):
            await self.stream_response_through(upstream, response, resp_head)
            return await self.response_streamed(flow, upstream, resp_head)
        response_head = self.response_head(checked_response_line(response), list(response.headers.fields),
                                           self.response_drop(resp_head), None)
        # Recording keeps the streamed body (up to its limit) for the flow file.
        tee = BodyTee(ctx.options.save_body_limit) if ctx.options.save_stream_file else None
        await upstream.endpoint.relay_body(ctx.client, response_head, tee)
        if tee is not None:
            tee.attach(flow, response)
        response.timestamp_end = time.time()
        if listeners.response:
            pending = addons.fire("response", flow)
            if pending is not None:
                await pending
        return self.finish(upstream, resp_head)

    # -- `message.stream = callable`: each body piece through the addon's function -------

    async def stream_request_through(self, upstream: Upstream, request: Request) -> bool:
        """Send the request with its body re-framed chunked, each piece through
        ``request.stream``; then go on as for any request whose body went upstream."""
        del request.headers["content-length"]
        request.headers["transfer-encoding"] = "chunked"
        upstream.endpoint.write(self.request_bytes(request))
        if self.head.expect_continue and self.head.version == b"HTTP/1.1":
            self.ctx.client.write(CONTINUE)
        await _transform_body(self.ctx.client, upstream.endpoint, request.stream, True)
        self.request_body_done = True
        request.timestamp_end = time.time()
        self.upstream = upstream
        return await self.continue_after_request(upstream)

    async def continue_after_request(self, upstream: Upstream) -> bool:
        """The rest of `run_with_flow` once the request went out (no stale retry: the
        request body was consumed)."""
        flow, ctx = self.flow, self.ctx
        resp_head = await self.read_response_head(upstream, self.head.method)
        response = flow.response = Response(resp_head.version, resp_head.status_code,
                                            resp_head.reason, Headers(resp_head.fields),
                                            None, None, time.time(), None)
        if ctx.listeners.responseheaders:
            pending = ctx.addons.fire("responseheaders", flow)
            if pending is not None:
                await pending
        if not upstream.endpoint.reader.has_body:
            return await self.deliver_bodyless(flow, upstream, resp_head)
        if callable(response.stream):
            await self.stream_response_through(upstream, response, resp_head)
        else:
            head = self.response_head(checked_response_line(response), list(response.headers.fields),
                                      self.response_drop(resp_head), None)
            await upstream.endpoint.relay_body(ctx.client, head, None)
        return await self.response_streamed(flow, upstream, resp_head)

    async def stream_response_through(self, upstream: Upstream, response: Response,
                                      resp_head) -> None:
        """Send the response body re-framed (chunked to an HTTP/1.1 client, else until
        close), each piece through ``response.stream`` (mitmproxy's stream function)."""
        chunked = self.head.version == b"HTTP/1.1"
        fields = [(k, v) for k, v in response.headers.fields
                  if k.lower() not in (b"content-length", b"transfer-encoding")]
        if not chunked:
            self.client_keep_alive = False
        extra = [(b"Transfer-Encoding", b"chunked")] if chunked else None
        self.ctx.client.write(self.response_head(checked_response_line(response), fields,
                                                 self.response_drop(resp_head), extra))
        await _transform_body(upstream.endpoint, self.ctx.client, response.stream, chunked)

    async def response_streamed(self, flow: HTTPFlow, upstream: Upstream, resp_head) -> bool:
        flow.response.timestamp_end = time.time()
        if self.ctx.listeners.response:
            pending = self.ctx.addons.fire("response", flow)
            if pending is not None:
                await pending
        return self.finish(upstream, resp_head)

    def make_flow(self) -> HTTPFlow:
        head, route, ctx = self.head, self.route, self.ctx
        flow = HTTPFlow(ctx.client_conn, ctx.server_conn, live=True)
        now, bodyless = time.time(), not ctx.client.reader.has_body
        request = Request(route.host, route.port, head.method, route.scheme.encode(),
                          route.authority, route.path, head.version, Headers(head.fields),
                          b"" if bodyless else None, None, now, now if bodyless else None)
        flow.request = request
        if route.host_header is not None:
            request.headers.fields = with_host(head.fields, route.host_header.encode())
        return flow

    def request_bytes(self, request: Request) -> bytes:
        """The flow's request head for the upstream, with its body when it was gathered."""
        check_flow_request(request)
        start = request.start_line(self.head.version)
        route_drop = without_host(self.route.drop)  # the flow's Host (make_flow, addons) is sent
        if request.raw_content is not None and self.request_body_done:
            body = request.raw_content
            extra = [(b"Content-Length", str(len(body)).encode())] if body or \
                self.head.content_length >= 0 or self.head.chunked else None
            drop = route_drop | HOP_BY_HOP_REFRAMED
            if self.head.upgrade:  # Upgrade and Connection go end to end (routing._drop_set)
                drop = drop - {b"upgrade", b"connection"}
            return build_head(start, list(request.headers.fields), drop, extra) + body
        return build_head(start, list(request.headers.fields), route_drop, None)

    async def answer_from_flow(self, flow: HTTPFlow) -> bool:
        """An addon set `flow.response` in `request`: answer without the upstream."""
        if not self.request_body_done:
            self.client_keep_alive = False  # the unread request body would be taken as a request
        response = flow.response
        if self.ctx.listeners.response:
            pending = self.ctx.addons.fire("response", flow)
            if pending is not None:
                await pending
        self.write_response(response)
        return self.client_keep_alive

    async def response_event(self, flow: HTTPFlow, upstream: Upstream) -> bool:
        """Fire `response` before the response goes out; False when an addon killed the
        flow (the upstream connection is then closed and nothing is sent)."""
        pending = self.ctx.addons.fire("response", flow)
        if pending is not None:
            await pending
        if flow.error is not None:
            upstream.endpoint.close()
            return False
        return True

    async def deliver_gathered(self, flow: HTTPFlow, upstream: Upstream, resp_head) -> bool:
        if not await self.response_event(flow, upstream):
            return False
        self.write_response(flow.response)
        return self.finish(upstream, resp_head)

    async def deliver_bodyless(self, flow: HTTPFlow, upstream: Upstream, resp_head) -> bool:
        """A response without a body (HEAD, 204, 304, Content-Length: 0): its head goes
        out after `response`, so that what the addons change reaches the client."""
        upstream.endpoint.reader.next_event()  # END
        response = flow.response
        response.raw_content = b""
        response.timestamp_end = time.time()
        if not await self.response_event(flow, upstream):
            return False
        if response.raw_content:  # an addon gave it a body: frame it anew
            self.write_response(response)
        else:  # keep the framing fields: a HEAD response's Content-Length is the GET's
            self.ctx.client.write(self.response_head(
                checked_response_line(response), list(response.headers.fields),
                self.response_drop(resp_head), None))
        return self.finish(upstream, resp_head)

    def write_response(self, response: Response) -> None:
        body = response.raw_content or b""
        extra = [(b"Content-Length", str(len(body)).encode())]
        fields = list(response.headers.fields)
        head = self.response_head(checked_response_line(response), fields, reframed_drop(fields), extra)
        if body and self.head.method != b"HEAD":
            self.ctx.client.write_both(head, body)
        else:
            self.ctx.client.write(head)

    # -- pieces -----------------------------------------------------------------------

    async def reopen_stale(self, stale: Upstream, had_body: bool) -> Upstream | None:
        """A fresh connection to send the request again on, when that is safe; else the
        StaleUpstream goes on (a 502)."""
        if had_body or self.head.method not in IDEMPOTENT:
            raise StaleUpstream("upstream closed the connection before responding")
        logger.debug("%s: pooled connection to %s:%d was closed; retrying on a new one",
                     _peer(self.ctx), *stale.key[1:])
        stale.endpoint.close()
        return await self.open_upstream(*stale.key, fresh=True)

    async def open_upstream(self, scheme: str, host: str, port: int,
                            fresh: bool = False) -> Upstream | None:
        pool = self.ctx.pool
        try:
            upstream = self.upstream = await (pool.open((scheme, host, port)) if fresh
                                              else pool.acquire(scheme, host, port))
        except UpstreamError as e:
            await self.fail(str(e))
            self.ctx.client.write(error_response(502, str(e), close=True))
            self.ctx.client.transport.close()
            return None
        self.ctx.server_conn = upstream.server
        if self.flow is not None:
            self.flow.server_conn = upstream.server
        return upstream

    async def stream_request_body(self, head: bytes | None = None) -> None:
        """Relay the request body upstream as it comes, after `head` when given: the
        head goes out with the first body bytes, and not at all when they break the
        framing, so that a refused request leaves nothing at the origin."""
        if self.request_body_done:
            return
        if self.head.expect_continue and self.head.version == b"HTTP/1.1":
            self.ctx.client.write(CONTINUE)
        rec = self.rec
        tee = None if rec is None else rec.request_tee
        try:
            await self.ctx.client.relay_body(self.upstream.endpoint, head, tee, until_reply=True)
        except BodyErrorBeforeHead as e:
            raise ProtocolError(str(e)) from None  # the client's fault: a 400
        except EarlyResponse:
            # The origin answers before it read the whole body (a 413, a 405): pass that
            # on. The rest of the body would be read as a request: the client connection
            # closes after this response, and so does the upstream one (`finish`).
            self.client_keep_alive = False
            return
        if rec is not None:
            rec.request_ended()
        self.request_body_done = True

    async def gather_body(self, source, is_request: bool) -> bytes:
        """Read one whole message body, without transfer coding, up to the size limit."""
        if is_request and self.head.expect_continue and self.head.version == b"HTTP/1.1":
            self.ctx.client.write(CONTINUE)
        body = await source.gather_body(self.ctx.options.body_size_limit, BodyTooLarge)
        if is_request:
            self.request_body_done = True
        return body

    async def read_response_head(self, upstream: Upstream, method: bytes):
        """The final response head; 1xx interim responses are passed to the client.

        The driver aborts the wait after `read_timeout` (`ctx.awaiting_response`)."""
        endpoint = upstream.endpoint
        reader = endpoint.reader
        ctx = self.ctx
        while True:
            reader.expect_response_to(method)
            try:
                event = reader.next_event()
                if event == NEED_DATA:
                    ctx.awaiting_response = (endpoint, endpoint.loop.time())
                    while event == NEED_DATA:
                        await endpoint.wait_data()
                        event = reader.next_event()
            except ProtocolError as e:
                raise BadUpstream(f"bad response from upstream: {e}") from None
            finally:
                ctx.awaiting_response = None
            if event != HEAD:
                stale = upstream.reused and not self.response_started
                raise (StaleUpstream if stale else BadUpstream)(
                    "upstream closed the connection before responding")
            self.response_started = True
            head = endpoint.reader.head
            if head.status_code == 101 and not self.head.upgrade:
                # Switching to a protocol nobody asked for would make the client
                # connection a raw tunnel to the origin (RFC 9110 §15.2.2).
                raise BadUpstream("bad response from upstream: 101 Switching Protocols "
                                  "to a request that asked for no upgrade")
            if head.status_code >= 200 or head.status_code == 101:
                return head
            if head.status_code != 100:  # our own 100 Continue already went out
                self.ctx.client.write(build_head(status_line_of(head), head.fields, HOP_BY_HOP, None))
            endpoint.reader.next_event()  # END of the interim response
            if not self.request_body_done:  # it came while the body was going up
                await self.stream_request_body()

    def response_drop(self, resp) -> frozenset:
        return HOP_BY_HOP if not resp.has_hop_headers else with_hop_by_hop(resp.connection_tokens)

    def response_head(self, status_line: bytes, fields: list, drop: frozenset,
                      extra: list | None) -> bytes:
        """The response head for the client, saying whether the connection stays.

        `extra` is given when the body is re-framed with a Content-Length; otherwise a
        close-delimited upstream body means the client connection must close too.
        """
        close_delimited = extra is None and self.upstream is not None and \
            self.upstream.endpoint.reader.body_is_close_delimited
        if close_delimited or not self.client_keep_alive:
            self.client_keep_alive = False
            extra = (extra or []) + CLOSE_FIELD
        elif self.head.version == b"HTTP/1.0":
            extra = (extra or []) + KEEP_ALIVE_FIELD
        return build_head(status_line, fields, drop, extra)

    async def switch_protocols(self, upstream: Upstream, status_line: bytes, fields: list) -> bool:
        """After 101 Switching Protocols both sides speak the new protocol: relay it."""
        if self.flow is not None:
            await mark_upgraded(self.ctx, self.flow)  # flow.websocket, then `response`
        self.ctx.client.write(build_head(status_line, fields, None, None))
        await relay_upgraded(self.ctx, upstream, self.flow)
        return False

    def finish(self, upstream: Upstream, resp_head) -> bool:
        """Return the upstream connection to the pool if it can be reused."""
        reader = upstream.endpoint.reader
        # Reusable only if both sides meant to persist (an HTTP/1.0 request went out as
        # 1.0, without our Connection field) and the upstream has not closed its side.
        if resp_head.keep_alive and self.head.version == b"HTTP/1.1" and \
                self.request_body_done and not reader.body_is_close_delimited and \
                not reader.at_eof:
            self.ctx.pool.release(upstream)
        else:
            upstream.endpoint.close()
        if not self.client_keep_alive:
            self.ctx.client.transport.close()
        return self.client_keep_alive

    async def fail(self, message: str) -> None:
        """Record an error on the flow (firing `error`) and log it."""
        logger.info("%s: %s", _peer(self.ctx), message)
        if self.upstream is not None:
            self.upstream.endpoint.close()
        flow = self.flow
        if flow is not None and flow.error is None:
            flow.error = Error(message)
            if self.ctx.listeners.error:
                await self.ctx.addons.trigger("error", flow)
        elif self.rec is not None:
            self.rec.record(self, message)


HttpLayer.exchange_class = Exchange  # upstream mode's layer has its own (upstream_mode.py)


async def _transform_body(source: Any, sink: Any, function: Any, chunked: bool) -> None:
    """Each piece of `source`'s message body, transfer coding removed, through
    `function` (bytes -> bytes or iterable of bytes; called with b"" at the end, as
    mitmproxy does), written to `sink` chunked or as is."""
    reader = source.reader
    reader.decode = True
    while True:
        event = reader.next_event()
        if event == BODY:
            _write_pieces(sink, function(reader.chunk), chunked)
            if sink._write_paused:
                await sink.drain()
        elif event == END:
            break
        else:
            await source.wait_data()
    _write_pieces(sink, function(b""), chunked)
    if chunked:
        sink.write(b"0\r\n\r\n")
    await sink.drain()


def _write_pieces(sink: Any, result: Any, chunked: bool) -> None:
    for piece in ((result,) if isinstance(result, (bytes, bytearray)) else result or ()):
        if piece:
            sink.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else bytes(piece))


def _peer(ctx: RootContext) -> str:
    host, port = ctx.client_conn.peername[:2]
    return f"{host}:{port}"
