"""HTTP/2 (RFC 9113) with the client, to an HTTP/2 or an HTTP/1 upstream, via h2.

Theory of operation. `H2Conn` is one HTTP/2 connection over an `Endpoint` (the client's
decrypted endpoint, or an upstream's): h2's state machine is fed the received bytes by
`pump()`, which turns h2 events into per-stream state (`H2Stream`: a headers future, a
queue of body chunks, a window event). `Http2Layer` serves the client's connection:
every request stream runs `serve_stream` in its own task and becomes a normal
`HTTPFlow`, with the events HTTP/1 flows have:

    requestheaders -> request -> (upstream) -> responseheaders -> response | error

Upstream, a stream becomes a stream of the upstream's HTTP/2 connection when ALPN chose
h2 there, or an HTTP/1.1 request on a pooled keep-alive connection otherwise.

Flow control is end to end: received DATA is acknowledged (the window reopened) only
once it has been written to the other side and that side's transport drained, so a
slow receiver slows the sender down and memory stays bounded by the windows. Sending
waits for the peer's window. RST_STREAM ends one stream (and its upstream half);
GOAWAY stops new streams while the others finish.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
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

from fastproxy._core import BODY, END, HEAD, ProtocolError, build_head
from fastproxy.flow import Error
from fastproxy.http import Headers, HTTPFlow, Request, Response
from fastproxy.io.bodies import BodyTee
from fastproxy.log import logger
from fastproxy.proxy.context import Layer, RootContext
from fastproxy.proxy.layers.semantics import (
    H2_FORBIDDEN,
    check_h2_te,
    check_status,
    is_field_value,
)
from fastproxy.proxy.streams import ConnectionGone, Endpoint
from fastproxy.proxy.upstream import Upstream, UpstreamError

CONNECTION_SPECIFIC = H2_FORBIDDEN | {b"te", b"host", b"http2-settings"}
"""Not sent on an HTTP/2 stream as they are (RFC 9113 §8.2.2, semantics.H2_FORBIDDEN);
`te: trailers` is put back by `h2_fields`, Host becomes :authority (§8.3.1)."""
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
MAX_CONCURRENT_STREAMS = 256
FEED_SIZE = 16384
"""Received bytes are given to h2 in pieces of at most this, so that the abuse limits
are checked every few hundred frames (h2 parses all it is given in one call)."""
_REASONS = {200: b"OK", 502: b"Bad Gateway", 413: b"Payload Too Large",
            504: b"Gateway Timeout"}


class ReadTimeout(Exception):
    """The upstream sent no response head within `read_timeout`: answered 504."""


async def response_head(awaitable, timeout: float):
    """What `awaitable` gives (an upstream's response head), or ReadTimeout after
    `timeout` seconds (option read_timeout; nginx's proxy_read_timeout)."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise ReadTimeout(f"no response from the upstream within {timeout:g} s "
                          "(read_timeout)") from None


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

_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z").match
_BAD_PATH = re.compile(rb"[\x00-\x20\x7f]").search
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))


class MalformedHeaders(Exception):
    """Received header fields a proxy must not pass on (RFC 9113 §8.1.1: malformed)."""


def _check_field(name: bytes, value: bytes) -> None:
    """One regular field: a lowercase token, a clean value, not connection-specific."""
    if not _NAME(name):
        raise MalformedHeaders(f"invalid field name {name[:64]!r}")
    if not is_field_value(value):
        raise MalformedHeaders(f"CR, LF, NUL or another CTL in the value of {name[:64]!r}")
    if name in H2_FORBIDDEN:
        raise MalformedHeaders(f"connection-specific field {name.decode()} (RFC 9113 §8.2.2)")
    if name == b"te":
        try:
            check_h2_te(value)
        except ProtocolError as e:
            raise MalformedHeaders(str(e)) from None


