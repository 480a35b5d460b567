"""A threaded TCP server on 127.0.0.1 for tests that script an origin byte by byte."""

from __future__ import annotations

import socket
import threading


class Server:
    """A threaded TCP server on 127.0.0.1; `handler(conn)` runs per connection."""

    def __init__(self, handler) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
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
        with conn:
            try:
                self.handler(conn)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
