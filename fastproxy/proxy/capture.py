"""Recording HTTP/1 exchanges from the fast path, without building flows.

Recording used to force the flow path for every request (an `HTTPFlow`, a `Request`, a
`Response`, gathered bodies, hook dispatch) and a snapshot of the flow on the loop. When
the only HTTP listener is a recorder that takes raw exchanges (an addon with
``records_exchanges = True`` and a ``record_exchange(client_conn, server_conn, exchange)``
method, such as `fastproxy.addons.save.Save`), the addon manager says so
(``listeners.record_exchange``, and ``listeners.http_flows`` stays False), and
`Exchange.run_fast` keeps, per exchange, only what the recorded flow needs, in one list
(`start`): the times, the response head and a `BodyTee` per body (the relay hands it each
piece with its transfer framing). `record` turns that into one flat tuple of bytes, str,
ints and floats, cheap to pickle, and hands it to the recorder with the two connections
(whose states the recorder sends once per connection).

The writer process turns the tuple into the state dict `HTTPFlow.get_state()` gives for
the same exchange on the flow path, key for key (`exchange_state`; tests/test_recorder.py
compares the encoded bytes): bodies de-chunked, the Host field rewritten as the flow path
does in reverse mode, bodies longer than the limit cut and marked as `truncate_bodies`
marks them.

An exchange that fails (no upstream, the upstream closed, a connection lost in the middle
of a body) is recorded by `Exchange.fail` with its error message, as the flow path records
the flow at ``error``.
"""

from __future__ import annotations

import time
import uuid
from random import getrandbits as _random_bits
from typing import Any, Callable

from fastproxy.flow import FLOW_FORMAT_VERSION
from fastproxy.io import tnetstring
from fastproxy.io.recorder import BodyTee, dechunk, mark_truncated

# Slots of the list `start` makes (one per recorded exchange).
T_START, REQUEST_TEE, T_REQUEST_END, RESPONSE, T_RESPONSE_START, RESPONSE_TEE = range(6)


def start(exchange: Any) -> list:
    """The capture of an exchange (`http1.Exchange`) whose request head just arrived."""
    now = time.time()
    if not exchange.request_body_done:
        return [now, tee(exchange.ctx.options.save_body_limit, exchange.head),
                None, None, None, None]
    return [now, None, now, None, None, None]  # a bodyless request ends with its head


def request_ended(rec: list) -> None:
    rec[T_REQUEST_END] = time.time()


def response_started(exchange: Any, head: Any) -> BodyTee:
    """Note the response head; the returned tee takes its body."""
    rec = exchange.rec
    rec[RESPONSE] = head
    rec[T_RESPONSE_START] = time.time()
    body_tee = rec[RESPONSE_TEE] = tee(exchange.ctx.options.save_body_limit, head)
    return body_tee


def tee(limit: int, head: Any) -> BodyTee:
    """The tee for the body of the message with this head (as received, with framing)."""
    return ChunkedTee(limit) if head.chunked else BodyTee(limit)


class ChunkedTee(BodyTee):
    """A `BodyTee` for a chunked body: it follows the framing (RFC 9112 §7.1), so that
    ``size`` is the size without it and pieces are kept until that reaches the limit:
    the writer de-chunks them and cuts to the limit exactly as a gathered body is cut.
    The reader has checked the framing already; this only counts."""

    __slots__ = ("need", "crlf", "line", "done")

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.need = 0  # data bytes left in the current chunk
        self.crlf = 0  # bytes left of the CRLF after it
        self.line = b""  # a chunk-size line cut between pieces
        self.done = False

    def add(self, data: bytes) -> None:
        if self.size < self.limit:
            self.pieces.append(data)
        pos, end = 0, len(data)
        while pos < end and not self.done:
            if self.need:
                take = min(self.need, end - pos)
                self.need -= take
                self.size += take
                pos += take
                if not self.need:
                    self.crlf = 2
            elif self.crlf:
                take = min(self.crlf, end - pos)
                self.crlf -= take
                pos += take
            else:
                eol = data.find(b"\n", pos)
                if eol < 0:
                    self.line += data[pos:]
                    return
                line, self.line = self.line + data[pos:eol], b""
                pos = eol + 1
                try:
                    self.need = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.need = 0
                self.done = self.need == 0  # the last chunk: trailers are not kept


