"""Serve a WSGI app from inside the proxy for one host and port (mitmproxy's
``addons.asgiapp.WSGIApp``): a request to that host:port is answered by the app and
never goes upstream."""

from __future__ import annotations

import asyncio
import io
import sys
from typing import Any, Callable

from fastproxy.http import Response


class WSGIApp:
    """Answer requests for `host`:`port` with the WSGI application `app`."""

    def __init__(self, app: Callable, host: str, port: int | None) -> None:
        self.app, self.host, self.port = app, host, port

    @property
    def name(self) -> str:
        return f"wsgiapp-{self.host}-{self.port}"

    def should_serve(self, flow: Any) -> bool:
        request = flow.request
        return bool(request.pretty_host == self.host
                    and (self.port is None or request.port == self.port)
                    and flow.live and flow.response is None)

    async def request(self, flow: Any) -> None:
        if self.should_serve(flow):
            loop = asyncio.get_running_loop()
            flow.response = await loop.run_in_executor(None, self.serve, flow.request)

    def serve(self, request: Any) -> Response:
        """Run the app for `request` (in a worker thread) and make its response."""
        path, _, query = request.path.partition("?")
        environ = {
            "REQUEST_METHOD": request.method, "SCRIPT_NAME": "", "PATH_INFO": path,
            "QUERY_STRING": query, "SERVER_NAME": self.host,
            "SERVER_PORT": str(request.port), "SERVER_PROTOCOL": request.http_version,
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(request.raw_content or b"")),
            "wsgi.version": (1, 0), "wsgi.url_scheme": request.scheme,
            "wsgi.input": io.BytesIO(request.content or b""), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        for name, value in request.headers.items(multi=True):
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
        started: dict = {}

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            started["status"], started["headers"] = status, headers
            return lambda data: None
        try:
            body = b"".join(self.app(environ, start_response))
        except Exception as e:
            return Response.make(500, f"WSGI app error: {e}".encode(), {"Content-Type": "text/plain"})
        code = int(started.get("status", "500").split()[0])
        return Response.make(code, body, list(started.get("headers", [])))


__all__ = ["WSGIApp"]
