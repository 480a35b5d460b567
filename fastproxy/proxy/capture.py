"""Recording HTTP/1 exchanges from the fast path, without building flows.

Recording used to force the flow path for every request (an `HTTPFlow`, a `Request`, a
`Response`, gathered bodies, hook dispatch) and a snapshot of the flow on the loop. When
the only HTTP listener is a recorder that takes raw exchanges (an addon with
``records_exchanges = True`` and a ``record_exchange(client_conn, server_conn, exchange)``
method, such as `fastproxy.addons.save.Save`), the addon manager says so
(``listeners.record_exchange``, and ``listeners.http_flows`` stays False), and
`Exchange.run_fast` keeps, per exchange, only what the recorded flow needs, in one list
(`start`, a `Capture`): the times, the response head and the bodies (the relay hands each
piece with its transfer framing to the body's tee). A response body with a Content-Length
within the limit needs no tee object: the `Capture` list itself takes its pieces
(``add`` is ``list.append``, no Python frame per piece). `record` turns that into one flat
tuple of bytes, str, ints and floats, cheap to pickle, and hands it to the recorder with
the two connections (whose states the recorder sends once per connection).

The writer process encodes the tuple (`fastproxy.io._encode`, in C) as the state dict
`HTTPFlow.get_state()` gives for the same exchange on the flow path, key for key
(`exchange_state` is that dict; tests/test_recorder.py compares the encoded bytes): bodies
de-chunked, the Host field rewritten as the flow path does in reverse mode. Bodies longer
than the limit are cut and marked as `truncate_bodies` marks them (`exchange_state`, in
Python: rare).

An exchange that fails (no upstream, the upstream closed, a connection lost in the middle
of a body) is recorded by `Exchange.fail` with its error message, as the flow path records
the flow at ``error``.
"""

from __future__ import annotations

import time
from typing import Any

from fastproxy.flow import FLOW_FORMAT_VERSION
from fastproxy.ids import new_id
from fastproxy.io.bodies import BodyTee, dechunk, mark_truncated

# Slots of the list `start` makes (one per recorded exchange); a response body's pieces
# follow them when the list is its tee (`response_started`).
T_START, REQUEST_TEE, T_REQUEST_END, RESPONSE, T_RESPONSE_START, RESPONSE_TEE = range(6)
_SLOTS = 6


class Capture(list):
    """What is kept of one exchange (the slots above), and the tee of a response body
    known to fit the limit: ``add`` appends each piece after the slots."""

    __slots__ = ()
    add = list.append


def start(exchange: Any) -> Capture:
    """The capture of an exchange (`http1.Exchange`) whose request head just arrived."""
    now = time.time()
    if not exchange.request_body_done:
        return Capture((now, tee(exchange.ctx.options.save_body_limit, exchange.head),
                        None, None, None, None))
    return Capture((now, None, now, None, None, None))  # a bodyless request ends with its head


def request_ended(rec: list) -> None:
    rec[T_REQUEST_END] = time.time()


def response_started(exchange: Any, head: Any) -> Any:
    """Note the response head; the returned tee takes its body (the capture itself when
    the body has a Content-Length within the limit: no object per response)."""
    rec = exchange.rec
    rec[RESPONSE] = head
    rec[T_RESPONSE_START] = time.time()
    limit = exchange.ctx.options.save_body_limit
    if head.chunked or not 0 <= head.content_length <= limit:
        body_tee = rec[RESPONSE_TEE] = tee(limit, head)
        return body_tee
    return rec


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
    if t_request_end is None:
        req_body, req_size, req_chunked = None, 0, False
    elif rec[REQUEST_TEE] is None:
        req_body, req_size, req_chunked = b"", 0, False
    else:
        req_body, req_size, req_chunked = _body(rec[REQUEST_TEE], True, head.chunked)
    if resp is None:
        data = (rec[T_START], head.method, route.scheme, route.host, route.port,
                route.authority, route.path, head.version, head.fields, route.host_header,
                req_body, req_size, req_chunked, t_request_end,
                None, None, None, None, None, None, None, None, None, error, now)
    else:
        if error is not None:
            resp_body, resp_size, resp_chunked = None, 0, False
        elif rec[RESPONSE_TEE] is None:  # the capture was the tee: all of it is kept
            size = len(rec)
            resp_body = b"" if size == _SLOTS else rec[_SLOTS] if size == _SLOTS + 1 \
                else b"".join(rec[_SLOTS:])
            resp_size, resp_chunked = len(resp_body), False
        else:
            resp_body, resp_size, resp_chunked = _body(rec[RESPONSE_TEE], True, resp.chunked)
        data = (rec[T_START], head.method, route.scheme, route.host, route.port,
                route.authority, route.path, head.version, head.fields, route.host_header,
                req_body, req_size, req_chunked, t_request_end,
                resp.version, resp.status_code, resp.reason, resp.fields,
                rec[T_RESPONSE_START], resp_body, resp_size, resp_chunked,
                None if error is not None else now, error, now)
    for fn in ctx.listeners.record_exchange:
        fn(ctx.client_conn, ctx.server_conn, data)


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
        "id": new_id(),
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