def record(exchange: Any, error: str | None) -> None:
    """Hand the exchange (`http1.Exchange`) over to the recorders, once; with ``error``
    when it failed. Called before the upstream connection is released or closed."""
    rec = exchange.rec
    exchange.rec = None
    ctx = exchange.ctx
    now = time.time()
    head, route, resp = exchange.head, exchange.route, rec[RESPONSE]
    t_request_end = rec[T_REQUEST_END]
    if resp is None:
        response = _NO_RESPONSE
    else:
        done = error is None
        response = (resp.version, resp.status_code, resp.reason, resp.fields,
                    rec[T_RESPONSE_START], *_body(rec[RESPONSE_TEE], done, resp.chunked),
                    now if done else None)
    data = (rec[T_START], head.method, route.scheme, route.host, route.port, route.authority,
            route.path, head.version, head.fields, route.host_header,
            *_body(rec[REQUEST_TEE], t_request_end is not None, head.chunked), t_request_end,
            *response, error, now)
    for fn in ctx.listeners.record_exchange:
        fn(ctx.client_conn, ctx.server_conn, data)


_NO_RESPONSE = (None,) * 9


def _body(tee: BodyTee | None, complete: bool, chunked: bool) -> tuple:
    """(kept bytes, full size, chunked) of a body; the bytes are None if it did not end."""
    if not complete:
        return None, 0, False
    if tee is None:
        return b"", 0, False
    pieces = tee.pieces
    return (pieces[0] if len(pieces) == 1 else b"".join(pieces)), tee.size, chunked


# -- in the writer process --------------------------------------------------------------

def exchange_state(data: tuple, client_conn: Any, server_conn: Any,
                   limit: int | None) -> dict:
    """The state `HTTPFlow.get_state()` has for the exchange `record` captured, with the
    given connection states (None for a server never connected: an unconnected Server's),
    bodies longer than ``limit`` cut and marked as `truncate_bodies` does.
    """
    (t_start, method, scheme, host, port, authority, path, version, fields, host_header,
     req_body, req_size, req_chunked, t_req_end,
     resp_version, status, reason, resp_fields, t_resp_start, resp_body, resp_size,
     resp_chunked, t_resp_end, error, t_error) = data
    if server_conn is None:
        from fastproxy.connection import Server
        server_conn = Server(address=None).get_state()
    cut: dict[str, int] = {}
    state = {
        "version": FLOW_FORMAT_VERSION,
        "type": "http",
        "id": str(uuid.uuid4()),
        "error": None if error is None else {"msg": error, "timestamp": t_error},
        "client_conn": client_conn,
        "server_conn": server_conn,
        "intercepted": False,
        "is_replay": None,
        "marked": "",
        "metadata": {},
        "comment": "",
        "timestamp_created": t_start,
        "backup": None,
        "request": {
            "http_version": version,
            "headers": request_headers(fields, host_header),
            "content": _content(req_body, req_size, req_chunked, limit, "request", cut),
            "trailers": None,
            "timestamp_start": t_start,
            "timestamp_end": t_req_end,
            "host": host,
            "port": port,
            "method": method,
            "scheme": scheme.encode(),
            "authority": authority,
            "path": path,
        },
        "response": None if status is None else {
            "http_version": resp_version,
            "headers": tuple(map(tuple, resp_fields)),
            "content": _content(resp_body, resp_size, resp_chunked, limit, "response", cut),
            "trailers": None,
            "timestamp_start": t_resp_start,
            "timestamp_end": t_resp_end,
            "status_code": status,
            "reason": reason,
        },
        "websocket": None,
    }
    if cut:
        mark_truncated(state, cut, limit)
    return state


def _content(body: bytes | None, size: int, chunked: bool, limit: int | None, side: str,
             cut: dict[str, int]) -> bytes | None:
    """The body as the flow path gathers it (without transfer coding), cut to ``limit``;
    a cut body's full size (``size``, as the tee counted it) goes in ``cut``."""
    if body is None:
        return None
    content = dechunk(body) if chunked else body
    if limit is not None and size > limit:
        cut[side] = size
        return content[:limit]
    return content


def request_headers(fields: list, host_header: str | None) -> tuple:
    """The request's fields as the flow path has them: with ``host_header``, every Host
    value replaced where it stands, or a Host field first if there was none (as
    `http1.Exchange.make_flow` rewrites it in reverse mode)."""
    if host_header is None:
        return tuple(map(tuple, fields))
    host = host_header.encode()
    replaced = tuple((name, host) if name.lower() == b"host" else (name, value)
                     for name, value in fields)
    if not any(name.lower() == b"host" for name, _ in fields):
        replaced = ((b"Host", host),) + replaced
    return replaced


