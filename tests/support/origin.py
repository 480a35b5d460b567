"""A real HTTP/1.1 origin server for the tests, on 127.0.0.1 in a background thread.

Routes:
  /bytes/N          N deterministic bytes (Content-Length)
  /chunked/N        N deterministic bytes, chunked, in pieces of 1000
  /close/N          N bytes, delimited by closing the connection (HTTP/1.0 style)
  /echo             the request body back; request headers as JSON in X-Echo-Headers
  /status/N         an empty response with status N
  /gzip             a gzip-encoded text body
anything else       200 "hello" with the path in X-Path
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def payload(n: int) -> bytes:
    """n bytes that differ from position to position, so reordering would show."""
    block = bytes(range(256)) * 4
    return (block * (n // len(block) + 1))[:n]


class OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            pieces = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(pieces)
                pieces.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        body = self._read_body()
        parts = self.path.split("?")[0].strip("/").split("/")
        route, arg = parts[0], parts[1] if len(parts) > 1 else "0"
        if route == "bytes":
            self._send(200, payload(int(arg)), {"Content-Type": "application/octet-stream"})
        elif route == "chunked":
            self._chunked(payload(int(arg)))
        elif route == "close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload(int(arg)))
            self.close_connection = True
        elif route == "echo":
            self._send(200, body, {"X-Echo-Headers": json.dumps(dict(self.headers)),
                                   "X-Method": self.command})
        elif route == "status":
            self._send(int(arg), b"")
        elif route == "gzip":
            self._send(200, gzip.compress(b"hello gzip " * 10),
                       {"Content-Encoding": "gzip", "Content-Type": "text/plain"})
        else:
            self._send(200, b"hello", {"X-Path": self.path, "Content-Type": "text/plain"})

    def _chunked(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 1000):
            piece = body[i:i + 1000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of upstream connections (an
    # HTTP/2 client's streams fanned out to HTTP/1) overflowed it, and a dropped SYN is
    # retried after 1, 3, 7 s... up to the proxy's connect timeout, a 502.
    request_queue_size = 1024


class Origin:
    """The running origin: `.port`, `.url(path)`, `.requests` seen, `.stop()`."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), OriginHandler)
        self.server.daemon_threads = True
        self.server.requests = []
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list:
        return self.server.requests

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
