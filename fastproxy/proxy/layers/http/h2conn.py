"""One HTTP/2 connection over an `Endpoint`, driven by h2 (RFC 9113).

Theory of operation. `H2Conn` feeds h2's state machine the received bytes (`pump()`,
`FEED_SIZE` at a time so that the abuse limits of `H2Limits` are checked between
pieces) and turns h2's events into per-stream state (`H2Stream`: a headers future, a
queue of body chunks, a window event). Flow control is end to end: received DATA is
acknowledged (the window reopened) only once it has been written to the other side and
that side's transport drained, so a slow receiver slows the sender down and memory stays
bounded by the windows. RST_STREAM ends one stream; GOAWAY stops new streams while the
others finish, and ends a connection that broke a limit (ENHANCE_YOUR_CALM).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack.exceptions
import hpack.hpack
import hpack.huffman_table
import hpack.table
import hyperframe.exceptions

from fastproxy.log import logger
from fastproxy.proxy.layers.http.h2fields import (
    MalformedHeaders,
    check_fields,
    parse_request_headers,
)
from fastproxy.proxy.streams import ConnectionGone, Endpoint

STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
MAX_CONCURRENT_STREAMS = 256
FEED_SIZE = 16384
"""Received bytes are given to h2 in pieces of at most this, so that the abuse limits
are checked every few hundred frames (h2 parses all it is given in one call)."""

class StreamReset(Exception):
    """The peer reset the stream (RST_STREAM) or the connection went away."""

    def __init__(self, message: str, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        super().__init__(message)
        self.code = code


class ChunkQueue:
    """A stream's received body: (bytes, flow-controlled length) per DATA frame, then None
    at END_STREAM (or a StreamReset). One reader; lighter than an asyncio.Queue."""

    __slots__ = ("items", "loop", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: deque = deque()
        self.waiter: asyncio.Future | None = None
        self.loop = loop

    def put_nowait(self, item) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self):
        items = self.items
        while not items:
            waiter = self.waiter = self.loop.create_future()
            await waiter
        return items.popleft()

    def at_end(self) -> bool:
        """Whether END_STREAM is the next item (the body is all here)."""
        return bool(self.items) and self.items[0] is None

    def empty(self) -> bool:
        return not self.items

    def qsize(self) -> int:
        return len(self.items)


class H2Stream:
    """One stream's received state: its headers, its body chunks, its send window."""

    __slots__ = ("data", "ended", "error", "headers", "id", "trailers", "window")

    def __init__(self, stream_id: int, loop: asyncio.AbstractEventLoop) -> None:
        self.id = stream_id
        self.headers: asyncio.Future = loop.create_future()
        self.data = ChunkQueue(loop)
        self.window: asyncio.Future | None = None
        """Set while a sender waits for the peer's window to open."""
        self.trailers: list | None = None
        self.error: StreamReset | None = None
        self.ended = False

    def window_opened(self) -> None:
        waiter = self.window
        if waiter is not None:
            self.window = None
            if not waiter.done():
                waiter.set_result(None)

    def fail(self, error: StreamReset) -> None:
        if self.error is None:
            self.error = error
        if not self.headers.done():
            self.headers.set_exception(error)
            self.headers.exception()  # retrieved: no "never retrieved" warning
        self.data.put_nowait(error)
        self.window_opened()


# -- header checks ------------------------------------------------------------------------
# h2's own inbound validation (validate_inbound_headers) costs more than the rest of a
# request's HPACK and framing; the checks that matter to a proxy are made here instead,
# in one pass: no CTL but HTAB in any value (CR, LF or NUL would split an HTTP/1 head:
# GHSA-847f-9342-265h), names lowercase tokens (RFC 9113 §8.2.1), no connection-specific
# field and `te` only "trailers" (§8.2.2), only the pseudo-header fields the message kind
# has, before the others, once each (§8.3), a request's :method, :scheme and :path
# (§8.3.1), a response's :status (§8.3.2).


class _NoLog:
    """hpack logs each header field at debug level; a no-op unless that is enabled."""

    @staticmethod
    def debug(*args, **kwargs) -> None:
        pass


