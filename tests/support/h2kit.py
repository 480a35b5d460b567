"""Blocking HTTP/2 tools for the tests: a raw client that controls how bytes arrive, and
an h2 origin over TLS that records exactly what it received and can misbehave.

- `H2Client(port)`: a TLS connection offering ALPN h2 (certificate checks off: the
  proxy's minted leaf is not what is tested here). `request(...)` sends one request with
  the bytes written all at once, one write per frame, or one byte per write, respecting
  the peer's flow-control windows, and returns `Reply` (status, headers, body, trailers,
  or the reset code). `send_raw(bytes)` / `read_frames()` for hand-built frames.
- `RecordingH2Origin(ca, handler=None)`: an h2-only TLS origin in a thread; every request
  is appended to `.requests` as `Received(headers, body, trailers)`; by default the
  body is echoed back with `x-got-*` fields. `handler(conn, sock, stream_id, received)`
  replaces the answer (a misbehaving origin writes what it likes to `sock`).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hyperframe.frame


@dataclass
class Reply:
    status: int | None = None
    headers: list = field(default_factory=list)
    body: bytes = b""
    trailers: list | None = None
    reset: int | None = None
    goaway: int | None = None

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None


@dataclass
class Received:
    headers: list
    body: bytes = b""
    trailers: list | None = None


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


class H2Client:
    """One HTTP/2 connection to the proxy over TLS (see the module docstring)."""

    def __init__(self, port: int, validate: bool = True, timeout: float = 20.0,
                 settings: dict | None = None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = client_context().wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                           validate_outbound_headers=validate,
                                           normalize_outbound_headers=validate,
                                           validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.pending = self.conn.data_to_send()  # the preface goes with the first request
        self.replies: dict[int, Reply] = {}
        self.ended: set[int] = set()
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.closed = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- writing ------------------------------------------------------------------------

    def write(self, data: bytes, arrival: str) -> None:
        if not data:
            return
        if arrival == "bytes":
            for i in range(len(data)):
                self.sock.sendall(data[i:i + 1])
                if i % 64 == 63:
                    time.sleep(0.0005)
        else:
            self.sock.sendall(data)
            if arrival == "frames":
                time.sleep(0.002)  # a separate read on the proxy's side

    def emit(self, arrival: str) -> None:
        """What h2 queued: kept for one write ("one"), or written now."""
        data = self.conn.data_to_send()
        if arrival == "one":
            self.pending += data
        else:
            self.write(self.pending + data, arrival)
            self.pending = b""

    def flush(self, arrival: str = "one") -> None:
        data, self.pending = self.pending + self.conn.data_to_send(), b""
        self.write(data, "one" if arrival == "one" else arrival)

    def request(self, method: str, path: str, headers: list | None = None,
                body: bytes = b"", trailers: list | None = None, arrival: str = "one",
                authority: str = "example.test", frame_size: int = 16384,
                timeout: float = 20.0) -> Reply:
        sid = self.start(method, path, headers, body, trailers, arrival, authority,
                         frame_size)
        return self.response(sid, timeout)

    def start(self, method: str, path: str, headers: list | None = None, body: bytes = b"",
              trailers: list | None = None, arrival: str = "one",
              authority: str = "example.test", frame_size: int = 16384) -> int:
        conn = self.conn
        sid = conn.get_next_available_stream_id()
        self.replies[sid] = Reply()
        fields = [(b":method", method.encode()), (b":scheme", b"https"),
                  (b":authority", authority.encode()), (b":path", path.encode())]
        fields += [(n.encode() if isinstance(n, str) else n, v.encode() if isinstance(v, str)
                    else v) for n, v in (headers or [])]
        only_head = not body and not trailers
        conn.send_headers(sid, fields, end_stream=only_head)
        self.emit(arrival)
        view = memoryview(body)
        while view:
            window = min(conn.local_flow_control_window(sid), frame_size,
                         conn.max_outbound_frame_size)
            if window <= 0:
                self.flush(arrival)
                self.pump_until(lambda: conn.local_flow_control_window(sid) > 0
                                or self.replies[sid].reset is not None)
                if self.replies[sid].reset is not None:
                    return sid
                continue
            piece, view = view[:window], view[window:]
            conn.send_data(sid, piece.tobytes(), end_stream=not view and not trailers)
            self.emit(arrival)
        if trailers:
            conn.send_headers(sid, [(n.encode(), v.encode()) for n, v in trailers],
                              end_stream=True)
            self.emit(arrival)
        self.flush(arrival)
        return sid

    def send_raw(self, data: bytes) -> None:
        self.flush()
        self.sock.sendall(data)

    # -- reading ------------------------------------------------------------------------

    def response(self, sid: int, timeout: float = 20.0) -> Reply:
        self.pump_until(lambda: sid in self.ended or self.replies[sid].reset is not None,
                        timeout)
        return self.replies[sid]

    def pump_until(self, done, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.closed:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from the proxy")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError, OSError) as e:
                if isinstance(e, TimeoutError):
                    raise
                data = b""
            if not data:
                self.closed = True
                return
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                return
            for event in events:
                self.handle(event)
            out = self.conn.data_to_send()
            if out:
                try:
                    self.sock.sendall(out)
                except OSError:
                    self.closed = True

    def handle(self, event) -> None:
        sid = getattr(event, "stream_id", None)
        reply = self.replies.get(sid) if sid else None
        if isinstance(event, h2.events.ResponseReceived) and reply is not None:
            reply.headers = [(n, v) for n, v in event.headers if n != b":status"]
            reply.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            if reply is not None:
                reply.body += event.data
            if event.flow_controlled_length:
                try:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
                except h2.exceptions.StreamClosedError:
                    pass
        elif isinstance(event, h2.events.TrailersReceived) and reply is not None:
            reply.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self.ended.add(sid)
        elif isinstance(event, h2.events.StreamReset) and reply is not None:
            reply.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event
            for reply in self.replies.values():
                reply.goaway = event.error_code

    def wait_goaway(self, timeout: float = 10.0) -> h2.events.ConnectionTerminated | None:
        """Read until GOAWAY arrives or the connection closes."""
        try:
            self.pump_until(lambda: self.terminated is not None, timeout)
        except TimeoutError:
            pass
        return self.terminated


def read_frames(sock: ssl.SSLSocket, timeout: float = 5.0, until=None) -> list:
    """Raw frames until the connection closes, `timeout` passes quietly, a GOAWAY, or a
    frame for which `until(frame)` is true."""
    sock.settimeout(timeout)
    buf, frames = b"", []
    while True:
        try:
            data = sock.recv(65536)
        except (TimeoutError, OSError, ssl.SSLError):
            break
        if not data:
            break
        buf += data
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            frame, _ = hyperframe.frame.Frame.parse_frame_header(memoryview(buf[:9]))
            frame.parse_body(memoryview(buf[9:9 + length]))
            frames.append(frame)
            buf = buf[9 + length:]
            if isinstance(frame, hyperframe.frame.GoAwayFrame) or until and until(frame):
                return frames
    return frames


# -- the origin ---------------------------------------------------------------------------


def echo(conn: h2.connection.H2Connection, sock, stream_id: int, received: Received) -> None:
    """The default answer: the body back, what was received described in x-got-*."""
    body = received.body
    names = b",".join(n for n, _ in received.headers if not n.startswith(b":"))
    fields = [(b":status", b"200"), (b"content-length", str(len(body)).encode()),
              (b"x-got-length", str(len(body)).encode()), (b"x-got-names", names)]
    if received.trailers:
        fields.append((b"x-got-trailers", b",".join(b"%s=%s" % f for f in received.trailers)))
    conn.send_headers(stream_id, fields, end_stream=not body)
    if body:
        send_body(conn, sock, stream_id, body)


def send_body(conn, sock, stream_id: int, body: bytes, end: bool = True) -> None:
    """DATA as the windows allow; WINDOW_UPDATEs read meanwhile (see RecordingH2Origin)."""
    view = memoryview(body)
    while view:
        window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
        if window <= 0:
            sock.sendall(conn.data_to_send())
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                pass
            continue
        conn.send_data(stream_id, view[:window].tobytes(), end_stream=end and len(view) <= window)
        view = view[window:]
    sock.sendall(conn.data_to_send())


def refuse_without_h2(raw: socket.socket) -> bool:
    """Peek at the ClientHello: an ALPN offer without h2 gets a fatal
    no_application_protocol alert (RFC 7301 §3.2), as nginx answers it; False then."""
    from fastproxy.proxy.layers.tls import NotTLS, parse_client_hello
    raw.settimeout(5)
    hello = None
    for _ in range(200):
        try:
            data = raw.recv(65536, socket.MSG_PEEK)
            hello = parse_client_hello(data) if data else None
        except (OSError, NotTLS):
            data = b""
        if hello is not None or not data:
            break
        time.sleep(0.005)
    if hello is None:
        raw.close()
        return False
    if hello.alpn_offers and b"h2" not in hello.alpn_offers:
        try:
            raw.sendall(b"\x15\x03\x03\x00\x02\x02\x78")
        except OSError:
            pass
        raw.close()
        return False
    return True


class RecordingH2Origin:
    """An h2-only TLS origin (one thread per connection, blocking h2); module docstring."""

    def __init__(self, ca, handler=None, settings: dict | None = None,
                 early=None) -> None:
        self.context = ca.server_context(["h2"])
        self.handler = handler or echo
        self.early = early
        """early(conn, sock, stream_id, received): answers at the request's HEADERS; the
        body is then neither read into the window nor acknowledged."""
        self.settings = settings
        self.requests: list[Received] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stopped = False
        self.socks: list = []
        threading.Thread(target=self.accept, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def accept(self) -> None:
        while not self.stopped:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(sock,), daemon=True).start()

    def serve(self, raw: socket.socket) -> None:
        if not refuse_without_h2(raw):
            return
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        self.socks.append(sock)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False))
        conn.initiate_connection()
        if self.settings:
            conn.update_settings(self.settings)
        streams: dict[int, Received] = {}
        try:
            sock.sendall(conn.data_to_send())
            while not self.stopped:
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    self.handle(conn, sock, streams, event)
                sock.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            sock.close()

    def handle(self, conn, sock, streams: dict, event) -> None:
        sid = getattr(event, "stream_id", None)
        if isinstance(event, h2.events.RequestReceived):
            streams[sid] = received = Received(list(event.headers))
            self.requests.append(received)
            if self.early is not None:
                self.early(conn, sock, sid, received)
        elif self.early is not None:
            return
        elif isinstance(event, h2.events.DataReceived):
            streams[sid].body += event.data
            if event.flow_controlled_length:
                conn.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.TrailersReceived):
            streams[sid].trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            sock.sendall(conn.data_to_send())
            self.handler(conn, sock, sid, streams.pop(sid))
        elif isinstance(event, h2.events.RequestReceived):
            pass

    def stop(self) -> None:
        self.stopped = True
        self.server.close()
        for sock in self.socks:
            try:
                sock.close()
            except OSError:
                pass