# The same state, encoded directly: what `tnetstring.dumps(exchange_state(...))` writes,
# byte for byte (a dict's items last to first), in a fraction of the time: this is the
# writer's cost per flow, and the writer shares the machine with the proxy.

def _float(value: float | None) -> bytes:
    if value is None:
        return b"0:~"
    text = b"%r" % value  # repr(): what mitmproxy writes
    return b"%d:%s^" % (len(text), text)


def _optional(value: bytes | None) -> bytes:
    return b"0:~" if value is None else b"%d:%s," % (len(value), value)


def _template(keys: str) -> bytes:
    """``KEY<value>...``, each key encoded, each value a %s (already encoded)."""
    return b"".join(tnetstring.dumps(key) + b"%s" for key in keys.split())


_REQUEST = _template("path authority scheme method port host timestamp_end timestamp_start "
                     "trailers content headers http_version")
_RESPONSE = _template("reason status_code timestamp_end timestamp_start trailers content "
                      "headers http_version")
_FLOW = _template("websocket response request backup timestamp_created comment metadata "
                  "marked is_replay intercepted server_conn client_conn error id type "
                  "version")
_NONE, _EMPTY_STR, _EMPTY_DICT, _FALSE = (tnetstring.dumps(v) for v in (None, "", {}, False))
_HTTP, _VERSION = tnetstring.dumps("http"), tnetstring.dumps(FLOW_FORMAT_VERSION)


def _int(value: int) -> bytes:
    text = b"%d" % value
    return b"%d:%s#" % (len(text), text)


def _str(value: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    return b"%d:%s;" % (len(data), data)


def _uuid4() -> str:
    """A random (version 4) UUID, as `uuid.uuid4()` but cheaper (not for secrets)."""
    h = "%032x" % (_random_bits(128) & 0xFFFFFFFFFFFF0FFF3FFFFFFFFFFFFFFF
                   | 0x00000000000040008000000000000000)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def encode_exchange(data: tuple, client_conn: bytes, server_conn: bytes | None,
                    limit: int | None, headers: Callable[[Any, Any], bytes]) -> bytes:
    """``tnetstring.dumps(exchange_state(data, ...))``, faster: the connection states come
    encoded, header fields through ``headers(fields, host_header)`` (the writer's cache)."""
    (t_start, method, scheme, host, port, authority, path, version, fields, host_header,
     req_body, req_size, req_chunked, t_req_end,
     resp_version, status, reason, resp_fields, t_resp_start, resp_body, resp_size,
     resp_chunked, t_resp_end, error, t_error) = data
    if limit is not None and (req_size > limit or (resp_size or 0) > limit):  # rare: cut
        return tnetstring.dumps(exchange_state(data, client_conn, server_conn, limit))
    if server_conn is None:
        from fastproxy.connection import Server
        server_conn = tnetstring.dumps(Server(address=None).get_state())
    if req_body is not None and req_chunked:
        req_body = dechunk(req_body)
    started = _float(t_start)
    request = _REQUEST % (
        b"%d:%s," % (len(path), path), b"%d:%s," % (len(authority), authority),
        b"%d:%s," % (len(scheme), scheme.encode()), b"%d:%s," % (len(method), method),
        _int(port), _str(host), started if t_req_end == t_start else _float(t_req_end),
        started, _NONE,
        _optional(req_body), headers(fields, host_header),
        b"%d:%s," % (len(version), version))
    if status is None:
        response = _NONE
    else:
        if resp_body is not None and resp_chunked:
            resp_body = dechunk(resp_body)
        response = _RESPONSE % (
            b"%d:%s," % (len(reason), reason), _int(status), _float(t_resp_end),
            _float(t_resp_start), _NONE, _optional(resp_body), headers(resp_fields, None),
            b"%d:%s," % (len(resp_version), resp_version))
        response = b"%d:%s}" % (len(response), response)
    flow = _FLOW % (
        _NONE, response, b"%d:%s}" % (len(request), request), _NONE, started,
        _EMPTY_STR, _EMPTY_DICT, _EMPTY_STR, _NONE, _FALSE, server_conn, client_conn,
        _NONE if error is None else tnetstring.dumps({"msg": error, "timestamp": t_error}),
        b"36:%s;" % _uuid4().encode(), _HTTP, _VERSION)
    return b"%d:%s}" % (len(flow), flow)
