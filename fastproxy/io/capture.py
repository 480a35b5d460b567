"""Recording HTTP/1 exchanges from the fast path, without building flows: the loop's side.

An *exchange*, in recording, is one HTTP/1 request and its response (or error) recorded
without a flow; its fields are `fastproxy.io.flowstate.EXCHANGE`. (The HTTP/1 layer's
per-request state machine, `http1.Exchange`, is another thing: it calls this module.)

Recording used to force the flow path for every request (an `HTTPFlow`, a `Request`, a
`Response`, gathered bodies, hook dispatch) and a snapshot of the flow on the loop. When
the only HTTP listener is a recorder that takes raw exchanges (an addon with
``records_exchanges = True`` and a ``record_exchange(client_conn, server_conn, exchange)``
method, such as `fastproxy.addons.save.Save`), the addon manager says so
(``listeners.record_exchange``, and ``listeners.http_flows`` stays False), and the HTTP/1
layer's fast path (``run_fast``) keeps only what the recorded flow needs, in a `Capture`
(`Capture.start`; in C, `fastproxy.io._handover`): the times, the response head and the
bodies (the relay hands each piece with its transfer framing to the body's tee, made by
`tee`). The header fields are handed over as the heads came in (`Head.raw`, one copy of a
few hundred bytes): the encoder splits them again (`fastproxy._core.head_fields`) only
for fields it has not encoded before. A response body with a Content-Length within the
limit needs no tee object: the `Capture` takes its pieces itself. `Capture.record` hands
the exchange to the recorders with its two connections: as one flat tuple of bytes, str,
ints and floats (`Capture.data`, the `EXCHANGE` fields), or packed straight into the
`ExchangeSender`'s buffer.

The writer process encodes the exchange (`fastproxy.io._encode`, in C) as the state dict
`HTTPFlow.get_state()` gives for the same request on the flow path, key for key: the
layout of `fastproxy.io.flowstate`, which the encoder is checked against at import
(`flowstate.exchange_state` builds that dict in Python; tests/test_recorder.py compares
the encoded bytes). Bodies are de-chunked, the Host field rewritten as the flow path does
in reverse mode. Bodies longer than the limit are cut and marked as `truncate_bodies`
marks them (`exchange_state`, in Python: rare).

An exchange that fails (no upstream, the upstream closed, a connection lost in the middle
of a body) is recorded by the layer's ``fail`` with its error message, as the flow path
records the flow at ``error``.
"""

from __future__ import annotations

from typing import Any

from fastproxy.io.bodies import BodyTee


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
