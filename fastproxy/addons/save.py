"""Recording: every finished flow is written to ``save_stream_file`` (``-w FILE``).

A flow is recorded once, when it is over: an HTTP flow at `response`, or at `error` if it
failed before its response was complete; a WebSocket connection (an HTTP flow with
``flow.websocket``) at `websocket_end` / `websocket_error`; a TCP flow at `tcp_end` /
`tcp_error`. The flow is snapshotted (pickled) on the event loop, so later changes don't
leak into the recording; encoding and writing happen in the recorder's writer process
(`fastproxy.io.recorder`). Without ``save_stream_file`` the addon is idle: ``listening``
is False, so it costs the proxy nothing.

An unwritable file is fatal at start-up (`preflight`, called by the CLI); a write that
fails later (disk full) is logged and the proxy goes on serving.

HTTP/1 exchanges need no flow to be recorded: while Save is the only addon listening to
HTTP events, the proxy stays on its fast path and hands Save each exchange as a tuple
(`record_exchange`, `fastproxy.io.capture`); the writer process builds the flow state.

With ``--workers N`` (N > 1) worker *i* writes ``FILE.w<i>`` (`worker_path`), so no two
processes share a file; ``fastproxy read FILE`` reads them all.
"""

from __future__ import annotations

import os
from typing import Any

from fastproxy.io.recorder import Recorder
from fastproxy.log import logger
from fastproxy.options import MiB, OptionsError

_RECORDING_OPTIONS = {"save_stream_file", "workers", "worker_index"}


def preflight(options: Any) -> None:
    """Raise `OptionsError` now if ``save_stream_file`` cannot be written (or appended to).

    The CLI calls this before it starts serving: `configure` runs inside the proxy, where an
    addon's error is only logged, and a recording that silently never happens is worse
    than not starting.
    """
    spec = options.save_stream_file
    if not spec:
        return
    append = spec.startswith("+")
    base = spec[1:] if append else spec
    for index in range(max(options.workers, 1)):
        path = worker_path(base, options.workers, index)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        except OSError as e:
            raise OptionsError(f"cannot record flows to {path}: {e.strerror or e}") from e


def worker_path(path: str, workers: int, worker_index: int) -> str:
    """The file worker ``worker_index`` of ``workers`` records to."""
    return f"{path}.w{worker_index}" if workers > 1 else path


class Save:
    """Streams finished flows to a flow file in mitmproxy's format."""

    records_exchanges = True
    """fastproxy-internal: `record_exchange` takes HTTP/1 exchanges the proxy captured
    without building flows (`fastproxy.io.capture`). While no other addon listens to
    HTTP events, recording keeps the fast path; ``response`` / ``error`` below then only
    see the flows built anyway (HTTP/2, WebSocket handshakes)."""

    def __init__(self) -> None:
        self._recorder: Recorder | None = None
        self.listening = False  # idle (left out of every event) until a file is given

    def load(self, loader: Any) -> None:
        loader.add_option(
            "save_stream_file", str, None,
            "Record finished flows to this file (mitmproxy's flow format). "
            "A leading '+' appends to an existing file.")
        loader.add_option(
            "save_body_limit", int, 16 * MiB,
            "Longest request or response body recorded whole; longer ones are cut to this "
            "many bytes and marked in the flow's metadata and comment.")

    def configure(self, options: Any, updated: set[str]) -> None:
        if updated & _RECORDING_OPTIONS:
            self._close()
            if options.save_stream_file:
                self._recorder = self._open(options)
        if self._recorder is not None and "save_body_limit" in updated:
            self._recorder.body_limit = options.save_body_limit
        self.listening = self._recorder is not None
        # The proxy reads `record_exchange` when it recomputes its listeners, after this:
        # it then calls the recorder's C sender with no Python frame in between.
        if self._recorder is not None:
            self.record_exchange = self._recorder.add_exchange
        else:
            vars(self).pop("record_exchange", None)

    def _open(self, options: Any) -> Recorder:
        spec: str = options.save_stream_file
        append = spec.startswith("+")
        path = worker_path(spec[1:] if append else spec, options.workers, options.worker_index)
        try:
            return Recorder(path, append=append, body_limit=options.save_body_limit,
                            on_error=self._report)
        except OSError as e:
            raise OptionsError(f"cannot record flows to {path}: {e.strerror or e}") from e

    def record_exchange(self, client_conn: Any, server_conn: Any, data: tuple) -> None:
        """An exchange `fastproxy.io.capture` captured (while recording, the instance's
        attribute is the recorder's own `add_exchange` instead: see `configure`)."""
        if self._recorder is not None:
            self._recorder.add_exchange(client_conn, server_conn, data)

    def response(self, flow: Any) -> None:
        if flow.websocket is None:  # a WebSocket connection is recorded when it ends
            self._record(flow)

    def error(self, flow: Any) -> None:
        # After a complete response the flow was recorded at `response` already.
        if flow.response is None or flow.response.timestamp_end is None:
            self._record(flow)

    def websocket_end(self, flow: Any) -> None:
        self._record(flow)

    def websocket_error(self, flow: Any) -> None:
        self._record(flow)

    def tcp_end(self, flow: Any) -> None:
        self._record(flow)

    def tcp_error(self, flow: Any) -> None:
        self._record(flow)

    def done(self) -> None:
        self._close()

    def _record(self, flow: Any) -> None:
        if self._recorder is not None:
            self._recorder.add_flow(flow)

    def _close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    def _report(self, message: str) -> None:
        """The recorder's errors (reported on the event loop, or at close)."""
        logger.error(message)
