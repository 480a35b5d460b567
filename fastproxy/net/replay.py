"""Sending a recorded request again over HTTP/1.1, for `fastproxy replay` and the
`replay.client` command: blocking (http.client), so callers run it off the loop."""

from __future__ import annotations

import http.client
import ssl
from typing import Any

NOT_REPLAYED = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                          "te", "trailer", "transfer-encoding", "upgrade", "content-length"})
"""Fields that described the recorded connection (RFC 9110 §7.6.1) or its framing: the
new request gets its own."""


def send_request(request: Any, context: ssl.SSLContext, timeout: float,
                 target: tuple[str, str, int] | None = None
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """(status, reason, header fields, body) of `request` sent to the server it went to,
    or to `target` (scheme, host, port) with the Host set for it, as a reverse proxy
    does."""
    scheme, host, port = target or (request.scheme, request.host, request.port)
    if scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(request.method, request.path or "/", skip_host=True,
                        skip_accept_encoding=True)
        headers = [(k, v) for k, v in request.headers.items(multi=True)
                   if k.lower() not in NOT_REPLAYED]
        if target is not None:
            headers = [(k, v) for k, v in headers if k.lower() != "host"]
            default = 443 if scheme == "https" else 80
            headers.insert(0, ("Host", host if port == default else f"{host}:{port}"))
        if not any(k.lower() == "host" for k, _ in headers):
            headers.insert(0, ("Host", request.pretty_host))
        body = request.raw_content or b""
        for name, value in headers:
            conn.putheader(name, value)
        if body or request.method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        content = response.read()
        return response.status, response.reason, response.getheaders(), content
    finally:
        conn.close()
