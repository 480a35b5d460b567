"""Recording HTTP/1 exchanges from the fast path, without building flows.

Recording used to force the flow path for every request (an `HTTPFlow`, a `Request`, a
`Response`, gathered bodies, hook dispatch) and a snapshot of the flow on the loop. When
the only HTTP listener is a recorder that takes raw exchanges (an addon with
``records_exchanges = True`` and a ``record_exchange(client_conn, server_conn, exchange)``
method, such as `fastproxy.addons.save.Save`), the addon manager says so
(``listeners.record_exchange``, and ``listeners.http_flows`` stays False), and
`Exchange.run_fast` keeps, per exchange, only what the recorded flow needs, in a `Capture`
(`Capture.start`; in C, `fastproxy.io._handover`): the times, the response head and the
bodies (the relay hands each piece with its transfer framing to the body's tee, made by
`tee`). The header fields are handed over as the heads came in (`Head.raw`, one copy of a
few hundred bytes): the encoder splits them again (`fastproxy._core.head_fields`) only
for fields it has not encoded before. A response body with a Content-Length within the
limit needs no tee object: the `Capture` takes its pieces itself. `Capture.record` hands
the exchange to the recorders with its two connections: as one flat tuple of bytes, str,
ints and floats (`Capture.data`), whose fields are those `exchange_state` unpacks, or
packed straight into the `ExchangeSender`'s buffer.

The writer process encodes the exchange (`fastproxy.io._encode`, in C) as the state dict
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

from typing import Any

from fastproxy._core import head_fields
from fastproxy.flow import FLOW_FORMAT_VERSION
from fastproxy.ids import new_id
from fastproxy.io.bodies import BodyTee, dechunk, mark_truncated


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
    if type(fields) is bytes:  # the raw heads, as `Capture` keeps them
        fields = head_fields(fields)
    if type(resp_fields) is bytes:
        resp_fields = head_fields(resp_fields)
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
