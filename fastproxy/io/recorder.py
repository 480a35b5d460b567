"""Recording flows to a file from a writer process, off the event loop and off the GIL.

A thread would not help: encoding a flow (tnetstring, ~45 µs) holds the GIL the proxy's
loop needs. So each proxy process starts one writer process (`fastproxy.io.writer`) and
hands it each finished flow through a pipe. The loop pays for a snapshot of the flow and
a pickle (a few µs: connection states are pickled once per connection, not per flow, see
`Snapshots`); the writer truncates bodies, encodes and writes, batching what has arrived.
HTTP/1 exchanges recorded from the fast path (`add_exchange`, `fastproxy.proxy.capture`)
are plain tuples: they are queued and pickled together once per loop iteration (pickle
protocol 5, one ``dumps`` for the batch), and the writer encodes their flow states.
Messages queued in one loop iteration go out with one non-blocking ``write``; if the
writer falls behind, they wait in memory (up to `MAX_PENDING` bytes, then flows are
dropped and that is reported) and the loop never blocks.

Nothing is fsync'ed. The writer exits only at end of input, having written all it
received: when the proxy closes the pipe (`close`, at exit, after SIGINT/SIGTERM), and also
when the proxy is killed with ``kill -9``, so a recording always ends after a complete
flow. A write that fails (disk full) is reported through ``on_error`` and the file is cut
back to its last complete flow; later flows are still written. A file that cannot be
opened is an `OSError` from `Recorder.__init__`, at start-up.
"""

from __future__ import annotations

import asyncio
import atexit
import fcntl
import os
import pickle
import subprocess
import sys
from typing import Any, Callable

from fastproxy.flow import FLOW_FORMAT_VERSION as _VERSION
from fastproxy.io import flowfile

MAX_PENDING = 256 << 20
"""Bytes of handed-over flows that may wait for the writer before new flows are dropped."""

_HEADER = 4
PIPE_SIZE = 1 << 20