def parse_request_headers(headers: list) -> tuple[dict, list]:
    """A request's pseudo-header fields and its other fields, checked (MalformedHeaders)."""
    pseudo, fields, cookies = {}, [], 0
    for field in headers:
        name, value = field
        if name[:1] == b":":
            if fields or name not in _REQUEST_PSEUDO or name in pseudo:
                raise MalformedHeaders(f"misplaced or unknown pseudo-header field {name!r}")
            if not is_field_value(value):
                raise MalformedHeaders(f"CR, LF, NUL or another CTL in {name!r}")
            pseudo[name] = value
        else:
            _check_field(name, value)
            fields.append(field)
            if name == b"cookie":
                cookies += 1
    _check_request_pseudo(pseudo)
    if cookies > 1:  # RFC 9113 §8.2.3: one field again, for HTTP/1 and for the addons
        fields = _join_cookies(fields)
    return pseudo, fields


def _check_request_pseudo(pseudo: dict) -> None:
    method = pseudo.get(b":method")
    if method is None or not _NAME(method.lower()):
        raise MalformedHeaders("missing or invalid :method")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        # RFC 9113 §8.5: :authority only
        if b":scheme" in pseudo or b":path" in pseudo or b":authority" not in pseudo:
            raise MalformedHeaders("CONNECT with :scheme or :path, or without :authority")
        return
    if b":protocol" in pseudo and method != b"CONNECT":
        raise MalformedHeaders(":protocol on a request other than CONNECT (RFC 8441 §4)")
    scheme, path = pseudo.get(b":scheme"), pseudo.get(b":path")
    if not scheme or not _NAME(scheme.lower()):
        raise MalformedHeaders("missing or invalid :scheme (RFC 9113 §8.3.1)")
    if not path or _BAD_PATH(path):
        raise MalformedHeaders("missing or invalid :path (RFC 9113 §8.3.1)")
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS") and \
            scheme in (b"http", b"https"):
        raise MalformedHeaders(":path neither absolute nor * (RFC 9113 §8.3.1)")


def check_fields(headers: list, pseudo_allowed: frozenset = frozenset((b":status",))) -> None:
    """Response fields (one :status first, RFC 9113 §8.3.2) or, with no pseudo-header
    field allowed, trailer fields (§8.1): the same checks (MalformedHeaders)."""
    status, regular = None, False
    for name, value in headers:
        if name[:1] == b":":
            if name not in pseudo_allowed or status is not None or regular:
                raise MalformedHeaders(f"misplaced or unknown pseudo-header field {name!r}")
            if len(value) != 3 or not value.isdigit():
                raise MalformedHeaders(f"invalid :status {value[:16]!r}")
            check_status(int(value))
            status = value
        else:
            _check_field(name, value)
            regular = True
    if pseudo_allowed and status is None:
        raise MalformedHeaders("response without :status (RFC 9113 §8.3.2)")


def h2_fields(fields, drop: frozenset = CONNECTION_SPECIFIC) -> list:
    """Fields for an HTTP/2 message: names lowercased, connection-specific ones dropped,
    `te` kept when it says "trailers" only (gRPC needs it; RFC 9113 §8.2.2)."""
    out = []
    for name, value in fields:
        name = name.lower()
        if name not in drop:
            out.append((name, value))
        elif name == b"te" and value.strip(b" \t").lower() == b"trailers":
            out.append((b"te", b"trailers"))
    return out


def _join_cookies(fields: list) -> list:
    cookies = [v for n, v in fields if n == b"cookie"]
    out = [f for f in fields if f[0] != b"cookie"]
    out.append((b"cookie", b"; ".join(cookies)))
    return out


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


