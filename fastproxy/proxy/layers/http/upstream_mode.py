"""upstream:URL mode: an HTTP(S) proxy that chains every request to another proxy.

- Plain requests go to the upstream proxy in absolute-form (RFC 9112 §3.2.2), on
  keep-alive connections of this listener's pool keyed by the upstream proxy's address
  (`routing.route_request` gives their route, `UpstreamExchange` their flows).
- CONNECT is answered here; what the tunnel carries is chosen as in regular mode (TLS
  interception, HTTP, WebSocket, TCP), and every connection those layers open is a
  CONNECT tunnel through the upstream proxy (`UpstreamPool` with `via`).
- `upstream_auth=user:pass` adds `Proxy-Authorization: Basic ...` to both.

`auth_layer` puts `--proxyauth` in front of an HTTP layer of regular or upstream mode.
"""

from __future__ import annotations

from fastproxy.http import HTTPFlow
from fastproxy.proxy.layers.http.http1 import Exchange, HttpLayer
from fastproxy.proxy.layers.http.routing import parse_absolute_form
from fastproxy.proxy.proxyauth import AuthMixin
from fastproxy.proxy.upstream import Upstream


class UpstreamExchange(Exchange):
    """An exchange whose route is the upstream proxy: its flow names the origin."""

    __slots__ = ()

    def make_flow(self) -> HTTPFlow:
        flow = super().make_flow()
        scheme, host, port, _, _ = parse_absolute_form(self.head.target)
        request = flow.request
        request.scheme, request.host, request.port = scheme, host, port
        return flow

    async def open_upstream(self, scheme: str, host: str, port: int,
                            fresh: bool = False) -> Upstream | None:
        route = self.route  # the upstream proxy, whatever the request names
        return await super().open_upstream(route.scheme, route.host, route.port, fresh)

    def request_bytes(self, request) -> bytes:
        """The flow's request as HTTP/1 sends it, with the request line in absolute-form
        (as the flow has it now) and the upstream_auth credential."""
        data = super().request_bytes(request)
        url = request.url
        target = url.encode() if url.isascii() else url.encode("idna")
        start = b" ".join((request.method.encode(), target, self.head.version))
        auth = self.ctx.pool.proxy_authorization
        if auth is not None:  # the client's own is in the route's drop set
            start += b"\r\nProxy-Authorization: " + auth
        return start + data[data.index(b"\r\n"):]


class UpstreamHttpLayer(HttpLayer):
    """HTTP/1 requests of an upstream-mode client (outside CONNECT tunnels)."""

    exchange_class = UpstreamExchange


_AUTH_CLASSES: dict[type, type] = {}


def auth_layer(cls: type[HttpLayer], ctx, validator) -> HttpLayer:
    """An instance of `cls` that requires proxy authentication when `validator` is set."""
    if validator is None:
        return cls(ctx)
    auth_cls = _AUTH_CLASSES.get(cls)
    if auth_cls is None:
        auth_cls = _AUTH_CLASSES[cls] = type("Auth" + cls.__name__, (AuthMixin, cls), {})
    layer = auth_cls(ctx)
    layer.validator = validator
    return layer
