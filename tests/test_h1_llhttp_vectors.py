"""llhttp's own HTTP/1 test vectors, replayed through a running proxy (reverse mode).

`../shared/conformance/llhttp-vectors.json` holds every case of llhttp's test suite
(`test/request/*.md`, `test/response/*.md`) with what llhttp in that mode says about it
(see the README beside it). The data is read at test time, never copied here.

- Request cases: the raw bytes go from a raw client socket to the proxy, then the client
  half-closes. In front of the proxy's upstream is `StrictOrigin`: it records every byte,
  parses with h11 and answers every whole request with a fixed 200. When llhttp (strict)
  rejects the bytes, the origin must have received no byte of the erroneous message (only
  the `completes` messages before it, when there are any) and the client gets a refusal
  (400) or just the close. When llhttp accepts, the origin got the request(s), h11 parses
  what it received, and the client got one 200 per request.
- Response cases: the client sends a normal GET; the origin answers it with the case's
  bytes and closes. Rejected: the client gets a 502 and never the bad bytes. Accepted: the
  client gets a response h11 parses, with the case's status.

Lenient-mode cases (`request-lenient-headers` ...) are judged as llhttp without the flag
judges them: a strict proxy has no leniency flags. Where the proxy deliberately differs
from llhttp, `ALLOWLIST` says why, with the RFC section.

One proxy and one origin serve every case (module-scope fixtures); each case uses fresh
client connections and only looks at what the origin received while it ran.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest

from tests.support.proxyproc import ProxyProcess

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance"
VECTORS = CONFORMANCE / "llhttp-vectors.json"
IN_CI = os.environ.get("CI", "").lower() == "true"
MISSING = None if VECTORS.is_file() else f"{VECTORS} is absent (../shared/conformance)"

TIMEOUT = 5.0
RESPONSE_PATH = "/__llhttp_response__/"

# -- the proxy deliberately differs from llhttp here -------------------------------------
# Request cases listed here are refused by the proxy with nothing forwarded (llhttp accepts
# them, or pauses on them as a complete message); response cases get a 502.

ALLOWLIST: dict[str, str] = {
    # HTTP/0.9 and non-HTTP protocols: llhttp speaks them, an HTTP/1 proxy does not.
    "request/sample/no-http-version":
        "RFC 9112 §2.3/§3: a request-line needs HTTP-version; HTTP/0.9 is not supported",
    "request/method/source-request-with-ice":
        "RFC 9112 §2.3: HTTP-version = \"HTTP/\" DIGIT \".\" DIGIT; ICE/1.0 is not HTTP",
    "request/method/options-request-with-rtsp":
        "RFC 9112 §2.3: HTTP-version = \"HTTP/\" DIGIT \".\" DIGIT; RTSP/1.0 is not HTTP",
    "request/method/announce-request-with-rtsp":
        "RFC 9112 §2.3: HTTP-version = \"HTTP/\" DIGIT \".\" DIGIT; RTSP/1.0 is not HTTP",
    "response/sample/rtsp-response":
        "RFC 9112 §4: status-line starts with HTTP-version; RTSP/1.1 is not HTTP",
    "response/sample/ice-response":
        "RFC 9112 §4: status-line starts with HTTP-version; ICE/1.1 is not HTTP",
    "response/sample/http-version-0-9":
        "RFC 9112 §2.3: only HTTP/1.x is spoken to upstreams; a 0.9 status line is invalid",
    # CONNECT means "open a tunnel" to a forward proxy; llhttp pauses on it as complete.
    "request/method/connect-request":
        "RFC 9110 §9.3.6: CONNECT is for proxies; a reverse proxy answers 405",
    "request/method/connect-request-with-caps":
        "RFC 9110 §9.3.6: CONNECT is for proxies; a reverse proxy answers 405",
    "request/method/connect-with-body":
        "RFC 9110 §9.3.6: CONNECT is for proxies; a reverse proxy answers 405",
    "request/uri/underscore-in-hostname":
        "RFC 9110 §9.3.6: CONNECT is for proxies; a reverse proxy answers 405",
    # userinfo in an absolute-form target.
    "request/uri/host-port-and-basic-auth":
        "RFC 9110 §4.2.4: userinfo in an http URI is treated as an error by a recipient",
    # Empty lines before a status line: RFC 9112 §2.2 has a server skip them before a
    # request-line; a client reading a response has no such leniency.
    "response/sample/response-starting-with-crlf":
        "RFC 9112 §2.2: empty lines are ignored only before a request-line",
    "response/connection/http-100-first-then-400":
        "RFC 9112 §2.2: empty lines are ignored only before a request-line (here after a 100)",
    # The HTTP/2 connection preface: not an HTTP/1 request; whatever layer takes it, no
    # HTTP/1 request reaches the origin (llhttp also stops there: "Pause on PRI/Upgrade").
    "request/method/pri-request-http2":
        "RFC 9113 §3.4: the preface is HTTP/2, not an HTTP/1 request to forward",
}

# Beyond the list: an HTTP/1.1 request without Host (most of llhttp's request cases).
MISSING_HOST = "RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host"


def proxy_differs(case: Case) -> str | None:
    """Why the proxy refuses this case although llhttp takes it (None: it does not)."""
    if case.id in ALLOWLIST:
        return ALLOWLIST[case.id]
    if case.kind == "request":
        head = case.raw.lstrip(b"\r\n").split(b"\r\n\r\n", 1)[0]
        request_line = head.split(b"\r\n", 1)[0]
        if request_line.endswith(b" HTTP/1.1") and not re.search(
                rb"\r\nhost[ \t]*:", head, re.IGNORECASE):
            return MISSING_HOST
    return None


# Cases where the client may get any answer (or none) as long as nothing is forwarded.
ANY_ANSWER = {"request/method/pri-request-http2"}

# Statuses a refusal may carry besides 400 (each is what an RFC recommends for its case).
REFUSAL_STATUSES = {
    400: "RFC 9112 §3, §5: malformed request",
    405: "RFC 9110 §15.5.6: CONNECT to a reverse proxy",
    501: "RFC 9112 §6.1: a transfer coding the server does not understand",
    505: "RFC 9110 §15.6.6: HTTP version not supported",
}

# What llhttp says about the lenient-mode cases with the flag off, where the suite has no
# strict twin with the same bytes (checked once with httptools 0.9.0's llhttp).
STRICT_OUTCOME: dict[str, tuple[bool, int, str | None]] = {
    "request/connection/resetting-flags-when-keep-alive-is-off-1-0-lenient":
        (True, 1, "Data after `Connection: close`"),
    "request/connection/multiple-tokens-with-folding":
        (True, 0, "Unexpected whitespace after header value"),
    "request/connection/multiple-tokens-with-folding-lws-and-crlf":
        (True, 0, "Unexpected whitespace after header value"),
    "request/invalid/only-lfs-present-lenient": (True, 0, "Expected CRLF after version"),
    "request/lenient-header-value-relaxed/cr-without-lf-in-header-value-should-be-rejected"
    "-even-with-relaxed-flag": (True, 0, "Expected LF after CR"),
    "request/lenient-header-value-relaxed/space-after-start-line-must-still-fail":
        (True, 0, "Unexpected space after start line"),
    "request/lenient-headers/header-value-lenient": (True, 0, "Invalid header value char"),
    "request/lenient-headers/second-request-header-value-lenient":
        (True, 1, "Invalid header value char"),
    "request/lenient-version/invalid-http-version-lenient": (True, 0, "Invalid HTTP version"),
    "request/sample/line-folding-in-header-value-with-crlf":
        (True, 0, "Unexpected whitespace after header value"),
    "request/sample/x-ssl-nonsense": (True, 0, "Unexpected whitespace after header value"),
    "request/transfer-encoding/post-with-transfer-encoding-and-content-length-lenient":
        (True, 0, "Content-Length can't be present with Transfer-Encoding"),
    "request/transfer-encoding/invalid-obs-fold-after-chunked-value":
        (True, 0, "Unexpected whitespace after header value"),
    "request/transfer-encoding/chunk-header-not-terminated-by-crlf-lenient":
        (True, 0, "Expected LF after chunk size"),
    "response/transfer-encoding/invalid-obs-fold-after-chunked-value":
        (True, 0, "Unexpected whitespace after header value"),
}

# llhttp's "error" that is no error for a proxy: the message before it is complete and
# forwarded, and what follows is not (the connection ends there, or the upgrade the origin
# did not accept leaves only garbage).
STOPS_AFTER_MESSAGE = ("Data after `Connection: close`", "Pause on CONNECT/Upgrade")

# What h11 (the test's parser at the origin and at the client) cannot read although the
# proxy forwards it correctly: checked by a plain status-line match instead.
H11_CANNOT_PARSE: dict[str, str] = {
    "request/transfer-encoding/post-with-chunked-as-last-transfer-encoding":
        "h11 supports no transfer coding but chunked",
    "request/transfer-encoding/post-with-chunked-as-last-transfer-encoding-multiple-headers":
        "h11 supports no transfer coding but chunked",
    "response/transfer-encoding/chunked-before-other-transfer-encoding":
        "h11 supports no transfer coding but chunked",
    "response/transfer-encoding/multiple-transfer-encoding-where-chunked-is-not-the-last-one":
        "h11 supports no transfer coding but chunked",
    "response/transfer-encoding/chunkedchunked-transfer-encoding-does-not-enable-chunked"
    "-enconding": "h11 supports no transfer coding but chunked",
}


# -- the cases ---------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    index: int
    kind: str  # "request" | "response"
    type: str  # llhttp's mode
    title: str
    raw: bytes
    error: bool  # llhttp in strict mode rejects
    completes: int  # whole messages before the error / the end
    reason: str | None
    meta: dict = field(default_factory=dict)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def load_cases() -> list[Case]:
    data = json.loads(VECTORS.read_text())
    strict = {(c["type"], c["raw_hex"]): c for c in data if c["type"] in ("request", "response")}
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for index, c in enumerate(data):
        base = c["file"].removesuffix(".md")
        case_id = f"{base}/{_slug(c['title'])}"
        if case_id in seen:
            seen[case_id] += 1
            case_id = f"{case_id}-{seen[case_id]}"
        else:
            seen[case_id] = 1
        kind = c["type"].split("-")[0]
        error, completes, reason = c["error"], c["completes"], c["error_reason"]
        if c["type"] != kind:  # a lenient mode: judge it as strict llhttp would
            twin = strict.get((kind, c["raw_hex"]))
            if twin is not None:
                error, completes, reason = twin["error"], twin["completes"], twin["error_reason"]
            elif case_id in STRICT_OUTCOME:
                error, completes, reason = STRICT_OUTCOME[case_id]
        if c["meta"].get("skipBody"):
            # llhttp's test skipped the body by callback: a proxy reads the next message's
            # bytes as this one's body, which never ends.
            completes = 0
        cases.append(Case(case_id, index, kind, c["type"], c["title"], bytes.fromhex(c["raw_hex"]),
                          error, completes, reason, c["meta"]))
    return cases


CASES = [] if MISSING else load_cases()


def _params(kind: str):
    if MISSING:
        return [pytest.param(None, id="no-conformance-data")]
    return [pytest.param(c, id=c.id) for c in CASES if c.kind == kind]


def _require_data() -> None:
    if MISSING:
        if IN_CI:
            pytest.fail(f"CI=true but {MISSING}")
        pytest.skip(MISSING)


# -- the origin --------------------------------------------------------------------------

@dataclass
class OriginRecord:
    """What the origin saw while one case ran."""
    raw: dict[int, bytearray] = field(default_factory=dict)  # connection -> bytes received
    requests: list[h11.Request] = field(default_factory=list)  # whole ones (body too)
    bodies: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # h11 errors (garbage forwarded)
    truncated: list[str] = field(default_factory=list)  # closed in the middle of a request


class StrictOrigin:
    """A raw HTTP/1 origin: records every byte, parses with h11, answers every whole request
    with a fixed 200 (keep-alive), or, for GET RESPONSE_PATH<n>, with response case n's
    bytes and a close."""

    BODY = b"origin-ok"

    def __init__(self, responses: dict[int, bytes]) -> None:
        self.responses = responses
        self.lock = threading.Lock()
        self.record = OriginRecord()
        self.conns: dict[int, h11.Connection] = {}
        self.heads: dict[int, h11.Request] = {}  # id(connection) -> head of its request
        self.next_id = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> OriginRecord:
        with self.lock:
            old, self.record = self.record, OriginRecord()
            return old

    def partial(self) -> list[str]:
        """Connections holding part of a request (a head without its whole body, or bytes
        of an unfinished head)."""
        out = []
        with self.lock:
            for cid, conn in self.conns.items():
                data, _closed = conn.trailing_data
                if conn.their_state in (h11.SEND_BODY,) or (
                        conn.their_state is h11.IDLE and data):
                    out.append(f"connection {cid}: state {conn.their_state}, buffered {data!r}")
        return out

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                cid = self.next_id
                self.next_id += 1
            threading.Thread(target=self._serve, args=(sock, cid), daemon=True).start()

    def _serve(self, sock: socket.socket, cid: int) -> None:
        conn = h11.Connection(h11.SERVER)
        with self.lock:
            self.conns[cid] = conn
        body = bytearray()
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                with self.lock:
                    if data:
                        self.record.raw.setdefault(cid, bytearray()).extend(data)
                    conn.receive_data(data)
                    out, close, response_case = self._events(conn, body)
                if response_case is not None:
                    sock.sendall(self.responses[response_case])
                    _close_after_writing(sock)
                    return
                if out:
                    sock.sendall(out)
                if close or not data:
                    return
        except OSError:
            pass
        finally:
            with self.lock:
                self.conns.pop(cid, None)
                self.heads.pop(id(conn), None)
            sock.close()

    def _events(self, conn: h11.Connection, body: bytearray):
        """Process what h11 has (lock held): (bytes to send, close?, response case)."""
        out = b""
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                if conn.trailing_data[1] and any(m in str(e) for m in _TRUNCATED):
                    # The proxy closed in the middle of a request: a part was forwarded.
                    self.record.truncated.append(str(e))
                    return out, True, None
                self.record.errors.append(str(e))
                return out + _ORIGIN_400, True, None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if event is h11.PAUSED and conn.their_state is h11.DONE \
                        and conn.our_state is h11.DONE:
                    conn.start_next_cycle()
                    continue
                return out, False, None
            if isinstance(event, h11.ConnectionClosed):
                return out, True, None
            if isinstance(event, h11.Request):
                self.heads[id(conn)] = event
                body.clear()
            elif isinstance(event, h11.Data):
                body.extend(event.data)
            elif isinstance(event, h11.EndOfMessage):
                request = self.heads.pop(id(conn))
                self.record.requests.append(request)
                self.record.bodies.append(bytes(body))
                target = request.target.decode("latin-1")
                if request.method == b"GET" and target.startswith(RESPONSE_PATH):
                    return out, True, int(target[len(RESPONSE_PATH):])
                out += conn.send(h11.Response(status_code=200, headers=[
                    ("Content-Length", str(len(self.BODY))), ("Content-Type", "text/plain")]))
                if request.method != b"HEAD":
                    out += conn.send(h11.Data(data=self.BODY))
                out += conn.send(h11.EndOfMessage())
                if conn.our_state is h11.MUST_CLOSE:
                    return out, True, None
                if conn.their_state is h11.DONE:
                    conn.start_next_cycle()


_TRUNCATED = ("peer closed connection without sending complete message body",
              "peer unexpectedly closed connection")
_ORIGIN_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _close_after_writing(sock: socket.socket) -> None:
    """FIN after the bytes, then wait (briefly) for the peer's FIN, so that no RST can
    overtake the data."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2.0)
        while sock.recv(65536):
            pass
    except OSError:
        pass