def _tune_hpack() -> None:
    """Silence hpack's per-field debug calls (about 60 per request) unless wanted, and
    decode Huffman-coded literals through a cache (an origin that does not index its
    fields sends the same literals, Server or Content-Type, on every response; hpack
    decodes them nibble by nibble in Python)."""
    quiet = not logging.getLogger("hpack").isEnabledFor(logging.DEBUG)
    for module in (hpack.hpack, hpack.table):
        module.log = _NoLog if quiet else logging.getLogger(module.__name__)
    hpack.hpack.decode_huffman = _decode_huffman


_huffman_cache: dict[bytes, bytes] = {}


def _decode_huffman(data, _decode=hpack.huffman_table.decode_huffman) -> bytes:
    if type(data) is not bytes or len(data) > 256:
        return _decode(data)
    value = _huffman_cache.get(data)
    if value is None:
        value = _decode(data)  # HPACKDecodingError for a bad code, as before: not cached
        if len(_huffman_cache) >= 4096:
            _huffman_cache.clear()
        _huffman_cache[data] = value
    return value


class _Rate:
    """Events counted in one-second windows: `hit()` is True once more than `limit`
    came in the current second."""

    __slots__ = ("count", "limit", "start")

    def __init__(self, limit: int) -> None:
        self.limit, self.count, self.start = limit, 0, 0.0

    def hit(self, now: float) -> bool:
        if now - self.start >= 1.0:
            self.start, self.count = now, 0
        self.count += 1
        return self.count > self.limit


class H2Limits:
    """A client connection's abuse limits (the h2_* options). Counted per control frame
    only, never per DATA frame; each one exceeded ends the connection with GOAWAY
    ENHANCE_YOUR_CALM and a log line (RFC 9113 §10.5)."""

    __slots__ = (
        "header_list_size",
        "max_resets",
        "max_streams",
        "rates",
        "reset_rate",
        "resets",
        "stall_timeout",
    )

    def __init__(self, options) -> None:
        self.max_streams = options.h2_max_concurrent_streams
        self.max_resets = options.h2_max_resets
        self.resets = 0
        self.reset_rate = _Rate(options.h2_max_resets_per_second)
        self.rates = {
            h2.events.RemoteSettingsChanged: _Rate(options.h2_max_settings_per_second),
            h2.events.SettingsAcknowledged: _Rate(options.h2_max_settings_per_second),
            h2.events.PingReceived: _Rate(options.h2_max_pings_per_second),
            h2.events.PingAckReceived: _Rate(options.h2_max_pings_per_second),
            h2.events.PriorityUpdated: _Rate(options.h2_max_priority_per_second),
            h2.events.WindowUpdated: _Rate(options.h2_max_window_updates_per_second),
        }
        self.header_list_size = options.h2_max_header_list_size
        self.stall_timeout = options.h2_stall_timeout

    def exceeded(self, kind, now: float) -> str | None:
        """Why the connection must end after this event, or None."""
        if kind is h2.events.StreamReset:
            self.resets += 1
            if self.resets > self.max_resets:
                return f"more than {self.max_resets} streams reset (h2_max_resets)"
            if self.reset_rate.hit(now):
                return (f"more than {self.reset_rate.limit} stream resets in a second "
                        "(h2_max_resets_per_second)")
            return None
        rate = self.rates.get(kind)
        if rate is not None and rate.hit(now):
            return f"more than {rate.limit} {kind.__name__} a second"
        return None


# h2 answers every protocol error with GOAWAY PROTOCOL_ERROR; RFC 9113 wants
# COMPRESSION_ERROR for a field block that cannot be decoded (§4.3, RFC 7541 §2.3.3,
# §4.2, §6.3) and FRAME_SIZE_ERROR for a SETTINGS ACK with a payload (§6.5).
_GOAWAY_HEAD = b"\x00\x00\x08\x07\x00\x00\x00\x00\x00"


def _error_code(error: Exception) -> int | None:
    cause = error.__cause__ or error.__context__
    if isinstance(cause, hpack.exceptions.HPACKError):
        return h2.errors.ErrorCodes.COMPRESSION_ERROR
    if isinstance(cause, hyperframe.exceptions.InvalidDataError) and \
            "must not have payload" in str(cause):
        return h2.errors.ErrorCodes.FRAME_SIZE_ERROR
    return None


def _with_goaway_code(data: bytes, code: int | None) -> bytes:
    """`data` with the error code of the GOAWAY h2 queued last (17 bytes: h2 sends no
    debug data) set to `code`."""
    if code is None or len(data) < 17 or data[-17:-8] != _GOAWAY_HEAD:
        return data
    return data[:-4] + code.to_bytes(4, "big")


