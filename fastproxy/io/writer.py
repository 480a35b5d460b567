"""The recorder's writer process: ``python -m fastproxy.io.writer END_FD FILE_FD RING_FD``.

It takes messages from the shared ring ``RING_FD`` (`fastproxy.io._ring`; each message a
header, `frame`: the payload's 4-byte big-endian length and its kind byte; then the
payload), turns each flow into mitmproxy's state dict, truncates its bodies, encodes it as a
tnetstring and appends it to ``FILE_FD``, batching whatever has arrived into one
``write``. Nothing comes through the pipe ``END_FD``: its end of input says that the proxy
is gone, closed by the proxy or, after ``kill -9``, by the kernel. The writer then takes
what is left in the ring, writes it and stops, so every flow the proxy handed over is on
disk.

A message of kind `PACKED` is what the proxy's `fastproxy.io._handover.ExchangeSender`
queued in one loop iteration: messages of the kinds below, packed, whose exchanges are
encoded from the packed bytes in place (`FlowBuffer.packed`) and the rest unpacked. A
message of kind `PICKLED` is one of these, pickled:

Messages (tuples):
  ("conn", key, state)     a connection's state, referenced by later flows by its key (a
                           number the proxy's `ExchangeSender.conn_key` gives it)
  ("flow", state, ckey, skey)  a flow state whose client_conn/server_conn are those keys
                           (None: the state carries its own)
  (data, ckey, skey)       an HTTP/1 exchange captured without a flow
                           (`fastproxy.io.capture`; its fields: `fastproxy.io.flowstate`),
                           encoded here by the C encoder (`fastproxy.io._encode`)
                           straight into the batch's buffer
  ("limit", n)             body limit from now on (None: none)
  ("unconnected", state)   the state of a server never connected to (a new id each use),
                           for flows that failed before any upstream: the proxy sends it
                           first, so that this process never imports the proxy's classes
  ("forget",)              drop the connection states (the proxy's cache was cleared)

Errors go to stdout, one line each, for the proxy to log. SIGINT and SIGTERM are ignored:
the proxy decides when recording ends, by closing the pipe. This process imports nothing
from `fastproxy.proxy` (tests/test_flowstate.py checks it).
"""

from __future__ import annotations

import mmap
import os
import pickle
import signal
import sys
import time

from fastproxy.ids import new_id
from fastproxy.io import tnetstring
from fastproxy.io._encode import FlowBuffer
from fastproxy.io._ring import Ring
from fastproxy.io.bodies import truncate_bodies
from fastproxy.io.flowstate import exchange_state

HEADER = 5
PACKED, PICKLED = ord("p"), ord("m")
READ_SIZE = 1 << 20
MAX_CACHED_HEADERS = 1024
BATCH_BYTES = 256 << 10
BATCH_WAIT = 0.005
"""After taking less than BATCH_BYTES, the writer waits this long (seconds) for more: a
few large takes and writes instead of one per flow cost the machine (and the proxy on it)
far less. Nothing is lost meanwhile: the flows wait in the ring, and the writer drains it
at end of input whatever happened to the proxy."""