class Http2Layer(Layer):
    """Serves the HTTP/2 client connection (see the module docstring).

    `tunnel` is the (host, port) every request goes to when there is one (CONNECT and
    TLS); otherwise (reverse mode) the mode's upstream. `upstream` is the connection the
    TLS layer opened; with ALPN h2 its streams carry the requests.
    """

    def __init__(self, ctx: RootContext, tunnel: tuple[str, int] | None, scheme: str,
                 upstream: Upstream | None) -> None:
        super().__init__(ctx)
        self.tunnel = tunnel
        self.scheme = scheme
        self.upstream = upstream
        self.upstream_h2: H2Conn | None = None
        self.upstream_task: asyncio.Task | None = None
        self.tasks: dict[int, asyncio.Task] = {}
        self.client: ClientH2Conn | None = None
        self.opening = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<Http2Layer {self.tunnel}>"

    async def run(self) -> None:
        ctx = self.ctx
        upstream = self.upstream
        if upstream is not None:
            ctx.server_conn = upstream.server
            if upstream.server.alpn == b"h2":
                self.use_upstream_h2(upstream)
            else:
                ctx.pool.release(upstream)
        client = self.client = ClientH2Conn(ctx.client, self.new_stream, self.stream_reset,
                                            H2Limits(ctx.options))
        client.start()
        try:
            await client.pump()
        finally:
            for task in list(self.tasks.values()):
                task.cancel()
            if self.tasks:
                await asyncio.wait(list(self.tasks.values()), timeout=5)
            if self.upstream_h2 is not None:
                self.upstream_h2.close()
            ctx.client.close()

    def use_upstream_h2(self, upstream: Upstream) -> None:
        h2conn = self.upstream_h2 = H2Conn(upstream.endpoint, True)
        h2conn.server = upstream.server
        h2conn.start()
        self.upstream_task = self.ctx.client.loop.create_task(h2conn.pump())

    def new_stream(self, stream: H2Stream, pseudo: dict, fields: list) -> None:
        task = self.ctx.client.loop.create_task(self.serve_stream(stream, pseudo, fields))
        self.tasks[stream.id] = task
        task.add_done_callback(lambda _: self.tasks.pop(stream.id, None))

    def stream_reset(self, stream: H2Stream) -> None:
        task = self.tasks.get(stream.id)
        if task is not None:
            task.cancel()

    # -- one stream -----------------------------------------------------------------

    async def serve_stream(self, stream: H2Stream, pseudo: dict, fields: list) -> None:
        exchange = H2Exchange(self, stream, pseudo, fields)
        try:
            await exchange.run()
        except asyncio.CancelledError:
            await exchange.fail("stream reset by the client")
            exchange.abort_upstream()
        except ReadTimeout as e:
            exchange.abort_upstream()
            if exchange.response_sent or self.client.closed:
                await exchange.fail(str(e))
                self.client.reset(stream, h2.errors.ErrorCodes.CANCEL)
            else:
                await exchange.error_response(504, str(e))
        except StreamReset as e:
            exchange.abort_upstream()
            # An upstream's malformed response or broken connection is a 502 while no
            # response went out (RFC 9113 §8.1.1: never passed on); its RST_STREAM is
            # passed on as a reset (REFUSED_STREAM tells the client it may retry).
            if str(e).startswith("upstream") and "reset by peer" not in str(e) and \
                    not exchange.response_sent and not self.client.closed and \
                    stream.error is None:
                await exchange.bad_gateway(str(e))
                return
            await exchange.fail(str(e))
            self.client.reset(stream, e.code if "upstream" not in str(e) else
                              h2.errors.ErrorCodes.CANCEL)
        except (ConnectionGone, ProtocolError, h2.exceptions.ProtocolError) as e:
            await exchange.fail(f"connection closed: {e}")
            exchange.abort_upstream()
            self.client.reset(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
        except Exception:
            logger.exception("HTTP/2 stream %d failed", stream.id)
            exchange.abort_upstream()
            self.client.reset(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
        finally:
            self.client.forget(stream)

    async def upstream_h2_conn(self, host: str, port: int) -> H2Conn | None:
        """The upstream HTTP/2 connection for a new stream, or None for HTTP/1."""
        if self.upstream_h2 is not None and self.upstream_h2.usable:
            return self.upstream_h2
        async with self.opening:  # concurrent first streams share one new connection
            return await self._open_upstream_h2(host, port)

    async def _open_upstream_h2(self, host: str, port: int) -> H2Conn | None:
        if self.upstream_h2 is not None and self.upstream_h2.usable:
            return self.upstream_h2
        if self.scheme != "https" or not self.ctx.options.http2:
            return None
        if self.upstream_h2 is None and self.upstream is not None:
            return None  # ALPN chose HTTP/1.1 there
        from fastproxy.proxy.layers.tls import open_tls_upstream
        sni = self.ctx.client_conn.sni if self.tunnel else None
        upstream = await open_tls_upstream(self.ctx.pool, ("https", host, port), sni or host,
                                           [b"h2", b"http/1.1"])
        self.upstream = upstream
        if upstream.server.alpn != b"h2":
            self.ctx.pool.release(upstream)
            return None
        self.use_upstream_h2(upstream)
        return self.upstream_h2


class H2Exchange:
    """One HTTP/2 request stream and its response, as an `HTTPFlow`."""

    __slots__ = (
        "client",
        "ctx",
        "fields",
        "flow",
        "h1",
        "layer",
        "pseudo",
        "response_sent",
        "stream",
        "tee",
        "up_conn",
        "up_stream",
        "upload",
    )

    def __init__(self, layer: Http2Layer, stream: H2Stream, pseudo: dict,
                 fields: list) -> None:
        self.layer = layer
        self.ctx = layer.ctx
        self.client = layer.client
        self.stream = stream
        self.pseudo = pseudo
        self.fields = fields
        self.flow: HTTPFlow | None = None
        self.h1: Upstream | None = None
        self.up_stream: H2Stream | None = None
        self.up_conn: H2Conn | None = None
        self.response_sent = False
        self.upload: asyncio.Task | None = None
        """The request body going out while the response head is awaited."""
        self.tee: BodyTee | None = None
        """A streamed request body kept for the recording (save_stream_file)."""

    # -- the request ------------------------------------------------------------------

    def target(self) -> tuple[str, int, bytes]:
        """Where the request goes: host, port, and the :authority to send."""
        authority = self.pseudo.get(b":authority", b"")
        layer = self.layer
        if layer.tunnel is not None:
            host, port = layer.tunnel
        else:
            host, port = self.ctx.mode.address
            if not self.ctx.options.keep_host_header:  # as routing.py does for HTTP/1
                authority = _authority(host, port, layer.scheme)
        return host, port, authority

    def make_request(self) -> Request:
        pseudo = self.pseudo
        host, port, authority = self.target()
        scheme = self.layer.scheme.encode()
        method = pseudo.get(b":method", b"GET")
        # Empty only when END_STREAM is the next thing queued: HEADERS, DATA and
        # END_STREAM of a small request often arrive in one read, and are all queued
        # before this runs (a body taken as b"" then was lost: issue 15, finding 1).
        stream = self.stream
        ended = stream.data.at_end()
        trailers = Headers(stream.trailers) if ended and stream.trailers else None
        return Request(host, port, method, scheme, authority, pseudo.get(b":path", b"/"),
                       b"HTTP/2.0", Headers(self.fields), b"" if ended else None,
                       trailers, time.time(), time.time() if ended else None)

    async def run(self) -> None:
        ctx = self.ctx
        addons, listeners = ctx.addons, ctx.listeners
        if not (listeners.requestheaders or listeners.request or listeners.responseheaders
                or listeners.response or listeners.error):
            if await self.run_fast():
                return
        flow = self.flow = HTTPFlow(ctx.client_conn, ctx.server_conn, live=True)
        request = flow.request = self.make_request()
        # The request body is gathered for a `request` listener only; a recording keeps
        # a streamed one up to save_body_limit (issue 15, finding 6).
        gather = bool(addons.body_listeners["request"])
        if listeners.requestheaders:
            await addons.trigger("requestheaders", flow)
        if request.raw_content is None and not (gather and not request.stream) and \
                ctx.options.save_stream_file:
            self.tee = BodyTee(ctx.options.save_body_limit)
        if request.raw_content is None and (gather and not request.stream):
            request.raw_content = await self.gather(self.client, self.stream)
            request.timestamp_end = time.time()
            if self.stream.trailers:
                request.trailers = Headers(self.stream.trailers)
        if listeners.request:
            await addons.trigger("request", flow)
        if flow.error is not None:  # killed
            self.client.reset(self.stream)
            return
        if flow.response is not None:
            await self.respond_from_flow()
            return
        try:
            conn = await self.layer.upstream_h2_conn(request.host, request.port)
        except UpstreamError as e:
            return await self.bad_gateway(str(e))
        if conn is not None:
            await self.via_h2(conn)
        else:
            await self.via_h1()

    # -- no addon listens: headers and DATA passed on, no flow -------------------------

    async def run_fast(self) -> bool:
        """Stream to stream, as HttpLayer's run_fast: no HTTPFlow, no Request. False when
        the upstream is HTTP/1 (the flow path serves it then, without events)."""
        host, port, authority = self.target()
        try:
            conn = await self.layer.upstream_h2_conn(host, port)
        except UpstreamError as e:
            await self.bad_gateway(str(e))
            return True
        if conn is None:
            return False
        self.up_conn = conn
        self.ctx.server_conn = conn.server
        pseudo, stream = self.pseudo, self.stream
        headers = [(b":method", pseudo.get(b":method", b"GET")),
                   (b":scheme", self.layer.scheme.encode()), (b":authority", authority),
                   (b":path", pseudo.get(b":path", b"/"))]
        headers += h2_fields(self.fields)
        ended = stream.data.at_end()
        up = self.up_stream = await conn.open_stream(headers, end=ended)
        upload = None if ended else self.relay_data(self.client, stream, conn, up)
        status, fields = _split_response_headers(await self.upload_and_head(upload,
                                                                             up.headers))
        headers = [(b":status", str(status).encode())]
        headers += h2_fields(fields)
        ended = up.data.at_end()
        self.client.conn.send_headers(stream.id, headers, end_stream=ended)
        self.client.flush()
        self.response_sent = True
        if not ended:
            await self.relay_data(conn, up, self.client, stream)
        self.end_upload()
        conn.forget(up)
        return True

    async def relay_data(self, src: H2Conn, src_stream: H2Stream, dst: H2Conn,
                         dst_stream: H2Stream) -> None:
        """DATA frames of one stream onto another until END_STREAM (trailers with it);
        each acknowledged once handed to the other side (end-to-end flow control)."""
        chunks = src_stream.data
        while True:
            item = await chunks.get()
            if item is None:
                break
            if isinstance(item, StreamReset):
                raise StreamReset(f"upstream: {item}" if src is not self.client else str(item),
                                  item.code)
            data, length = item
            end = chunks.at_end() and not src_stream.trailers
            await dst.send_data(dst_stream, data, end)
            src.ack(src_stream, length)
            if end:
                return
        if src_stream.trailers:
            dst.conn.send_headers(dst_stream.id, h2_fields(src_stream.trailers),
                                  end_stream=True)
            dst.flush()
        else:
            dst.end_stream(dst_stream)

    async def gather(self, conn: H2Conn, stream: H2Stream) -> bytes:
        return await gather_stream(conn, stream, self.ctx.options.body_size_limit,
                                   lambda message: StreamReset(
                                       message, h2.errors.ErrorCodes.REFUSED_STREAM))

    async def body_chunks(self):
        """The request body still to come from the client: (bytes, length) pairs."""
        request = self.flow.request
        if request.raw_content is not None:
            if request.raw_content:
                yield request.raw_content, 0
            return
        tee = self.tee
        while True:
            item = await self.stream.data.get()
            if item is None:
                if tee is not None:  # the body (and trailers) in the recorded flow
                    if self.stream.trailers:
                        request.trailers = Headers(self.stream.trailers)
                    tee.attach(self.flow, request, "request")
                    self.tee = None
                return
            if isinstance(item, StreamReset):
                raise item
            if tee is not None:
                tee.add(item[0])
            yield item

    def request_trailers(self) -> list | None:
        """The request's trailer fields to send (the flow's when the body was taken in,
        else the stream's, known once it ended), without connection-specific ones."""
        request = self.flow.request
        if request.raw_content is not None:
            fields = request.trailers.fields if request.trailers else None
        else:
            fields = self.stream.trailers
        if not fields:
            return None
        return h2_fields(fields)

    # -- upstream over HTTP/2 ---------------------------------------------------------

    async def via_h2(self, conn: H2Conn) -> None:
        ctx, flow = self.ctx, self.flow
        request = flow.request
        self.up_conn = conn
        flow.server_conn = ctx.server_conn = conn.server
        authority = request.authority.encode() if request.authority else \
            _authority(request.host, request.port, request.scheme)
        headers = [(b":method", request.method.encode()), (b":scheme", request.scheme.encode()),
                   (b":authority", authority), (b":path", request.path.encode())]
        headers += h2_fields(request.headers.fields)
        no_body = self.request_trailers() is None and (
            request.raw_content == b"" or request.raw_content is None and
            self.stream.data.at_end())
        up = self.up_stream = await conn.open_stream(headers, end=no_body)
        resp_headers = await self.upload_and_head(
            None if no_body else self.upload_h2(conn, up), up.headers)
        status, fields = _split_response_headers(resp_headers)
        response = flow.response = Response(b"HTTP/2.0", status, _REASONS.get(status, b""),
                                            Headers(fields), None, None, time.time(), None)
        await self.response_body(conn, up, response, None)
        self.end_upload()
        conn.forget(up)

    async def upload_h2(self, conn: H2Conn, up: H2Stream) -> None:
        """The request body (then its trailers) onto the upstream stream."""
        async for data, length in self.body_chunks():
            await conn.send_data(up, data, False)
            self.client.ack(self.stream, length)
        trailers = self.request_trailers()
        if trailers:
            conn.conn.send_headers(up.id, trailers, end_stream=True)
        else:
            conn.conn.end_stream(up.id)
        conn.flush()
        self.flow.request.timestamp_end = self.flow.request.timestamp_end or time.time()

    # -- the request body and the response head, at once ---------------------------------

    async def upload_and_head(self, upload, head):
        """The response head (`head`, awaitable), while `upload` (a coroutine sending the
        request body, or None) runs: an origin may answer before it read the whole body
        (a 413 or 405; RFC 9113 §8.1, RFC 9110 §15.5.14), and that answer goes to the
        client at once; the upload goes on meanwhile (`end_upload` stops it after the
        response). read_timeout counts from the end of the upload."""
        timeout = self.ctx.options.read_timeout
        if upload is None:
            return await response_head(head, timeout)
        task = self.upload = self.ctx.client.loop.create_task(upload)
        return await head_while_uploading(task, head, timeout)

    def end_upload(self) -> None:
        """After the response: stop an upload the origin did not wait for, and tell the
        client with RST_STREAM NO_ERROR that the rest is not wanted (RFC 9113 §8.1)."""
        task, self.upload = self.upload, None
        if task is None:
            return
        if task.done():  # finished, or broken by the origin that answered early
            if task.cancelled() or task.exception() is None:
                return
        else:
            task.cancel()
        if self.up_stream is not None and self.up_conn is not None:
            self.up_conn.reset(self.up_stream, h2.errors.ErrorCodes.NO_ERROR)
        if self.h1 is not None:  # the request was not finished: not reusable
            self.h1.endpoint.close()
            self.h1 = None
        self.client.reset(self.stream, h2.errors.ErrorCodes.NO_ERROR)

    # -- upstream over HTTP/1.1 -------------------------------------------------------

    async def via_h1(self) -> None:
        ctx, flow = self.ctx, self.flow
        request = flow.request
        try:
            upstream = self.h1 = await ctx.pool.acquire(request.scheme, request.host,
                                                        request.port)
        except UpstreamError as e:
            return await self.bad_gateway(str(e))
        flow.server_conn = ctx.server_conn = upstream.server
        endpoint = upstream.endpoint
        body = request.raw_content
        fields = [(n, v) for n, v in request.headers.fields
                  if n.lower() not in CONNECTION_SPECIFIC and n.lower() != b"content-length"]
        host = request.authority or _authority(request.host, request.port,
                                               request.scheme).decode()
        extra = [(b"Host", host.encode())]
        chunked = False
        if body is not None:
            if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                extra.append((b"Content-Length", str(len(body)).encode()))
        else:
            length = request.headers.get("content-length")
            if length is not None and length.isdigit():
                extra.append((b"Content-Length", length.encode()))
            else:
                extra.append((b"Transfer-Encoding", b"chunked"))
                chunked = True
        start = b" ".join((request.method.encode(), request.path.encode(), b"HTTP/1.1"))
        endpoint.write(build_head(start, fields, None, extra))
        if body:
            endpoint.write(body)
        upload = self.upload_h1(endpoint, chunked) if body is None else None
        head = await self.upload_and_head(upload, self.h1_response_head(
            endpoint, request.method.encode()))
        fields = h2_fields(head.fields)
        response = flow.response = Response(head.version, head.status_code, head.reason,
                                            Headers(fields), None, None, time.time(), None)
        await self.response_body(None, None, response, endpoint)
        self.end_upload()
        if self.h1 is None:
            return  # closed: the request body was not all sent
        if head.keep_alive and not endpoint.reader.body_is_close_delimited:
            ctx.pool.release(upstream)
        else:
            endpoint.close()
        self.h1 = None

    async def upload_h1(self, endpoint: Endpoint, chunked: bool) -> None:
        """The request body to an HTTP/1.1 upstream, chunked (trailers in the last chunk)
        when the client gave no content-length."""
        async for data, length in self.body_chunks():
            endpoint.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            await endpoint.drain()
            self.client.ack(self.stream, length)
        if chunked:
            trailers = self.request_trailers()
            endpoint.write(build_head(b"0", trailers, None, None) if trailers
                           else b"0\r\n\r\n")
        self.flow.request.timestamp_end = time.time()

    async def h1_response_head(self, endpoint: Endpoint, method: bytes):
        while True:
            endpoint.reader.expect_response_to(method)
            if await endpoint.next_event() != HEAD:
                raise ConnectionGone("upstream closed the connection before responding")
            head = endpoint.reader.head
            if head.status_code >= 200:
                return head
            if head.status_code == 101:
                raise StreamReset("upstream switched protocols on an HTTP/2 request",
                                  h2.errors.ErrorCodes.PROTOCOL_ERROR)
            endpoint.reader.next_event()  # END of the interim response

    # -- the response -----------------------------------------------------------------

    async def response_body(self, conn: H2Conn | None, up: H2Stream | None,
                            response: Response, endpoint: Endpoint | None) -> None:
        """responseheaders, the body (gathered or streamed to the client), response."""
        ctx, flow = self.ctx, self.flow
        addons, listeners = ctx.addons, ctx.listeners
        if listeners.responseheaders:
            await addons.trigger("responseheaders", flow)
        gather = bool(addons.body_listeners["request"] or addons.body_listeners["response"])
        if gather and not response.stream:
            response.raw_content = await (self.gather(conn, up) if up is not None
                                          else _gather_h1(endpoint, ctx.options.body_size_limit))
            response.timestamp_end = time.time()
            if up is not None and up.trailers:
                response.trailers = Headers(up.trailers)
            if listeners.response:
                await addons.trigger("response", flow)
            if flow.error is not None:
                self.client.reset(self.stream)
                return
            await self.send_response(flow.response, flow.response.raw_content or b"")
            return
        await self.send_head(response, end=False)
        client = self.client
        if up is not None:
            while True:
                item = await up.data.get()
                if item is None:
                    break
                if isinstance(item, StreamReset):
                    raise StreamReset(f"upstream: {item}", item.code)
                data, length = item
                await client.send_data(self.stream, data, False)
                conn.ack(up, length)
        else:
            reader = endpoint.reader
            reader.decode = True
            while True:
                event = reader.next_event()
                if event == BODY:
                    await client.send_data(self.stream, reader.chunk, False)
                elif event == END:
                    break
                else:
                    await endpoint.wait_data()
                    if endpoint.closed and reader.buffered == 0 and \
                            not reader.body_is_close_delimited:
                        if reader.next_event() == END:
                            break
                        raise ConnectionGone("upstream closed the connection mid-body")
        client.conn.end_stream(self.stream.id)
        client.flush()
        response.timestamp_end = time.time()
        if listeners.response:
            await addons.trigger("response", flow)

    async def send_head(self, response: Response, end: bool,
                        fields: list | None = None) -> None:
        headers = [(b":status", str(response.status_code).encode())]
        headers += h2_fields(fields or response.headers.fields)
        self.client.conn.send_headers(self.stream.id, headers, end_stream=end)
        self.client.flush()
        self.response_sent = True

    async def send_response(self, response: Response, body: bytes) -> None:
        """A whole response (the body re-framed by its length)."""
        head_request = self.pseudo.get(b":method") == b"HEAD"
        fields = [(n, v) for n, v in response.headers.fields if n.lower() != b"content-length"]
        if not head_request:
            fields.append((b"content-length", str(len(body)).encode()))
        no_body = not body or head_request
        await self.send_head(response, no_body, fields)
        if not no_body:
            await self.client.send_data(self.stream, body, True)

    async def respond_from_flow(self) -> None:
        flow = self.flow
        if self.ctx.listeners.response:
            await self.ctx.addons.trigger("response", flow)
        await self.send_response(flow.response, flow.response.raw_content or b"")
        if not self.stream.ended:  # the rest of the request body is not wanted
            self.client.reset(self.stream, h2.errors.ErrorCodes.NO_ERROR)

    async def bad_gateway(self, message: str) -> None:
        await self.error_response(502, message)

    async def error_response(self, status: int, message: str) -> None:
        """`error` fired on the flow, then a plain-text response with the reason."""
        await self.fail(message)
        body = (message + "\n").encode("utf-8", "replace")
        await self.send_response(Response(b"HTTP/2.0", status, _REASONS.get(status, b""),
                                          Headers([(b"content-type",
                                                    b"text/plain; charset=utf-8")]),
                                          body, None, time.time(), time.time()), body)

    async def fail(self, message: str) -> None:
        logger.info("%s: HTTP/2 stream %d: %s", _peer(self.ctx), self.stream.id, message)
        flow = self.flow
        if flow is not None and flow.error is None:
            flow.error = Error(message)
            if self.ctx.listeners.error:
                await self.ctx.addons.trigger("error", flow)

    def abort_upstream(self) -> None:
        """End the upstream half of a stream that failed or was reset."""
        if self.upload is not None:
            self.upload.cancel()
            self.upload = None
        if self.up_stream is not None and self.up_conn is not None:
            self.up_conn.reset(self.up_stream)
        if self.h1 is not None:
            self.h1.endpoint.close()
            self.h1 = None


async def head_while_uploading(task: asyncio.Task, head, timeout: float):
    """The response head (`head`, awaitable) while `task` sends the request body: an early
    answer is returned at once, the upload going on; read_timeout counts from the end of
    the upload. The upload's error if it failed and no head followed."""
    head = asyncio.ensure_future(head)
    try:
        await asyncio.wait((task, head), return_when=asyncio.FIRST_COMPLETED)
        if head.done():
            return head.result()  # early: the upload goes on
        if task.exception() is not None:
            # An origin that answers early and closes breaks the upload: its answer
            # may still be on the way. A moment for it, else the upload's error.
            try:
                return await response_head(head, min(timeout, 2.0))
            except (ReadTimeout, ConnectionGone, StreamReset, ProtocolError):
                raise task.exception() from None
    except BaseException:
        head.cancel()
        raise
    return await response_head(head, timeout)


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


async def _gather_h1(endpoint: Endpoint, limit: int) -> bytes:
    reader = endpoint.reader
    reader.decode = True
    pieces, size = [], 0
    while True:
        event = reader.next_event()
        if event == BODY:
            pieces.append(reader.chunk)
            size += len(reader.chunk)
            if size > limit:
                raise StreamReset(f"response larger than body_size_limit ({limit} bytes)",
                                  h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif event == END:
            return b"".join(pieces)
        else:
            if endpoint.closed and reader.buffered == 0:
                if reader.next_event() == END:
                    return b"".join(pieces)
                raise ConnectionGone("upstream closed the connection mid-body")
            await endpoint.wait_data()


def _split_response_headers(headers: list) -> tuple[int, list]:
    status, fields = 502, []
    for name, value in headers:
        if name == b":status":
            status = int(value)
        elif not name.startswith(b":"):
            fields.append((name, value))
    return status, fields


def _authority(host: str, port: int, scheme: str) -> bytes:
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(scheme)
    return (host if port == default else f"{host}:{port}").encode()


def _peer(ctx: RootContext) -> str:
    host, port = ctx.client_conn.peername[:2]
    return f"{host}:{port}"
