"""Raw-socket helpers for proxy tests: send bytes, read responses, a scripted origin,
and an addon script that records every event it sees to a JSON-lines file."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path
from typing import Callable

TIMEOUT = 10.0


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


class _FileSock:
    """Lets several http.client.HTTPResponse objects read one buffered stream in turn."""

    def __init__(self, file) -> None:
        self.file = file

    def makefile(self, mode: str):
        return _Unclosable(self.file)


class _Unclosable:
    """The shared socket file, which one response closing must not close."""

    def __init__(self, file) -> None:
        self._file = file

    def __getattr__(self, name: str):
        return getattr(self._file, name)

    def close(self) -> None:
        pass


class Conn:
    """A raw client connection to the proxy; responses parsed by http.client."""

    def __init__(self, port: int) -> None:
        self.sock = connect(port)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, method: str = "GET") -> http.client.HTTPResponse:
        """The next whole response (1xx interim responses skipped), body read."""
        # http.client knows no bodyless 2xx to CONNECT: HEAD has the same framing rule.
        response = http.client.HTTPResponse(
            _FileSock(self.file), method="HEAD" if method == "CONNECT" else method)
        response.begin()
        response.body = response.read()
        return response

    def read_until_closed(self) -> bytes:
        """Everything up to EOF (bounded by the socket timeout)."""
        chunks = []
        while True:
            data = self.file.read1(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    def is_closed(self) -> bool:
        """True when the proxy closed the connection (EOF, or a reset) within TIMEOUT."""
        try:
            return self.file.read1(65536) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_head(sock_file) -> tuple[bytes, dict]:
    """(request head bytes, lowercased headers) of one request from a socket file."""
    lines = []
    while True:
        line = sock_file.readline()
        if not line:
            raise EOFError
        if line in (b"\r\n", b"\n"):
            break
        lines.append(line)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return b"".join(lines), headers


class ScriptedOrigin:
    """A raw origin: `answer(request_line, headers, body) -> (bytes, close)` per request."""

    def __init__(self, answer: Callable[[bytes, dict, bytes], tuple[bytes, bool]]) -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[tuple[bytes, dict, bytes]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        file = conn.makefile("rb")
        try:
            while True:
                head, headers = read_head(file)
                length = int(headers.get("content-length", "0"))
                body = file.read(length) if length else b""
                self.requests.append((head.split(b"\r\n")[0], headers, body))
                data, close = self.answer(head.split(b"\r\n")[0], headers, body)
                conn.sendall(data)
                if close:
                    break
        except (EOFError, OSError):
            pass
        finally:
            file.close()
            conn.close()

    def stop(self) -> None:
        self._stop = True
        self.sock.close()


RECORDER = r'''
import asyncio, json, time
PATH = {path!r}

def w(*record):
    with open(PATH, "a") as f:
        f.write(json.dumps(record, default=repr) + "\n")

class Recorder:
    def __init__(self):
        self.ticks = 0
    def configure(self, options, updated):
        w("configure", sorted(updated), options.listen_host)
    def tick(self):
        self.ticks += 1
        if self.ticks <= 3:
            w("tick", time.monotonic())
    def log(self, entry):
        w("log", entry.msg[:300], entry.level)
    def done(self):
        w("done")
    def clientconnect(self, root_layer):
        c = root_layer.client_conn
        w("clientconnect", type(c).__name__, c.peername, c.sockname, c.connected,
          c.timestamp_start)
    def clientdisconnect(self, root_layer):
        c = root_layer.client_conn
        w("clientdisconnect", c.peername, c.connected, c.timestamp_end)
    def next_layer(self, layer):
        w("next_layer", type(layer).__name__)
    def serverconnect(self, server_conn):
        w("serverconnect", server_conn.address)
    def serverdisconnect(self, server_conn):
        w("serverdisconnect", server_conn.address)
    def http_connect(self, flow):
        w("http_connect", flow.request.method, flow.request.host, flow.request.port)
    def requestheaders(self, flow):
        w("requestheaders", flow.request.method, flow.request.path)
    async def request(self, flow):
        await asyncio.sleep(0)
        w("request", flow.request.method, flow.request.path, len(flow.request.content or b""))
    def responseheaders(self, flow):
        w("responseheaders", flow.response.status_code)
    def response(self, flow):
        w("response", flow.response.status_code, len(flow.response.content or b""))
    def error(self, flow):
        w("error", flow.error.msg)

def start():
    w("start")
    return Recorder()
'''


def recorder_script(tmp_path: Path) -> tuple[Path, Path]:
    """(script path, events file) for the recording addon."""
    events = tmp_path / "events.jsonl"
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER.format(path=str(events)))
    return script, events


def read_events(path: Path) -> list[list]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll `predicate` until it holds (bounded); returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
