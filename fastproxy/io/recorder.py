"""Recording flows to a file from a writer process, off the event loop's critical path.

Each proxy process starts one writer process (`fastproxy.io.writer`) and hands it what it
records through a ring in shared memory (`fastproxy.io._ring`); the writer encodes flows as
mitmproxy's tnetstring records and writes them, batching what has arrived. A thread would
not do: encoding a flow holds the GIL the proxy's loop needs. A pipe between the two only
tells the writer that the proxy is gone: nothing is written to it.

HTTP/1 exchanges recorded from the fast path (`fastproxy.io.capture`) are packed in C
as they finish, into the buffer of the recorder's `ExchangeSender` (`fastproxy.io._handover`),
with the state of each connection once (again when it changes); the writer encodes their
flow records from the packed bytes, in C too. Other flows (`add_flow`: the flow path's,
WebSocket, TCP) are snapshotted field for field as ``get_state`` and pickled on the loop.
What is queued in one loop iteration goes into the ring with one copy, no system call; if
the writer falls behind and the ring is full, it waits in memory (up to `MAX_PENDING`
bytes, then flows are dropped and that is reported), is tried again every `RETRY` seconds,
and the loop never blocks.

Nothing is fsync'ed. The writer exits only at end of input, having written all it
received: when the proxy closes the pipe (`close`, at exit, after SIGINT/SIGTERM), and also
when the proxy is killed with ``kill -9`` (the kernel closes the pipe; the ring stays
mapped in the writer), so a recording always ends after a complete flow. A write that
fails (disk full) is reported through ``on_error`` and the file is cut back to its last
complete flow; later flows are still written. A file that cannot be opened is an `OSError`
from `Recorder.__init__`, at start-up; a writer that dies is reported once, and flows are
not recorded after it.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import mmap
import os
import pickle
import subprocess
import sys
import time
from typing import Any, Callable

from fastproxy.connection import Server
from fastproxy.io import flowfile, flowstate
from fastproxy.io._handover import ExchangeSender
from fastproxy.io._ring import HEADER, Ring
from fastproxy.io.writer import PACKED, PICKLED, frame

MAX_PENDING = 256 << 20
"""Bytes of handed-over flows that may wait for the writer before new flows are dropped."""

RING_SIZE = 16 << 20
"""Bytes of the ring: about a second of small flows at full speed, room for the writer's
pauses (`fastproxy.io.writer.BATCH_WAIT`). Its pages are taken as it is first filled."""

RETRY = 0.005
"""Seconds before handing over again what did not fit in the ring."""

class Recorder:
    """Writes flows to ``path`` through a writer process.

    ``append`` adds to an existing file, first cutting off a torn tail left by a crash.
    ``body_limit`` truncates request and response bodies to that many bytes, noting it in
    the recorded flow (see `truncate_bodies`). ``on_error(message)`` is called on the event
    loop (or in `close`) when recording fails.

    ``add_exchange(client_conn, server_conn, data)`` records an HTTP/1 exchange captured
    without a flow (`fastproxy.io.capture`); it is the C `ExchangeSender` itself, so that
    an addon can hand it to the proxy as its ``record_exchange``. It never blocks or raises.
    """

    def __init__(self, path: str, *, append: bool = False, body_limit: int | None = None,
                 on_error: Callable[[str], None]) -> None:
        self.path = path
        self._on_error = on_error
        self.add_exchange = ExchangeSender(self._exchange_packed, on_error)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._unsent = memoryview(b"")  # the part of a hand-over the ring had no room for
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._retry: asyncio.TimerHandle | None = None
        self._writer_gone = False
        self._dropping = False
        self._body_limit = body_limit
        file_fd = _open(path, append)
        try:
            self._ring, ring_fd = _new_ring(RING_SIZE)
            try:
                self._proc, self._fd = _spawn(file_fd, ring_fd)
            finally:
                os.close(ring_fd)
        finally:
            os.close(file_fd)  # the writer has its own copies
        self._errors = self._proc.stdout
        self._send(("unconnected", Server(address=None).get_state()))
        self._send(("limit", body_limit))
        atexit.register(self.close)  # a normal interpreter exit still flushes

    @property
    def body_limit(self) -> int | None:
        return self._body_limit

    @body_limit.setter
    def body_limit(self, value: int | None) -> None:
        self._body_limit = value
        self._send(("limit", value))

    def add_flow(self, flow: Any) -> None:
        """Hand a finished flow over for writing. Never blocks, never raises."""
        try:
            sender = self.add_exchange  # it keeps track of the states the writer knows
            sender.make_room()
            conn_key = sender.conn_key
            client = None if flow.client_conn is None else conn_key(flow.client_conn)
            server = None if flow.server_conn is None else conn_key(flow.server_conn)
            self._send(("flow", flow_state(flow), client, server))
        except Exception as e:  # e.g. an addon put an unpicklable object into metadata
            self._on_error(f"cannot record flow {flow.id}: {e}")

    def add(self, state: dict) -> None:
        """Hand a flow's state dict over for writing (it is not copied: don't change it)."""
        try:
            self._send(("flow", state, None, None))
        except Exception as e:
            self._on_error(f"cannot record flow {state.get('id')}: {e}")

    def close(self) -> None:
        """Hand over everything pending, wait for the writer to write it. Idempotent."""
        if self._fd < 0:
            return
        atexit.unregister(self.close)
        if self._retry is not None:
            self._retry.cancel()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._errors.fileno())
        try:
            self._write_all()
        except OSError as e:  # the writer died
            self._on_error(f"recording to {self.path} failed: {e.strerror or e}")
        os.close(self._fd)
        self._fd = -1
        self._proc.wait()
        for line in self._errors:
            self._report(line)
        self._errors.close()

    # -- handing over ------------------------------------------------------------------

    def _send(self, message: tuple) -> None:
        """Hand ``message`` over now (pickled now: later changes to it don't leak)."""
        if len(self.add_exchange):  # keep the order
            self._seal()
        self._append(PICKLED, pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _exchange_packed(self) -> None:
        """The first exchange since the last hand-over: hand them over at the end of this
        loop iteration, together."""
        if not self._flush_scheduled:
            self._schedule_flush()

    def _seal(self) -> None:
        """Hand over what the `ExchangeSender` packed since the last time, as one message."""
        self._append(PACKED, self.add_exchange.take()[0])

    def _append(self, kind: int, data: bytes) -> None:
        if self._pending_size + len(data) > MAX_PENDING:
            self._drop()
            if kind == PACKED:  # connection states went with it: send them again
                self.add_exchange.forget()
            return
        header = frame(kind, len(data))
        self._pending.append(header)
        self._pending.append(data)
        self._pending_size += len(header) + len(data)
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (tests, tools): written at close
                return
            self._loop.add_reader(self._errors.fileno(), self._read_error)
        self._flush_scheduled = True
        if self._retry is None:  # else the retry flushes
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Hand over what is pending; what the ring has no room for, `RETRY` s later."""
        self._flush_scheduled = False
        self._retry = None
        if self._fd < 0:
            return
        if self._writer_gone:  # reported once (`_read_error`); nobody takes from the ring
            self._pending.clear()
            self._unsent = memoryview(b"")
            self._pending_size = 0
            self.add_exchange.clear()
            return
        if self._unsent:
            self._unsent = self._unsent[self._ring.put([self._unsent]):]
        if self._unsent:  # the ring is full: what was packed waits in line
            if len(self.add_exchange):
                self._seal()
        elif self._pending or len(self.add_exchange):
            self._unsent = self._hand_over_pending()
        self._pending_size = len(self._unsent) + sum(map(len, self._pending))
        if self._unsent:
            self._flush_scheduled = True
            self._retry = self._loop.call_later(RETRY, self._flush)
        elif self._dropping:
            self._dropping = False
            self._report("the writer caught up; recording every flow again")

    def _hand_over_pending(self) -> memoryview:
        """Put the pending messages, then what the `ExchangeSender` packed, into the ring;
        the exchanges straight from the sender's buffer. Returns what the ring had no room
        for (copied: the buffer is reused)."""
        sender = self.add_exchange
        parts, self._pending = self._pending, []
        if len(sender):
            parts += (frame(PACKED, len(sender)), sender.view())
        try:
            written = self._ring.put(parts)
            if written == sum(map(len, parts)):
                return memoryview(b"")
            return memoryview(b"".join(parts))[written:]
        finally:
            for part in parts:
                if type(part) is memoryview:
                    part.release()
            sender.clear()

    def _write_all(self) -> None:
        """Hand over everything, waiting for room in the ring while the writer lives."""
        if len(self.add_exchange):
            self._seal()
        data = bytes(self._unsent) + b"".join(self._pending)
        self._unsent, self._pending, self._pending_size = memoryview(b""), [], 0
        view = memoryview(data)
        while view:
            view = view[self._ring.put([view]):]
            if view:
                if self._proc.poll() is not None:
                    raise BrokenPipeError(errno.EPIPE, "the writer process exited")
                time.sleep(RETRY)

    def _drop(self) -> None:
        if not self._dropping:
            self._dropping = True
            self._report(f"recording to {self.path} falls behind: "
                         f"{self._pending_size >> 20} MiB waiting; dropping flows")

    # -- the writer's reports ----------------------------------------------------------

    def _read_error(self) -> None:
        line = self._errors.readline()
        if not line:  # the writer exited: only `close` makes it exit while we record
            self._loop.remove_reader(self._errors.fileno())
            self._writer_gone = True
            status = self._proc.poll()
            self._report("the writer process exited" +
                         ("" if status is None else f" (status {status})") +
                         "; flows are not recorded from now on")
            return
        self._report(line)

    def _report(self, line: str) -> None:
        line = line.rstrip("\n")
        if not line.startswith("recording to "):
            line = f"recording to {self.path}: {line}"
        self._on_error(line)


def _new_ring(size: int) -> tuple[Ring, int]:
    """A ring of ``size`` bytes in shared memory, and the file descriptor the writer maps
    it by (a memfd; an unlinked temporary file where there is none)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("fastproxy-recording", os.MFD_CLOEXEC)
    else:  # not Linux: an unlinked temporary file, mapped, is shared memory too
        import tempfile
        with tempfile.TemporaryFile() as fo:
            fd = os.dup(fo.fileno())
    try:
        os.ftruncate(fd, HEADER + size)
        return Ring(mmap.mmap(fd, HEADER + size)), fd
    except BaseException:
        os.close(fd)
        raise


def _spawn(file_fd: int, ring_fd: int) -> tuple[subprocess.Popen, int]:
    """Start the writer process; return it and the end of the pipe whose closing (by
    `close`, or by the kernel when the proxy dies) ends its input."""
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastproxy.io.writer", str(read_fd), str(file_fd),
             str(ring_fd)],
            pass_fds=(read_fd, file_fd, ring_fd), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, text=True,
            start_new_session=True)  # Ctrl-C goes to the proxy, not the writer
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return proc, write_fd


def flow_state(flow: Any) -> dict:
    """``flow.get_state()`` without the connections (the writer puts them in): for HTTP
    flows, `fastproxy.io.flowstate.of_http_flow` (as ``HTTPFlow.get_state``) with the
    metadata copied by the pickle that follows."""
    if flow.type != "http":
        state = flow.get_state()
        state["client_conn"] = state["server_conn"] = None
        return state
    return flowstate.of_http_flow(flow, None, None, copied=False)


def _open(path: str, append: bool) -> int:
    """Open ``path`` for writing; when appending, cut a torn tail left by a crash."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (0 if append else os.O_TRUNC), 0o644)
    if append:
        with open(path, "rb") as fo:
            good = flowfile.valid_length(fo)
        if good != os.fstat(fd).st_size:
            os.ftruncate(fd, good)
    return fd