class Writer:
    """Decodes messages and appends encoded flows to the file descriptor ``fd``."""

    def __init__(self, fd: int, out=sys.stdout) -> None:
        self.fd = fd
        self.out = out
        self.good = os.lseek(fd, 0, os.SEEK_END)  # where the last complete flow ends
        self.failing = False
        self.limit: int | None = None
        self.unconnected: dict | None = None  # the ("unconnected", state) message's
        self.conns: dict = {}
        self.headers: dict[tuple, bytes] = {}
        self.buffer = FlowBuffer()

    def handle(self, messages: list[tuple[int, memoryview]]) -> None:
        """Encode the flows among ``messages`` (`split_messages`) and write them with one
        call."""
        buffer, count = self.buffer, 0
        for kind, payload in messages:
            try:
                if kind == PACKED:  # exchanges encoded in C, the rest to `apply`
                    count += buffer.packed(payload, self.conns, self.limit, self.apply_one)
                else:
                    count += self.apply_one(pickle.loads(payload))
            except Exception as e:  # noqa: BLE001
                self.report(f"bad message: {e!r}")
        if len(buffer):
            with memoryview(buffer) as encoded:  # written from the buffer: no copy
                self.write(encoded, count)
            buffer.clear()

    def apply_one(self, message: tuple) -> int:
        """`apply`, reporting what fails: one bad flow must not stop the others."""
        try:
            return self.apply(message)
        except Exception as e:  # noqa: BLE001
            self.report(str(e) if isinstance(e, ValueError) else f"bad message: {e!r}")
            return 0

    def apply(self, message: tuple) -> int:
        """Act on one message; how many flows it appended to the buffer (0 or 1)."""
        kind = message[0]
        if type(kind) is tuple:  # an exchange: the most frequent by far
            return self.exchange(*message)
        if kind == "flow":
            _, state, ckey, skey = message
            if ckey is not None:
                state["client_conn"] = self.conns[ckey]
            if skey is not None:
                state["server_conn"] = self.conns[skey]
            elif state["server_conn"] is None:  # failed before any upstream: as mitmproxy
                state["server_conn"] = self.unconnected_server()
            try:
                if self.limit is not None:
                    truncate_bodies(state, self.limit)
                self.reuse_headers(state)
                self.buffer.append(tnetstring.dumps(state))
            except Exception as e:  # noqa: BLE001 - e.g. an object an addon put in metadata
                raise ValueError(f"cannot record flow {state.get('id')}: {e}") from None
            return 1
        if kind == "conn":  # encoded once here, not once per flow
            self.conns[message[1]] = tnetstring.Encoded(tnetstring.dumps(message[2]))
        elif kind == "limit":
            self.limit = message[1]
        elif kind == "unconnected":
            self.unconnected = message[1]
        elif kind == "forget":
            self.conns.clear()
        return 0

    def exchange(self, data: tuple, ckey: int, skey: int | None) -> int:
        """Encode a captured exchange; in Python only when a body must be cut (rare)."""
        client = self.conns[ckey]
        server = self.conns[skey] if skey is not None else \
            tnetstring.Encoded(tnetstring.dumps(self.unconnected_server()))
        if not self.buffer.exchange(data, client, server, self.limit):
            self.buffer.append(tnetstring.dumps(exchange_state(data, client, server,
                                                               self.limit)))
        return 1

    def unconnected_server(self) -> dict:
        """The state of a server never connected to, as ``Server(address=None)`` has it."""
        if self.unconnected is None:
            raise ValueError("no state for an unconnected server was sent")
        return {**self.unconnected, "id": new_id()}

    def reuse_headers(self, state: dict) -> None:
        """Put in the encoding of header fields seen before: a client sends the same
        request headers again and again, a server mostly the same response headers."""
        cache = self.headers
        for side in ("request", "response"):
            message = state.get(side)
            fields = message and message.get("headers")
            if type(fields) is not tuple:
                continue
            encoded = cache.get(fields)
            if encoded is None:
                if len(cache) >= MAX_CACHED_HEADERS:
                    cache.clear()
                encoded = cache[fields] = tnetstring.Encoded(tnetstring.dumps(fields))
            message["headers"] = encoded

    def write(self, data: bytes | memoryview, count: int) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            self.failed(e, count)
            return
        self.good += len(data)
        if self.failing:
            self.failing = False
            self.report("recording works again")

    def failed(self, e: OSError, count: int) -> None:
        # Report once per run of failures (disk full), not once per batch.
        if not self.failing:
            self.report(f"cannot write flows: {e.strerror or e} "
                        f"({count} flows lost; retrying with the next ones)")
        self.failing = True
        try:
            os.ftruncate(self.fd, self.good)  # drop the torn part of the failed write
            os.lseek(self.fd, self.good, os.SEEK_SET)
        except OSError:
            pass  # readers stop at the tear; appending later cuts it off

    def report(self, message: str) -> None:
        try:
            print(message.replace("\n", " "), file=self.out, flush=True)
        except OSError:
            pass  # nobody listens any more: the proxy is gone


def frame(kind: int, size: int) -> bytes:
    """The header that goes before a payload of ``size`` bytes in the ring."""
    return size.to_bytes(4, "big") + bytes((kind,))


def split_messages(data: memoryview) -> tuple[list[tuple[int, memoryview]], int]:
    """The complete messages at the front of ``data``, as (kind, payload) with the payload
    a view into ``data``, not a copy; and where they end."""
    messages, pos, end = [], 0, len(data)
    while end - pos >= HEADER:
        size = int.from_bytes(data[pos:pos + 4], "big")
        if end - pos - HEADER < size:
            break
        messages.append((data[pos + 4], data[pos + HEADER:pos + HEADER + size]))
        pos += HEADER + size
    return messages, pos


class Inbox:
    """The ring's bytes, taken into one buffer that every take reuses: a new megabyte for
    each cost the writer page faults, and joining and cutting it copies. ``end_fd`` is the
    pipe whose end of input ends the ring's."""

    def __init__(self, ring: Ring, end_fd: int, size: int = READ_SIZE) -> None:
        self.ring = ring
        self.end_fd = end_fd
        self.ended = False
        self.buffer = bytearray(size)
        self.filled = 0
        os.set_blocking(end_fd, False)

    def read(self) -> int:
        """Take what the ring has (waiting for some); 0 at end of input."""
        if self.filled == len(self.buffer):  # one message larger than the buffer
            self.buffer.extend(bytes(len(self.buffer)))
        while True:
            with memoryview(self.buffer) as view:
                n = self.ring.take(view[self.filled:])
            if n or self.ended:
                self.filled += n
                return n
            try:
                # Checked after an empty take, and followed by another: the proxy puts
                # everything before it closes the pipe.
                self.ended = os.read(self.end_fd, 1) == b""
            except BlockingIOError:
                time.sleep(BATCH_WAIT)

    def handle(self, writer: Writer) -> None:
        """Hand the complete messages read to ``writer``; keep the incomplete rest."""
        with memoryview(self.buffer) as view:
            messages, end = split_messages(view[:self.filled])
            writer.handle(messages)
            del messages  # the views into the buffer, before it moves
        rest = self.filled - end
        self.buffer[:rest] = self.buffer[end:self.filled]
        self.filled = rest


def run(end_fd: int, file_fd: int, ring_fd: int) -> int:
    with open(ring_fd, "r+b") as fo:
        ring = Ring(mmap.mmap(fo.fileno(), 0))
    writer = Writer(file_fd)
    inbox = Inbox(ring, end_fd)
    while True:
        n = inbox.read()
        if not n:
            break
        inbox.handle(writer)
        if n < BATCH_BYTES:
            time.sleep(BATCH_WAIT)
    if inbox.filled:  # the proxy died in the middle of handing a flow over
        writer.report(f"the last flow arrived incomplete ({inbox.filled} bytes), "
                      "not recorded")
    os.close(file_fd)
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return run(int(argv[0]), int(argv[1]), int(argv[2]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