# -- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vectors_proxy(tmp_path_factory):
    _require_data()
    responses = {c.index: c.raw for c in CASES if c.kind == "response"}
    origin = StrictOrigin(responses)
    tmp = tmp_path_factory.mktemp("llhttp-vectors")
    proxy = ProxyProcess("-q", "-m", f"reverse:http://127.0.0.1:{origin.port}", tmp_path=tmp)
    try:
        yield proxy, origin
    finally:
        proxy.stop()
        origin.stop()


# -- client side -------------------------------------------------------------------------

def _exchange(port: int, data: bytes, half_close: bool) -> tuple[bytes, bool]:
    """Send `data` on a fresh connection; read until the proxy closes (or TIMEOUT).
    Returns (bytes received, closed by the proxy)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    received = bytearray()
    closed = False
    try:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy may refuse and close before reading all of it
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received.extend(chunk)
            if not half_close and _whole_response(bytes(received)):
                break
    finally:
        sock.close()
    return bytes(received), closed


def _whole_response(data: bytes) -> bool:
    """True once `data` holds a whole final response to a GET (h11's view)."""
    responses, _err, _rest = parse_responses(data, [b"GET"], eof=False)
    return bool(responses) and responses[0][2]


def parse_responses(data: bytes, methods: list[bytes], eof: bool = True):
    """Responses in `data` answering requests with `methods` (one more, to a GET, is
    allowed: a refusal), each as (status, body, complete). Returns (responses, h11 error or
    None, unparsed rest)."""
    conn = h11.Connection(h11.CLIENT)
    out: list[tuple[int, bytes, bool]] = []
    methods = list(methods) + [b"GET"]
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    for method in methods:
        if conn.trailing_data == (b"", True) and conn.their_state is h11.IDLE:
            break  # closed cleanly between responses
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "proxy")]))
        conn.send(h11.EndOfMessage())
        status, body = None, bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                if status is not None:
                    out.append((status, bytes(body), False))
                return out, str(e), conn.trailing_data[0]
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body.extend(event.data)
            elif isinstance(event, h11.EndOfMessage):
                out.append((status, bytes(body), True))
                break
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed) \
                    or event is h11.PAUSED:
                if status is not None:
                    out.append((status, bytes(body), False))
                return out, None, conn.trailing_data[0]
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            break
        conn.start_next_cycle()
    return out, None, conn.trailing_data[0]