class Recorder:
    """Writes flows to ``path`` through a writer process.

    ``append`` adds to an existing file, first cutting off a torn tail left by a crash.
    ``body_limit`` truncates request and response bodies to that many bytes, noting it in
    the recorded flow (see `truncate_bodies`). ``on_error(message)`` is called on the event
    loop (or in `close`) when recording fails.
    """

    def __init__(self, path: str, *, append: bool = False, body_limit: int | None = None,
                 on_error: Callable[[str], None]) -> None:
        self.path = path
        self._on_error = on_error
        self._snapshots = Snapshots(self._send, self._queue)
        self._batch: list[tuple] = []  # messages to pickle together at the next flush
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._unsent = memoryview(b"")  # the part of a write the pipe did not take
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._dropping = False
        self._body_limit = body_limit
        file_fd = _open(path, append)
        try:
            self._proc, self._fd = _spawn(file_fd)
        finally:
            os.close(file_fd)  # the writer has its own copy
        self._errors = self._proc.stdout
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
            self._snapshots.send_flow(flow)
        except Exception as e:  # e.g. an addon put an unpicklable object into metadata
            self._on_error(f"cannot record flow {flow.id}: {e}")

    def add_exchange(self, client_conn: Any, server_conn: Any, data: tuple) -> None:
        """Hand over an HTTP/1 exchange captured without a flow (`fastproxy.proxy.capture`);
        the writer builds its flow state. Never blocks, never raises."""
        try:
            self._snapshots.send_exchange(client_conn, server_conn, data)
        except Exception as e:
            self._on_error(f"cannot record an exchange: {e}")

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
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_writer(self._fd)
            self._loop.remove_reader(self._errors.fileno())
        os.set_blocking(self._fd, True)
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
        if self._batch:  # keep the order
            self._seal()
        self._append(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _queue(self, message: tuple) -> None:
        """Hand ``message`` over at the end of this loop iteration, pickled with the others
        queued meanwhile (one pickle for many is several times cheaper). Only for messages
        nothing changes afterwards: captured exchanges, fresh connection states."""
        self._batch.append(message)
        if not self._flush_scheduled:
            self._schedule_flush()

    def _seal(self) -> None:
        """Pickle the queued messages as one (a list), after what is pending."""
        batch, self._batch = self._batch, []
        try:  # with the memo: the connection ids repeated in a batch are written once
            data = pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - never raise into the loop
            self._on_error(f"cannot record {len(batch)} exchanges: {e}")
            return
        self._append(data)

    def _append(self, data: bytes) -> None:
        if self._pending_size + len(data) > MAX_PENDING:
            self._drop()
            return
        self._pending.append(len(data).to_bytes(_HEADER, "big"))
        self._pending.append(data)
        self._pending_size += len(data) + _HEADER
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
        self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write what is pending without blocking; the rest when the pipe has room."""
        if self._batch:
            self._seal()
        self._flush_scheduled = False
        if self._fd < 0:
            return
        try:
            if self._unsent:
                self._unsent = self._unsent[_write_some(self._fd, self._unsent):]
            if not self._unsent and self._pending:
                data = b"".join(self._pending)
                self._pending.clear()
                self._unsent = memoryview(data)[_write_some(self._fd, data):]
        except OSError as e:
            self._pending.clear()
            self._unsent = memoryview(b"")
            self._report(f"writer process failed ({e.strerror or e}); flows are lost")
            return
        self._pending_size = len(self._unsent) + sum(map(len, self._pending))
        if self._unsent:
            self._loop.add_writer(self._fd, self._flush)
        else:
            self._loop.remove_writer(self._fd)
            if self._dropping:
                self._dropping = False
                self._report("the writer caught up; recording every flow again")

    def _write_all(self) -> None:
        if self._batch:
            self._seal()
        data = bytes(self._unsent) + b"".join(self._pending)
        self._unsent, self._pending, self._pending_size = memoryview(b""), [], 0
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def _drop(self) -> None:
        if not self._dropping:
            self._dropping = True
            self._report(f"recording to {self.path} falls behind: "
                         f"{self._pending_size >> 20} MiB waiting; dropping flows")

    # -- the writer's reports ----------------------------------------------------------

    def _read_error(self) -> None:
        line = self._errors.readline()
        if not line:
            self._loop.remove_reader(self._errors.fileno())
            return
        self._report(line)

    def _report(self, line: str) -> None:
        line = line.rstrip("\n")
        if not line.startswith("recording to "):
            line = f"recording to {self.path}: {line}"
        self._on_error(line)


def _write_some(fd: int, data) -> int:
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


def _spawn(file_fd: int) -> tuple[subprocess.Popen, int]:
    """Start the writer process; return it and the (non-blocking) end of its input pipe."""
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastproxy.io.writer", str(read_fd), str(file_fd)],
            pass_fds=(read_fd, file_fd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            text=True, start_new_session=True)  # Ctrl-C goes to the proxy, not the writer
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    os.set_blocking(write_fd, False)
    try:  # room for the writer's pauses (`fastproxy.io.writer.BATCH_WAIT`)
        fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except OSError:
        pass  # not Linux, or over /proc/sys/fs/pipe-max-size: the default size works too
    return proc, write_fd


class Snapshots:
    """Pickled snapshots of finished flows, cheap enough to take on the event loop.

    A flow's state holds its client and server connections' states, the same for every
    flow of a keep-alive connection and the bulk of the work. They are sent to the writer
    once per connection (again when one of their changing fields changes) and referenced.
    HTTP flows are snapshotted here, field for field as ``HTTPFlow.get_state``
    (tests/test_recorder.py checks that they agree); other flows use ``get_state``.
    """

    MAX_CONNS = 4096

    def __init__(self, send: Callable[[tuple], None],
                 queue: Callable[[tuple], None] | None = None) -> None:
        self._send = send
        self._queue = send if queue is None else queue  # for what nothing changes later
        self._conns: dict[str, tuple] = {}  # connection id -> fingerprint

    def send_flow(self, flow: Any) -> None:
        if len(self._conns) >= self.MAX_CONNS:  # before, so both keys below stay known
            self._conns.clear()
            self._send(("forget",))
        client = self._conn_key(flow.client_conn)
        server = self._conn_key(flow.server_conn)
        self._send(("flow", self.flow_state(flow), client, server))

    def send_exchange(self, client_conn: Any, server_conn: Any, data: tuple) -> None:
        """An exchange `fastproxy.proxy.capture` captured (plain data, nothing changes it
        later: queued as ``(data, client key, server key)``), with its connections.
        The connections are checked inline, for the fields the proxy changes after set-up
        (see `_fingerprint`): this runs once per request."""
        queue, conns = self._queue, self._conns
        if len(conns) >= self.MAX_CONNS:
            conns.clear()
            queue(("forget",))
        ckey = client_conn.id
        seen = conns.get(ckey)
        if seen is None or seen[0] != client_conn.timestamp_end or \
                seen[1] != client_conn.timestamp_tls_setup or seen[2] != client_conn.error:
            conns[ckey] = _fingerprint(client_conn)
            queue(("conn", ckey, client_conn.get_state()))
        if server_conn is None:
            queue((data, ckey, None))
            return
        skey = server_conn.id
        seen = conns.get(skey)
        if seen is None or seen[0] != server_conn.timestamp_end or \
                seen[1] != server_conn.timestamp_tls_setup or seen[2] != server_conn.error \
                or seen[3] != server_conn.timestamp_tcp_setup:
            conns[skey] = _fingerprint(server_conn)
            queue(("conn", skey, server_conn.get_state()))
        queue((data, ckey, skey))

    def _conn_key(self, conn: Any, send: Callable[[tuple], None] | None = None) -> str | None:
        if conn is None:
            return None
        seen = self._conns.get(conn.id)
        fingerprint = _fingerprint(conn)
        if seen != fingerprint:
            self._conns[conn.id] = fingerprint
            (send or self._send)(("conn", conn.id, conn.get_state()))
        return conn.id

    @staticmethod
    def flow_state(flow: Any) -> dict:
        """``flow.get_state()`` without the connections (the writer puts them in)."""
        if flow.type != "http":
            state = flow.get_state()
            state["client_conn"] = state["server_conn"] = None
            return state
        error = flow.error
        return {
            "version": _VERSION,
            "type": "http",
            "id": flow.id,
            "error": None if error is None else error.get_state(),
            "client_conn": None,
            "server_conn": None,
            "intercepted": flow.intercepted,
            "is_replay": flow.is_replay,
            "marked": flow.marked,
            "metadata": flow.metadata or {},  # pickled now: later changes don't leak
            "comment": flow.comment,
            "timestamp_created": flow.timestamp_created,
            "backup": flow._backup,
            "request": flow.request.get_state(),
            "response": None if flow.response is None else flow.response.get_state(),
            "websocket": None if flow.websocket is None else flow.websocket.get_state(),
        }


def _fingerprint(conn: Any) -> tuple:
    """What tells that a connection's state changed since it was sent: the proxy sets the
    fields that change after a connection is accepted or opened together with one of
    these (peername and sockname with timestamp_tcp_setup, sni, alpn, tls_version and the
    certificates with timestamp_tls_setup: `upstream`, `layers.tls`), or at the end."""
    return (conn.timestamp_end, conn.timestamp_tls_setup, conn.error,
            getattr(conn, "timestamp_tcp_setup", None))


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
        mark_truncated(state, cut, limit)


def mark_truncated(state: dict, cut: dict[str, int], limit: int) -> None:
    """Note in a flow state that bodies were cut to ``limit``: ``cut`` maps "request" /
    "response" to their original sizes."""
    state["metadata"] = {**state.get("metadata", {}), TRUNCATED_KEY: cut}
    note = "; ".join(f"{side} body truncated to {limit} of {size} bytes"
                     for side, size in cut.items())
    state["comment"] = f"{state['comment']}\n{note}" if state.get("comment") else note


class BodyTee:
    """Keeps up to ``limit`` bytes of a body the proxy streams through without gathering it
    (``flow.response.stream = True``), so that a recording still has it.

    The HTTP/1 layer `add`s each piece as received, with its transfer framing, and calls
    `attach` at the end: the body, de-chunked, becomes the message's ``raw_content``; if it
    was longer than ``limit``, the flow is marked as `truncate_bodies` marks it.
    """

    __slots__ = ("limit", "pieces", "kept", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pieces: list[bytes] = []
        self.kept = 0
        self.size = 0

    def add(self, data: bytes) -> None:
        self.size += len(data)
        room = self.limit - self.kept
        if room > 0:
            piece = data if len(data) <= room else data[:room]
            self.pieces.append(piece)
            self.kept += len(piece)

    def attach(self, flow: Any, message: Any, side: str = "response") -> None:
        data = b"".join(self.pieces)
        if "chunked" in message.headers.get("transfer-encoding", "").lower():
            data = dechunk(data)
        message.raw_content = data
        if self.size > self.limit:
            flow.metadata[TRUNCATED_KEY] = {**flow.metadata.get(TRUNCATED_KEY, {}),
                                            side: self.size}
            note = f"{side} body truncated to {self.limit} of {self.size} bytes (streamed)"
            flow.comment = f"{flow.comment}\n{note}" if flow.comment else note


def dechunk(data: bytes) -> bytes:
    """The content of a chunked body (RFC 9112 §7.1), as far as ``data`` holds whole chunks
    or parts of one; extensions and trailers are dropped."""
    out, pos = [], 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        try:
            size = int(data[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError:
            break
        if size == 0:
            break
        start = eol + 2
        out.append(data[start:start + size])
        pos = start + size + 2
    return b"".join(out)
