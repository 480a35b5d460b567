"""Recording: every finished flow is written to ``save_stream_file`` (``-w FILE``).

A flow is recorded once, when it is over: an HTTP flow at `response`, or at `error` if it
failed before its response was complete; a WebSocket connection (an HTTP flow with
``flow.websocket``) at `websocket_end` / `websocket_error`; a TCP flow at `tcp_end` /
`tcp_error`. The flow is snapshotted with ``get_state()`` on the event loop, so later
changes don't leak into the recording; encoding and writing happen on the recorder's
thread (`fastproxy.io.recorder`).

With ``--workers N`` (N > 1) worker *i* writes ``FILE.w<i>`` (`worker_path`), so no two
processes share a file; ``fastproxy read FILE`` reads them all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastproxy.io.recorder import Recorder
from fastproxy.log import logger
from fastproxy.options import MiB, OptionsError

_RECORDING_OPTIONS = {"save_stream_file", "workers", "worker_index"}


def worker_path(path: str, workers: int, worker_index: int) -> str:
    """The file worker ``worker_index`` of ``workers`` records to."""
    return f"{path}.w{worker_index}" if workers > 1 else path


class Save:
    """Streams finished flows to a flow file in mitmproxy's format."""

    def __init__(self) -> None:
        self._recorder: Recorder | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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

    def _open(self, options: Any) -> Recorder:
        spec: str = options.save_stream_file
        append = spec.startswith("+")
        path = worker_path(spec[1:] if append else spec, options.workers, options.worker_index)
        try:
            return Recorder(path, append=append, body_limit=options.save_body_limit,
                            on_error=self._report)
        except OSError as e:
            raise OptionsError(f"cannot record flows to {path}: {e.strerror or e}") from e

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
        if self._recorder is None:
            return
        if self._loop is None:
            self._loop = _running_loop()
        self._recorder.add(flow.get_state())

    def _close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    def _report(self, message: str) -> None:
        """The recorder's errors (from its thread), logged on the event loop's thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(logger.error, message)
        else:
            logger.error(message)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
