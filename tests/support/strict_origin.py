"""A strict HTTP/1.1 origin for smuggling probes, and a strict raw client.

`StrictOrigin` is a threaded raw-socket server on 127.0.0.1. It records the exact bytes
each connection received (an event log, so a test can look at "everything since a mark"),
parses requests with h11 (which refuses what a strict server refuses: conflicting
framing, bad chunk sizes, bad request lines, a missing Host in HTTP/1.1 ...), and answers
by a script:

  target containing /raw/KEY   the raw bytes registered with `origin.raw[KEY]`, then the
                               connection is closed (response-side probes); registered
                               as `(bytes, "keep-open")` the connection serves on
  target containing "slow"     the default answer, 0.3 s late
  anything else                200, body ``b"ok:" + target`` with a Content-Length

so a client can always tell which request a response belongs to.

`StrictClient` is a raw client socket whose responses are parsed with h11 (strict) while
every received byte is kept.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Self

import h11

BAD_HEAD_BYTES = re.compile(rb"(?<!\r)\n|\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""A bare LF, a bare CR, NUL or another control character (HTAB allowed)."""

PRINTABLE = re.compile(rb"[\x20-\x7e\r\n\t]*")


@dataclass
class OriginRequest:
    conn_id: int
    method: bytes
    target: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False

    def header_values(self, name: bytes) -> list[bytes]:
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]


@dataclass
class OriginView:
    """What the origin received between two marks."""
    data: dict[int, bytes]        # conn id -> bytes received
    requests: list[OriginRequest]
    errors: list[str]
    context: dict[int, bytes] = field(default_factory=dict)   # the two bytes before each

    @property
    def all_bytes(self) -> bytes:
        return b"".join(self.data.values())

    def bad_head_bytes(self) -> list[bytes]:
        """Bare CR/LF, NUL or control bytes anywhere in what was received (probe bodies
        are written without any)."""
        found = []
        for cid, data in self.data.items():
            ctx = self.context.get(cid, b"")
            data = ctx + data
            for m in BAD_HEAD_BYTES.finditer(data):
                if m.end() <= len(ctx):
                    continue
                found.append(data[max(0, m.start() - 20):m.end() + 20])
        return found