def _settle(origin: StrictOrigin) -> OriginRecord:
    """What the origin got for this case, once late bytes had a moment to arrive."""
    time.sleep(0.02)
    return origin.reset()


def _describe(case: Case, record: OriginRecord, received: bytes) -> str:
    return (f"\ncase {case.index} {case.id} ({case.type}): {case.raw!r}"
            f"\nllhttp: error={case.error} completes={case.completes} reason={case.reason!r}"
            f"\norigin received: {[bytes(v) for v in record.raw.values()]!r}"
            f"\norigin h11 errors: {record.errors!r}"
            f"\nclient received: {received[:600]!r}")


def _status_line(data: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


# -- the tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", _params("request"))
def test_request_vector(case: Case, vectors_proxy):
    _require_data()
    proxy, origin = vectors_proxy
    origin.reset()
    received, closed = _exchange(proxy.port, case.raw, half_close=True)
    partial = origin.partial()
    record = _settle(origin)
    info = _describe(case, record, received)

    if proxy_differs(case):
        refuse, least, most = True, 0, 0
    elif case.error:
        # The messages before the error may go through; after a close or an upgrade the
        # origin refused they are plain valid requests, so they must.
        refuse, most = True, case.completes
        least = case.completes if case.reason in STOPS_AFTER_MESSAGE else 0
    else:
        refuse, least, most = False, case.completes, case.completes

    if case.id in H11_CANNOT_PARSE and not refuse:
        # The origin cannot parse it (and answers 400): check the bytes it got instead.
        forwarded_bytes = b"".join(record.raw.values())
        head, _, body = case.raw.partition(b"\r\n\r\n")
        assert forwarded_bytes.startswith(head.split(b"\r\n")[0] + b"\r\n"), info
        assert forwarded_bytes.endswith(b"\r\n\r\n" + body), info
        return

    assert not record.errors, "the origin got bytes h11 cannot parse" + info
    forwarded = len(record.requests)
    assert least <= forwarded <= most, (
        f"origin got {forwarded} whole requests, expected {least}..{most}" + info)
    methods = [r.method for r in record.requests]
    responses, error, rest = parse_responses(received, methods)
    statuses = [r[0] for r in responses]
    assert error is None and not rest, f"client got what h11 cannot parse ({error})" + info
    assert statuses[:forwarded] == [200] * forwarded, info
    assert all(r[2] and r[1] == (b"" if m == b"HEAD" else StrictOrigin.BODY)
               for r, m in zip(responses, methods)), info
    # After the whole messages: at most a refusal (of the error, or of an unfinished rest).
    extra = statuses[forwarded:]
    assert len(extra) <= 1, info
    if refuse:
        truncated = partial + record.truncated
        assert not truncated, f"part of the refused message was forwarded: {truncated}" + info
        if case.id in ANY_ANSWER:
            return
        assert closed, "the proxy did not close the connection after refusing" + info
    if extra:
        assert extra[0] in REFUSAL_STATUSES, f"refused with {extra[0]}" + info


@pytest.mark.parametrize("case", _params("response"))
def test_response_vector(case: Case, vectors_proxy):
    _require_data()
    proxy, origin = vectors_proxy
    origin.reset()
    request = (f"GET {RESPONSE_PATH}{case.index} HTTP/1.1\r\nHost: vectors\r\n"
               f"Accept: */*\r\n\r\n").encode()
    received, closed = _exchange(proxy.port, request, half_close=False)
    record = _settle(origin)
    info = _describe(case, record, received)
    assert len(record.requests) == 1 and not record.errors, "the GET did not reach the origin" \
        + info

    bad_line = case.raw.lstrip(b"\r\n").split(b"\n", 1)[0] + b"\n"
    if proxy_differs(case) or (case.error and case.reason not in STOPS_AFTER_MESSAGE) or (
            case.error and "Upgrade" in (case.reason or "")):
        # A 101 to a request that asked for no upgrade is refused too (RFC 9110 §7.8).
        responses, error, _rest = parse_responses(received, [b"GET"], eof=closed)
        assert error is None and responses and responses[0][0] == 502, \
            "expected a 502" + info
        assert bad_line not in received, "the bad bytes reached the client" + info
        return

    expected, before = _expected_status(case.raw)
    if case.id in H11_CANNOT_PARSE:
        assert _status_line(received) == expected, info
        return
    responses, error, _rest = parse_responses(received, [b"GET"], eof=closed)
    assert responses, f"no response h11 can parse ({error})" + info
    assert responses[0][0] == expected, info
    # A final response llhttp saw whole is delivered whole; one cut off by the origin's
    # close (llhttp's `completes` does not count it) may end early.
    if case.completes > before:
        assert error is None and responses[0][2], f"response incomplete ({error})" + info


def _expected_status(raw: bytes) -> tuple[int, int]:
    """The first final (non-1xx) status in a response case's bytes, and how many
    (interim) responses come before it."""
    for before, m in enumerate(re.finditer(rb"(?:^|\n)HTTP/\d\.\d (\d{3})", raw)):
        status = int(m.group(1))
        if status >= 200:
            return status, before
    raise AssertionError(f"no final status in {raw!r}")
