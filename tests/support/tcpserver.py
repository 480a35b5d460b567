"""A threaded TCP (or TLS) server on 127.0.0.1 for tests that script an origin byte by
byte."""

from __future__ import annotations

import socket
import ssl
import threading


class Server:
    """A threaded server on 127.0.0.1; `handler(conn)` runs per connection, on the TLS
    socket when `context` is given (a handshake that fails is dropped)."""

    def __init__(self, handler, context: ssl.SSLContext | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.context = context
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            self.conns.append(conn)
            with conn:
                self.handler(conn)
        except OSError:  # ssl.SSLError included
            conn.close()

    def close(self) -> None:
        """Stop accepting and close the connections still open."""
        self.sock.close()
        for conn in self.conns:
            try:
                conn.close()
            except OSError:
                pass

    stop = close