class H2Conn:
    """An h2 connection over an endpoint; `pump()` reads it until it closes."""

    def __init__(self, endpoint: Endpoint, client_side: bool,
                 on_request: Callable[[H2Stream, dict, list], Any] | None = None,
                 limits: H2Limits | None = None) -> None:
        # Inbound fields are checked by parse_request_headers / check_fields; outbound
        # ones are built here, lowercase and without connection-specific fields.
        config = h2.config.H2Configuration(client_side=client_side, header_encoding=None,
                                           validate_inbound_headers=False,
                                           normalize_inbound_headers=False,
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False)
        _tune_hpack()
        self.conn = h2.connection.H2Connection(config)
        self.endpoint = endpoint
        self.loop = endpoint.loop
        self.on_request = on_request
        self.streams: dict[int, H2Stream] = {}
        self.closed = False
        self.goaway = False
        self.stream_slot = asyncio.Event()
        self._flush_scheduled = False
        self.server = None
        """The upstream's `Server` (client side)."""
        self.limits = limits
        """The abuse limits, for a client's connection (None upstream)."""
        self.upstream = client_side
        """Whether the peer is an upstream (its errors are answered 502)."""

    def start(self) -> None:
        conn = self.conn
        limits = self.limits
        if limits is not None:  # in the first SETTINGS, in force from the first request
            codes = h2.settings.SettingCodes
            conn.local_settings = h2.settings.Settings(client=False, initial_values={
                codes.MAX_CONCURRENT_STREAMS: limits.max_streams,
                codes.MAX_HEADER_LIST_SIZE: limits.header_list_size})
            conn.decoder.max_header_list_size = limits.header_list_size
        conn.initiate_connection()
        settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW}
        if limits is None:
            settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = MAX_CONCURRENT_STREAMS
        conn.update_settings(settings)
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()

    def flush(self) -> None:
        """Send what h2 has queued, at the end of this loop iteration: the frames of all
        streams that made progress meanwhile go out in one write (one TLS record, one
        syscall) instead of one each."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        self._flush_scheduled = False
        data = self.conn.data_to_send()
        endpoint = self.endpoint
        if data and not endpoint.closed and not endpoint.transport.is_closing():
            endpoint.write(data)

    @property
    def usable(self) -> bool:
        return not (self.closed or self.goaway)

    async def pump(self) -> None:
        """Feed received bytes to h2 and dispatch its events until the connection ends."""
        reader, endpoint = self.endpoint.reader, self.endpoint
        try:
            while True:
                data = reader.take_rest()
                if not data:
                    if endpoint.closed or reader.buffered == 0 and _eof(endpoint):
                        break
                    await endpoint.wait_data()
                    continue
                if len(data) <= FEED_SIZE:
                    self.feed(data)
                else:  # limits are checked between pieces: a flood is cut short
                    for i in range(0, len(data), FEED_SIZE):
                        self.feed(data[i:i + FEED_SIZE])
                        if self.closed:
                            break
                if self.closed:
                    await self._linger()
                    break
                self.flush()
        except ConnectionGone:
            pass
        finally:
            self.closed = True
            for stream in list(self.streams.values()):
                stream.fail(self.error("connection closed"))
            self.stream_slot.set()

    def feed(self, data: bytes) -> None:
        """Received bytes into h2, its events dispatched and the abuse limits checked;
        `closed` once the connection must end (GOAWAY queued or sent)."""
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            logger.info("HTTP/2 protocol error: %s", e)
            out = _with_goaway_code(self.conn.data_to_send(), _error_code(e))
            if out and not self.endpoint.closed:
                self.endpoint.write(out)
            self.closed = True
            return
        limits = self.limits
        for event in events:
            self.handle(event)
            if limits is not None and type(event) in _LIMITED:
                why = limits.exceeded(type(event), self.loop.time())
                if why is not None:
                    self.calm_down(why, close=False)
                    return

    def handle(self, event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        kind = type(event)
        if kind is h2.events.DataReceived:
            if stream is not None:
                stream.data.put_nowait((event.data, event.flow_controlled_length))
            else:
                self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                    event.stream_id)
        elif kind is h2.events.RequestReceived:
            try:
                pseudo, fields = parse_request_headers(event.headers)
            except MalformedHeaders as e:
                logger.info("HTTP/2 stream %d refused: %s", event.stream_id, e)
                self._reset_id(event.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                return
            stream = self.streams[event.stream_id] = H2Stream(event.stream_id, self.loop)
            stream.headers.set_result(event.headers)
            if self.on_request is not None:
                self.on_request(stream, pseudo, fields)
        elif kind is h2.events.ResponseReceived:
            if stream is not None and not stream.headers.done():
                try:
                    check_fields(event.headers)
                except MalformedHeaders as e:
                    self._reset_id(stream.id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                    stream.fail(self.error(f"malformed response: {e}",
                                            h2.errors.ErrorCodes.PROTOCOL_ERROR))
                    return
                stream.headers.set_result(event.headers)
        elif kind is h2.events.StreamEnded:
            if stream is not None:
                stream.ended = True
                stream.data.put_nowait(None)
        elif kind is h2.events.TrailersReceived:
            if stream is not None:
                try:
                    check_fields(event.headers, frozenset())
                except MalformedHeaders as e:
                    self._reset_id(stream.id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                    stream.fail(self.error(f"malformed trailers: {e}",
                                            h2.errors.ErrorCodes.PROTOCOL_ERROR))
                    return
                stream.trailers = event.headers
        elif isinstance(event, h2.events.WindowUpdated):
            self._window_opened(event.stream_id)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._window_opened(0)
            self.stream_slot.set()
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                stream.fail(self.error(f"stream reset by peer ({_code(event.error_code)})",
                                        event.error_code))
                self.on_reset(stream)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True
            last = event.last_stream_id or 0
            for sid, s in list(self.streams.items()):
                if sid > last or event.error_code:
                    s.fail(self.error(f"connection going away ({_code(event.error_code)})"))

    def error(self, message: str, code: int = h2.errors.ErrorCodes.CANCEL) -> StreamReset:
        """A StreamReset for this connection's streams; "upstream: ..." on the upstream's
        (serve_stream answers those 502 while no response was sent)."""
        return StreamReset(f"upstream: {message}" if self.upstream else message, code)

    async def _linger(self, seconds: float = 1.0) -> None:
        """After GOAWAY: read and drop what the peer still sends, for a moment, before
        closing; closing with unread data makes TCP send RST, and the peer might lose
        the GOAWAY (RFC 9113 §6.8, §5.4.1)."""
        endpoint, reader = self.endpoint, self.endpoint.reader
        deadline = self.loop.time() + seconds
        try:
            while not endpoint.closed and self.loop.time() < deadline:
                reader.take_rest()
                await asyncio.wait_for(endpoint.wait_data(), deadline - self.loop.time())
        except (TimeoutError, ConnectionGone):
            pass
        endpoint.close()

    def calm_down(self, why: str, close: bool = True) -> None:
        """End an abusive client's connection: GOAWAY ENHANCE_YOUR_CALM, a log line
        (the endpoint is closed by the pump, after `_linger`, unless `close`)."""
        peer = self.endpoint.transport.get_extra_info("peername") or ("?", 0)
        logger.warning("%s:%s: HTTP/2 abuse, GOAWAY ENHANCE_YOUR_CALM: %s", peer[0],
                       peer[1], why)
        try:
            self.conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        except h2.exceptions.ProtocolError:
            pass
        self.flush_now()
        self.closed = True
        if close:
            self.endpoint.close()

    def on_reset(self, stream: H2Stream) -> None:
        """Hook: the peer reset `stream`."""

    def _reset_id(self, stream_id: int, code: int) -> None:
        try:
            self.conn.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass

    def _window_opened(self, stream_id: int) -> None:
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.window_opened()
        else:
            for stream in self.streams.values():
                stream.window_opened()

    def forget(self, stream: H2Stream) -> None:
        self.streams.pop(stream.id, None)
        self.stream_slot.set()

    def ack(self, stream: H2Stream, length: int) -> None:
        """Reopen the window for `length` bytes of `stream` that were passed on."""
        if length and not self.closed:
            try:
                self.conn.acknowledge_received_data(length, stream.id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass  # the stream is gone; h2 already credited the connection window
            self.flush()

    async def send_data(self, stream: H2Stream, data: bytes, end: bool) -> None:
        """Send body bytes on `stream` as the peer's flow-control windows allow (END_STREAM
        on the last frame when `end`). Frames go out together at the end of the loop
        iteration, or at once when the window or the transport makes us wait."""
        conn, endpoint, sid = self.conn, self.endpoint, stream.id
        if not data or len(data) <= conn.max_outbound_frame_size and \
                len(data) <= conn.local_flow_control_window(sid):
            if stream.error is not None:
                raise stream.error
            conn.send_data(sid, data, end_stream=end)  # the usual case: one frame
            self.flush()
        else:
            await self._send_frames(stream, memoryview(data), end)
        if endpoint._write_paused or endpoint.closed:
            await endpoint.drain()

    async def _send_frames(self, stream: H2Stream, view: memoryview, end: bool) -> None:
        conn, sid = self.conn, stream.id
        while True:
            if stream.error is not None:
                raise stream.error
            window = conn.local_flow_control_window(sid)
            while view and window > 0:
                size = min(window, len(view), conn.max_outbound_frame_size)
                last = size == len(view)
                conn.send_data(sid, view[:size].tobytes(), end_stream=end and last)
                view, window = view[size:], window - size
            if not view:
                self.flush()
                return
            self.flush_now()  # written now: drain() sees the buffer, the peer the data
            if self.endpoint._write_paused:
                await self.endpoint.drain()
            if conn.local_flow_control_window(sid) <= 0:
                waiter = stream.window = self.loop.create_future()
                if self.limits is None:
                    await waiter
                    continue
                try:  # a peer that never opens its window holds the stream: a deadline
                    await asyncio.wait_for(waiter, self.limits.stall_timeout)
                except TimeoutError:
                    self.calm_down(f"flow-control window shut for more than "
                                   f"{self.limits.stall_timeout:g} s (h2_stall_timeout)")
                    raise StreamReset("client stalled: window shut past h2_stall_timeout",
                                      h2.errors.ErrorCodes.ENHANCE_YOUR_CALM) from None

    def end_stream(self, stream: H2Stream) -> None:
        self.conn.end_stream(stream.id)
        self.flush()

    async def open_stream(self, headers: list, end: bool) -> H2Stream:
        """A new request stream (client side), waiting for a free concurrency slot."""
        conn = self.conn
        while conn.open_outbound_streams >= conn.remote_settings.max_concurrent_streams:
            if not self.usable:
                raise StreamReset("upstream connection closed")
            self.stream_slot.clear()
            await self.stream_slot.wait()
        if not self.usable:
            raise StreamReset("upstream connection closed")
        stream_id = conn.get_next_available_stream_id()
        stream = self.streams[stream_id] = H2Stream(stream_id, self.loop)
        conn.send_headers(stream_id, headers, end_stream=end)
        self.flush()
        return stream

    def reset(self, stream: H2Stream, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        try:
            self.conn.reset_stream(stream.id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.flush()
        self.forget(stream)

    def close(self) -> None:
        if not self.closed:
            try:
                self.conn.close_connection()
                self.flush_now()
            except (h2.exceptions.ProtocolError, ConnectionGone):
                pass
        self.closed = True
        self.endpoint.close()


_LIMITED = frozenset((h2.events.StreamReset, h2.events.RemoteSettingsChanged,
                      h2.events.SettingsAcknowledged, h2.events.PingReceived,
                      h2.events.PingAckReceived, h2.events.PriorityUpdated,
                      h2.events.WindowUpdated))


def _eof(endpoint: Endpoint) -> bool:
    return endpoint.closed


def _code(code) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return str(code)


class ClientH2Conn(H2Conn):
    """The client's side: a reset stream cancels the task serving it."""

    def __init__(self, endpoint: Endpoint, on_request, on_reset, limits: H2Limits) -> None:
        super().__init__(endpoint, False, on_request, limits)
        self._on_reset = on_reset

    def on_reset(self, stream: H2Stream) -> None:
        self._on_reset(stream)



async def gather_stream(conn: H2Conn, stream: H2Stream, limit: int,
                        too_large: Callable[[str], Exception]) -> bytes:
    """A stream's whole body, each DATA frame acknowledged as it is taken; the
    exception `too_large(message)` past `limit` bytes."""
    pieces, size = [], 0
    while True:
        item = await stream.data.get()
        if item is None:
            return b"".join(pieces)
        if isinstance(item, StreamReset):
            raise item
        data, length = item
        pieces.append(data)
        size += len(data)
        if size > limit:
            raise too_large(f"body larger than body_size_limit ({limit} bytes)")
        conn.ack(stream, length)
