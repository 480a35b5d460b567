"""Recording flows to a file from a background thread, off the event loop.

The loop thread only snapshots a finished flow (``flow.get_state()``, about 17 µs for a
small HTTP flow) and puts the dict on a queue. The writer thread truncates large bodies,
encodes (tnetstring, about 45 µs) and writes whatever has queued up with one ``write``
call, so a busy proxy gets large batches and an idle one writes each flow within
`BATCH_DELAY` seconds. Nothing is fsync'ed: a written batch survives ``kill -9`` (it is in
the kernel); flows still queued in memory do not, and the file then ends cleanly after the
last batch written.

A write that fails (disk full, I/O error) is reported through ``on_error`` and the file is
cut back to its last complete flow, so later batches still produce a readable file. A file
that cannot be opened is an `OSError` from `Recorder.__init__`, at start-up.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from typing import Any, Callable

from fastproxy.io import flowfile, tnetstring

BATCH_DELAY = 0.005
"""Seconds the writer waits after a small batch, letting more flows gather."""

MAX_BATCH = 1024
"""Most flows written with one ``write`` call."""

_STOP = object()


class Recorder:
    """Writes flow states to ``path`` from a daemon thread.

    ``append`` adds to an existing file, first cutting off a torn tail left by a crash.
    ``body_limit`` truncates request and response bodies to that many bytes, noting it in
    the recorded flow (see `truncate_bodies`). ``on_error(message)`` is called from the
    writer thread when writing fails.
    """

    def __init__(self, path: str, *, append: bool = False, body_limit: int | None = None,
                 on_error: Callable[[str], None]) -> None:
        self.path = path
        self.body_limit = body_limit
        self._on_error = on_error
        self._fd = _open(path, append)
        self._good = os.lseek(self._fd, 0, os.SEEK_END)  # where the last complete flow ends
        self._failing = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"recorder {path}", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a normal interpreter exit still flushes

    def add(self, state: dict) -> None:
        """Queue a finished flow's state dict for writing. Never blocks, never raises."""
        self._queue.put(state)

    def close(self) -> None:
        """Write everything queued, stop the thread and close the file. Idempotent."""
        if self._fd < 0:
            return
        atexit.unregister(self.close)
        self._queue.put(_STOP)
        self._thread.join()
        os.close(self._fd)
        self._fd = -1

    def _run(self) -> None:
        while True:
            batch, stopping = self._next_batch()
            if batch:
                self._write(b"".join(self._encode_all(batch)), len(batch))
            if stopping:
                return
            if len(batch) < MAX_BATCH:
                time.sleep(BATCH_DELAY)

    def _next_batch(self) -> tuple[list[dict], bool]:
        """Wait for a flow, then take what else is queued; also whether to stop after it."""
        batch: list[dict] = []
        item = self._queue.get()
        while item is not _STOP:
            batch.append(item)
            if len(batch) == MAX_BATCH:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _encode_all(self, batch: list[dict]):
        for state in batch:
            try:
                if self.body_limit is not None:
                    truncate_bodies(state, self.body_limit)
                yield tnetstring.dumps(state)
            except Exception as e:  # e.g. an addon put an object into flow.metadata
                self._on_error(f"cannot record flow {state.get('id')}: {e}")

    def _write(self, data: bytes, count: int) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            self._failed(e, count)
            return
        self._good += len(data)
        if self._failing:
            self._failing = False
            self._on_error(f"recording to {self.path} works again")

    def _failed(self, e: OSError, count: int) -> None:
        # Report once per run of failures, not once per batch.
        if not self._failing:
            self._on_error(f"cannot write flows to {self.path}: {e.strerror or e} "
                           f"({count} flows lost; retrying with the next ones)")
        self._failing = True
        try:
            os.ftruncate(self._fd, self._good)  # drop the torn part of the failed write
            os.lseek(self._fd, self._good, os.SEEK_SET)
        except OSError:
            pass  # the next successful write starts after the tear; readers stop there


def _open(path: str, append: bool) -> int:
    """Open ``path`` for writing; when appending, cut a torn tail left by a crash."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (0 if append else os.O_TRUNC), 0o644)
    if append:
        with open(path, "rb") as fo:
            good = flowfile.valid_length(fo)
        if good != os.fstat(fd).st_size:
            os.ftruncate(fd, good)
    return fd


TRUNCATED_KEY = "fastproxy.truncated"
"""flow.metadata key of recorded flows whose bodies were cut: {"request"|"response": size}."""


def truncate_bodies(state: dict, limit: int) -> None:
    """Cut request and response bodies in a flow state to ``limit`` bytes, and say so.

    The original sizes go to ``metadata["fastproxy.truncated"]`` and a line in the comment,
    which mitmproxy shows.
    """
    cut: dict[str, Any] = {}
    for side in ("request", "response"):
        message = state.get(side)
        content = message and message.get("content")
        if content is not None and len(content) > limit:
            message["content"] = content[:limit]
            cut[side] = len(content)
    if cut:
        state["metadata"] = {**state.get("metadata", {}), TRUNCATED_KEY: cut}
        note = "; ".join(f"{side} body truncated to {limit} of {size} bytes"
                         for side, size in cut.items())
        state["comment"] = f"{state['comment']}\n{note}" if state.get("comment") else note