class StrictOrigin:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.authority = f"127.0.0.1:{self.port}"
        self.raw: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.log: list[tuple] = []   # ("bytes", cid, offset, data) | ("req", cid, r) | ("err", cid, msg)
        self.received: dict[int, bytearray] = {}
        self.open: dict[int, socket.socket] = {}
        self.closed: set[int] = set()
        self._next_id = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    # -- the test's side ----------------------------------------------------------------

    def mark(self) -> int:
        with self.lock:
            return len(self.log)

    def since(self, mark: int, until: int | None = None) -> OriginView:
        with self.lock:
            events = self.log[mark:until]
            data: dict[int, bytes] = {}
            first: dict[int, int] = {}
            last: dict[int, int] = {}
            for ev in events:
                if ev[0] == "bytes":
                    cid, offset, chunk = ev[1], ev[2], ev[3]
                    first.setdefault(cid, offset)
                    last[cid] = offset + len(chunk)
            context: dict[int, bytes] = {}
            for cid, start in first.items():
                raw = self.received[cid]
                data[cid] = bytes(raw[start:last[cid]])
                context[cid] = bytes(raw[max(0, start - 2):start])
            requests = [ev[2] for ev in events if ev[0] == "req"]
            errors = [f"conn {ev[1]}: {ev[2]}" for ev in events if ev[0] == "err"]
        return OriginView(data, requests, errors, context)

    def wait_closed(self, cids, timeout: float = 1.5) -> list[int]:
        """Wait until the origin saw these connections end; the ones still open."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                still = [cid for cid in cids if cid not in self.closed]
            if not still or time.monotonic() > deadline:
                return still
            time.sleep(0.01)

    def close_connections(self) -> None:
        """Close every open connection (so the proxy's pooled ones go stale)."""
        with self.lock:
            conns = list(self.open.values())
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop = True
        self.sock.close()
        self.close_connections()

    # -- the server ---------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                cid = self._next_id
                self._next_id += 1
                self.received[cid] = bytearray()
                self.open[cid] = conn
            threading.Thread(target=self._serve, args=(conn, cid), daemon=True).start()

    def _event(self, *event) -> None:
        with self.lock:
            self.log.append(event)

    def _recv(self, conn: socket.socket, cid: int) -> bytes:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if data:
            with self.lock:
                buf = self.received[cid]
                self.log.append(("bytes", cid, len(buf), data))
                buf += data
        return data

    def _serve(self, conn: socket.socket, cid: int) -> None:
        conn.settimeout(30)
        h = h11.Connection(h11.SERVER)
        current: OriginRequest | None = None
        try:
            while True:
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError as e:
                    self._event("err", cid, f"h11: {e}")
                    return
                if event is h11.NEED_DATA:
                    if h.they_are_waiting_for_100_continue:
                        conn.sendall(h.send(h11.InformationalResponse(status_code=100,
                                                                      headers=[])))
                    data = self._recv(conn, cid)
                    h.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    current = OriginRequest(cid, event.method, event.target,
                                            event.http_version, list(event.headers))
                elif isinstance(event, h11.Data):
                    current.body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    current.trailers = list(event.headers)
                    current.complete = True
                    self._event("req", cid, current)
                    answered = self._answer(conn, h, current)
                    if answered is None:  # raw bytes sent, go on with a fresh parser
                        rest = h.trailing_data[0]
                        h = h11.Connection(h11.SERVER)
                        if rest:
                            h.receive_data(rest)
                        current = None
                        continue
                    if not answered:
                        return
                    if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                        return
                    h.start_next_cycle()
                    current = None
                elif isinstance(event, h11.ConnectionClosed):
                    return
                elif event is h11.PAUSED:
                    self._event("err", cid, f"h11 paused in {h.states}")
                    return
        except Exception as e:  # noqa: BLE001 - recorded for the test to see
            if current is not None and not current.complete:
                self._event("req", cid, current)
            if not isinstance(e, OSError):
                self._event("err", cid, f"{type(e).__name__}: {e}")
        finally:
            with self.lock:
                self.open.pop(cid, None)
                self.closed.add(cid)
            try:
                conn.close()
            except OSError:
                pass

    def _answer(self, conn: socket.socket, h: h11.Connection, req: OriginRequest) -> bool | None:
        """Send the scripted answer; False when the connection is to be closed, None when
        raw bytes were sent and the connection stays open for more requests."""
        target = req.target.decode("latin-1")
        m = re.search(r"/raw/([A-Za-z0-9_.-]+)", target)
        if m:
            raw = self.raw.get(m.group(1))
            if isinstance(raw, tuple):  # (bytes, "keep-open"): serve on afterwards
                conn.sendall(raw[0])
                return None
            if raw is not None:
                if raw:
                    conn.sendall(raw)
                time.sleep(0.05)
                try:
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                # keep reading until the proxy closes (so nothing it sends is lost)
                conn.settimeout(5)
                while self._recv(conn, req.conn_id):
                    pass
                return False
        if "slow" in target:
            time.sleep(0.3)
        body = b"ok:" + req.target
        out = h.send(h11.Response(status_code=200, headers=[
            ("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]))
        out += h.send(h11.Data(data=body)) + h.send(h11.EndOfMessage())
        conn.sendall(out)
        return True


# -- the client ---------------------------------------------------------------------------


@dataclass
class ClientResponse:
    status: int | None = None
    reason: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    interim: list[int] = field(default_factory=list)
    raw: bytes = b""
    error: str | None = None   # None: a whole response was read
    elapsed: float = 0.0

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def __repr__(self) -> str:
        return (f"<status={self.status} error={self.error!r} body={self.body[:200]!r} "
                f"raw={self.raw[:400]!r} after {self.elapsed:.2f}s>")


class StrictClient:
    """A raw client connection; each response is parsed by a fresh strict h11 client."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.pending = b""
        self.eof = False
        self.reset = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the proxy may close early; what it answered is still read

    def _recv(self, deadline: float) -> bytes | None:
        """Bytes, b"" at EOF, None on timeout."""
        if self.eof:
            return b""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
            data = b""
        if not data:
            self.eof = True
        return data

    def response(self, method: str = "GET", timeout: float | None = None) -> ClientResponse:
        start = time.monotonic()
        deadline = start + (timeout or self.timeout)
        resp = ClientResponse()
        h = h11.Connection(h11.CLIENT)
        h.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        h.send(h11.EndOfMessage())
        raw = bytearray(self.pending)
        if self.pending:
            h.receive_data(self.pending)
        self.pending = b""
        fed_eof = False
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as e:
                resp.error = f"invalid response ({e})"
                break
            if event is h11.NEED_DATA:
                if fed_eof:
                    resp.error = "closed"
                    break
                data = self._recv(deadline)
                if data is None:
                    resp.error = "timeout"
                    break
                raw += data
                h.receive_data(data)
                fed_eof = not data
            elif isinstance(event, h11.InformationalResponse):
                resp.interim.append(event.status_code)
            elif isinstance(event, h11.Response):
                resp.status, resp.reason = event.status_code, event.reason
                resp.headers = list(event.headers)
            elif isinstance(event, h11.Data):
                resp.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.pending = h.trailing_data[0]
                if self.pending:
                    del raw[len(raw) - len(self.pending):]
                break
            elif isinstance(event, h11.ConnectionClosed):
                resp.error = "closed"
                break
            else:
                resp.error = f"unexpected {event!r}"
                break
        resp.raw = bytes(raw)
        resp.elapsed = time.monotonic() - start
        return resp

    def read_raw_until_close(self, timeout: float | None = None) -> tuple[bytes, bool]:
        """(every byte until EOF, whether EOF came before the timeout)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        out = bytearray(self.pending)
        self.pending = b""
        while True:
            data = self._recv(deadline)
            if data is None:
                return bytes(out), False
            if not data:
                return bytes(out), True
            out += data

    def read_head(self, timeout: float | None = None) -> bytes | None:
        """A raw response head (for CONNECT), the rest kept as pending."""
        deadline = time.monotonic() + (timeout or self.timeout)
        buf = bytearray(self.pending)
        while b"\r\n\r\n" not in buf:
            data = self._recv(deadline)
            if not data:
                self.pending = bytes(buf)
                return None
            buf += data
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        self.pending = rest
        return head + b"\r\n\r\n"

    def closed_after(self, timeout: float = 1.0) -> tuple[bool, bytes]:
        """(whether the proxy closed the connection within timeout, any extra bytes)."""
        data, closed = self.read_raw_until_close(timeout)
        return closed, data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def printable(body: bytes) -> bool:
    """Printable text: ASCII printable and whitespace, plus (UTF-8) punctuation and symbols
    such as "§" or "—"; no control bytes, no invalid UTF-8, no non-ASCII letters (bytes
    from outside a buffer decoded as Latin-1 would show as such)."""
    if PRINTABLE.fullmatch(body) is not None:
        return True
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch in "\r\n\t" or (" " <= ch <= "~") or
               (ord(ch) > 0x7f and unicodedata.category(ch)[0] in "PS")
               for ch in text)
