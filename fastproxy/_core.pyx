# cython: language_level=3
"""The byte work on fastproxy's hot path.

`HTTP1Reader` is a sans-IO HTTP/1 message reader: feed it bytes, ask it for the next
event. Heads are validated and split by httptools (llhttp); bodies are framed here
(Content-Length, chunked, until close: RFC 9112 §6.3) so that a body that no addon needs
can be forwarded exactly as it arrived, without a Python object per chunk: a body event
hands out the received `bytes` object itself whenever the whole of it is body.

`Relay` is the protocol for one side of a tunnel: whatever it reads it writes to the
peer's transport, and the peer's write buffer pausing pauses this side's reading.
"""

cimport cython
from httptools import HttpRequestParser, HttpResponseParser, HttpParserError, HttpParserUpgrade

# Event codes returned by HTTP1Reader.next_event().
NEED_DATA = 0
HEAD = 1
BODY = 2
END = 3
CLOSED = 4

DEF S_HEAD = 0
DEF S_BODY = 1
DEF S_EOF = 2

DEF F_NONE = 0
DEF F_LENGTH = 1
DEF F_CHUNKED = 2
DEF F_CLOSE = 3

DEF C_SIZE = 0
DEF C_DATA = 1
DEF C_DATA_CR = 2
DEF C_DATA_LF = 3
DEF C_TRAILER = 4
DEF C_DONE = 5
DEF C_SIZE_LF = 6
DEF C_EXT = 7
DEF C_EXT_WS = 8
DEF C_TRAILER_LF = 9

DEF MAX_CHUNK_SIZE_DIGITS = 15


class ProtocolError(Exception):
    """The peer sent bytes that are not valid HTTP/1 (or exceed a limit)."""


@cython.freelist(64)
cdef class Head:
    """The parsed head of one HTTP/1 message: what the proxy needs to route and frame it.

    Header names and values are kept as received, in order, as (bytes, bytes) tuples.
    The fields that framing and hop-by-hop handling depend on are recorded while
    parsing, so that nobody has to search the header list again.
    """
    cdef public bytes method
    cdef public bytes target
    cdef public bytes version
    cdef public int status_code
    cdef public bytes reason
    cdef public list fields
    cdef public bint keep_alive
    cdef public long long content_length
    cdef public bint chunked
    cdef public bint has_transfer_encoding
    cdef public bint upgrade
    cdef public bint expect_continue
    cdef public bint has_hop_headers
    cdef public bytes host
    cdef public bytes connection

    def __repr__(self):
        if self.method is not None:
            return f"<Head {self.method!r} {self.target!r} {self.version!r}>"
        return f"<Head {self.status_code} {self.reason!r} {self.version!r}>"


cdef class _HeadCollector:
    """The httptools protocol object: collects one head into a Head."""
    cdef Head head
    cdef int max_headers
    cdef bint message_complete
    cdef object error

    def on_url(self, bytes url):
        self.head.target = url

    def on_status(self, bytes reason):
        self.head.reason = reason

    def on_header(self, bytes name, bytes value):
        cdef Head head = self.head
        if len(head.fields) >= self.max_headers:
            # httptools turns this into HttpParserCallbackError; keep the real reason.
            self.error = ProtocolError(f"more than {self.max_headers} header fields")
            raise self.error
        head.fields.append((name, value))
        try:
            _note_header(head, name, value)
        except ProtocolError as e:
            self.error = e
            raise

    def on_message_complete(self):
        self.message_complete = True


cdef inline void _note_header(Head head, bytes name, bytes value) except *:
    """Record what framing and hop-by-hop handling need from one header field."""
    cdef Py_ssize_t n = len(name)
    if n == 14:
        if name.lower() == b"content-length":
            if not value.isdigit() or len(value) > 18:
                raise ProtocolError(f"invalid Content-Length {value!r}")
            head.content_length = int(value)
    elif n == 17:
        if name.lower() == b"transfer-encoding":
            head.has_transfer_encoding = True
            head.chunked = value.rstrip().lower().endswith(b"chunked")
            head.has_hop_headers = True
    elif n == 4:
        if name.lower() == b"host":
            if head.host is not None:  # RFC 9112 §3.2: more than one Host is a 400
                raise ProtocolError("more than one Host header field")
            head.host = value
    elif n == 6:
        if name.lower() == b"expect" and value.lower() == b"100-continue":
            head.expect_continue = True
    elif n == 10 or n == 16 or n == 7 or n == 2:
        lowered = name.lower()
        if lowered in _HOP_BY_HOP:
            head.has_hop_headers = True
            if lowered == b"connection":
                value = value.lower()
                head.connection = value if head.connection is None else head.connection + b"," + value


_HOP_BY_HOP = frozenset((
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade",
))


cdef class HTTP1Reader:
    """Reads a stream of HTTP/1 requests or responses, one event at a time.

    Theory of operation: `feed()` appends bytes; `next_event()` returns NEED_DATA, HEAD
    (see `.head`), BODY (see `.chunk`), END (end of one message) or CLOSED (the peer
    closed cleanly between messages). After END the reader expects the next head.

    Bodies come out raw (exactly the wire bytes, chunked framing included) unless
    `decode` is set, in which case chunked framing is removed. A response's framing
    depends on the request it answers: call `expect_response_to(method)` before reading
    each response head.
    """
    cdef readonly bint is_request
    cdef public bint decode
    cdef public Py_ssize_t max_head_size
    cdef public int max_headers
    cdef readonly Head head
    cdef readonly bytes chunk
    cdef bytes buf
    cdef Py_ssize_t pos
    cdef Py_ssize_t head_search_from
    cdef int state
    cdef int framing
    cdef long long remaining
    cdef int chunk_state
    cdef Py_ssize_t line_length
    cdef bint eof
    cdef bint request_was_head
    cdef bint request_was_connect
    cdef object parser
    cdef _HeadCollector collector

    def __init__(self, bint is_request, Py_ssize_t max_head_size=65536, int max_headers=100):
        self.is_request = is_request
        self.decode = False
        self.max_head_size = max_head_size
        self.max_headers = max_headers
        self.buf = b""
        self.pos = 0
        self.state = S_HEAD
        self.collector = _HeadCollector()
        self.parser = None

    # -- input -------------------------------------------------------------------------

    cpdef feed(self, bytes data):
        """Append received bytes. Zero-copy when nothing is left over from before."""
        if self.pos >= len(self.buf):
            self.buf = data
            self.pos = 0
            self.head_search_from = 0  # offsets into the old buffer mean nothing here
        else:
            self.buf = self.buf[self.pos:] + data
            self.head_search_from = max(0, self.head_search_from - self.pos)
            self.pos = 0

    cpdef feed_eof(self):
        """The peer will send nothing more."""
        self.eof = True

    @property
    def buffered(self):
        """How many received bytes have not been handed out yet."""
        return len(self.buf) - self.pos

    @property
    def in_head(self):
        """True while reading a head (or waiting for one)."""
        return self.state == S_HEAD

    @property
    def at_message_start(self):
        """True between messages: nothing of the next message read yet."""
        return self.state == S_HEAD and self.pos >= len(self.buf)

    cpdef bytes peek(self, Py_ssize_t n):
        """The next n unread bytes (or fewer), without consuming them."""
        return self.buf[self.pos:self.pos + n]

    cpdef bytes take_rest(self):
        """Hand out every unread byte (the start of a tunnel after CONNECT or 101)."""
        cdef bytes rest = self.buf[self.pos:] if self.pos else self.buf
        self.buf = b""
        self.pos = 0
        return rest

    @property
    def at_eof(self):
        """True once the peer said it sends nothing more (EOF fed)."""
        return self.eof

    cpdef expect_response_to(self, bytes method):
        """Frame the next response as an answer to a request with this method."""
        self.request_was_head = method == b"HEAD"
        self.request_was_connect = method == b"CONNECT"

    # -- events ------------------------------------------------------------------------

    cpdef int next_event(self) except -1:
        if self.state == S_HEAD:
            return self._read_head()
        if self.state == S_BODY:
            return self._read_body()
        return CLOSED

    cdef int _read_head(self) except -1:
        if self.is_request:
            # RFC 9112 §2.2: ignore empty lines before a request line (some clients
            # send a CRLF after a POST body).
            while self.buf.startswith(b"\r\n", self.pos):
                self.pos += 2
        cdef Py_ssize_t end = self.buf.find(b"\r\n\r\n", max(self.pos, self.head_search_from))
        if end < 0:
            if len(self.buf) - self.pos > self.max_head_size:
                raise ProtocolError(f"head larger than {self.max_head_size} bytes")
            if self.eof:
                if self.pos >= len(self.buf):
                    self.state = S_EOF
                    return CLOSED
                raise ProtocolError("connection closed in the middle of a head")
            self.head_search_from = max(self.pos, len(self.buf) - 3)
            return NEED_DATA
        end += 4
        if end - self.pos > self.max_head_size:
            raise ProtocolError(f"head larger than {self.max_head_size} bytes")
        cdef bytes raw = self.buf[self.pos:end]
        self.pos = end
        self.head_search_from = end
        self.head = self._parse_head(raw)
        self._start_body(self.head)
        return HEAD

    cdef Head _parse_head(self, bytes raw):
        cdef Head head = Head.__new__(Head)
        head.fields = []
        head.content_length = -1
        cdef _HeadCollector c = self.collector
        c.head = head
        c.max_headers = self.max_headers
        c.error = None
        c.message_complete = False
        if self.parser is None:
            self.parser = (HttpRequestParser if self.is_request else HttpResponseParser)(c)
        try:
            self.parser.feed_data(raw)
        except HttpParserUpgrade:
            head.upgrade = True
        except BaseException as e:
            self.parser = None
            if c.error is None and isinstance(e, HttpParserError) and \
                    "CONNECT/Upgrade" in str(e):
                # llhttp pauses on a 101 even without an Upgrade field; httptools then
                # reports an error instead of HttpParserUpgrade.
                head.upgrade = True
            elif c.error is not None:
                raise c.error from None
            elif isinstance(e, HttpParserError):
                raise ProtocolError(str(e) or "malformed head") from None
            else:
                raise
        if not c.message_complete:
            # llhttp now waits for a body we frame ourselves: start afresh next time.
            self.parser = None
        cdef Py_ssize_t line_end = raw.find(b"\r\n")
        if self.is_request:
            method = raw[:raw.find(b" ")]
            head.method = _METHODS.get(method, method)
            head.version = raw[line_end - 8:line_end]
        else:
            head.version = raw[:8]
            head.status_code = int(raw[9:12])
            if head.reason is None:
                head.reason = b""
        if not head.version.startswith(b"HTTP/1."):
            raise ProtocolError(f"unsupported HTTP version {head.version!r}")
        head.keep_alive = _keep_alive(head)
        return head

    cdef void _start_body(self, Head head) except *:
        """Decide how the body of this message is delimited (RFC 9112 §6.3)."""
        self.framing = F_NONE
        if head.has_transfer_encoding and head.content_length >= 0:
            raise ProtocolError("both Transfer-Encoding and Content-Length")
        if self.is_request:
            if head.has_transfer_encoding:
                if not head.chunked:
                    raise ProtocolError("request Transfer-Encoding without final chunked")
                self.framing = F_CHUNKED
            elif head.content_length > 0:
                self.framing = F_LENGTH
        else:
            code = head.status_code
            if self.request_was_head or code < 200 or code == 204 or code == 304:
                pass
            elif self.request_was_connect and code < 300:
                pass
            elif head.chunked:
                self.framing = F_CHUNKED
            elif head.has_transfer_encoding:
                self.framing = F_CLOSE
            elif head.content_length >= 0:
                self.framing = F_LENGTH if head.content_length > 0 else F_NONE
            else:
                self.framing = F_CLOSE
        self._start_chunk_size()
        if self.framing == F_LENGTH:
            self.remaining = head.content_length
        self.state = S_BODY

    @property
    def body_is_close_delimited(self):
        """True when the current message's body ends only when the connection closes."""
        return self.framing == F_CLOSE

    @property
    def has_body(self):
        """True when the current message has a body to read (after HEAD)."""
        return self.framing != F_NONE

    cdef int _read_body(self) except -1:
        cdef Py_ssize_t avail = len(self.buf) - self.pos
        if self.framing == F_NONE:
            return self._end_message()
        if avail == 0:
            if self.eof:
                if self.framing == F_CLOSE:
                    return self._end_message()
                raise ProtocolError("connection closed in the middle of a body")
            return NEED_DATA
        if self.framing == F_CLOSE:
            self.chunk = self._take(avail)
            return BODY
        if self.framing == F_LENGTH:
            if avail >= self.remaining:
                avail = <Py_ssize_t>self.remaining
            self.remaining -= avail
            self.chunk = self._take(avail)
            if self.remaining == 0:
                self.framing = F_NONE
            return BODY
        return self._read_chunked()

    cdef bytes _take(self, Py_ssize_t n):
        """Hand out the next n bytes; the received object itself when it is all of it."""
        cdef bytes out
        if self.pos == 0 and n == len(self.buf):
            out = self.buf
        else:
            out = self.buf[self.pos:self.pos + n]
        self.pos += n
        if self.pos >= len(self.buf):
            self.buf = b""
            self.pos = 0
        return out

    cdef int _end_message(self) except -1:
        self.state = S_HEAD
        self.framing = F_NONE
        self.chunk = None
        return END

    cdef int _read_chunked(self) except -1:
        """Walk chunked framing over what is buffered; hand out raw or decoded bytes."""
        cdef Py_ssize_t start = self.pos
        cdef Py_ssize_t i = self.pos
        cdef Py_ssize_t n = len(self.buf)
        cdef const unsigned char[:] view = self.buf
        cdef Py_ssize_t take
        cdef list pieces = [] if self.decode else None
        while i < n and self.chunk_state != C_DONE:
            if self.chunk_state == C_DATA:
                take = n - i
                if take > self.remaining:
                    take = <Py_ssize_t>self.remaining
                if pieces is not None:
                    pieces.append(self.buf[i:i + take])
                i += take
                self.remaining -= take
                if self.remaining == 0:
                    self.chunk_state = C_DATA_CR
            else:
                self._framing_byte(view[i])
                i += 1
        self.pos = i
        if self.chunk_state == C_DONE:
            self.framing = F_NONE
        if pieces is not None:
            self.chunk = b"".join(pieces)
        elif start == 0 and i == n:
            self.chunk = self.buf
        else:
            self.chunk = self.buf[start:i]
        if self.pos >= n:
            self.buf = b""
            self.pos = 0
        if i == start:
            if self.eof:
                raise ProtocolError("connection closed in the middle of a chunked body")
            return NEED_DATA
        return BODY

    cdef void _framing_byte(self, unsigned char ch) except *:
        """One byte of chunked framing outside chunk data (RFC 9112 §7.1)."""
        cdef int state = self.chunk_state
        cdef int digit
        if state == C_SIZE:
            digit = _hex_value(ch)
            if digit >= 0:
                self.line_length += 1
                if self.line_length > MAX_CHUNK_SIZE_DIGITS:
                    raise ProtocolError("chunk size too large")
                self.remaining = self.remaining * 16 + digit
            elif self.line_length == 0:
                raise ProtocolError("invalid chunk size")
            elif ch == 13:
                self.chunk_state = C_SIZE_LF
            elif ch == 59:  # ';' starts a chunk extension
                self.chunk_state = C_EXT
            elif ch == 32 or ch == 9:  # BWS, allowed only before ';' (RFC 9112 §7.1.1)
                self.chunk_state = C_EXT_WS
            else:
                raise ProtocolError("invalid chunk size")
        elif state == C_EXT_WS:
            if ch == 59:
                self.chunk_state = C_EXT
            elif ch != 32 and ch != 9:
                raise ProtocolError("invalid chunk size line")
        elif state == C_EXT:
            if ch == 13:
                self.chunk_state = C_SIZE_LF
            elif ch == 10:
                raise ProtocolError("bare LF in chunk size line")
            else:
                self.line_length += 1
                if self.line_length > self.max_head_size:
                    raise ProtocolError("chunk extension too large")
        elif state == C_SIZE_LF:
            if ch != 10:
                raise ProtocolError("missing LF after chunk size")
            self.line_length = 0
            self.chunk_state = C_TRAILER if self.remaining == 0 else C_DATA
        elif state == C_DATA_CR:
            if ch != 13:
                raise ProtocolError("missing CRLF after chunk data")
            self.chunk_state = C_DATA_LF
        elif state == C_DATA_LF:
            if ch != 10:
                raise ProtocolError("missing CRLF after chunk data")
            self._start_chunk_size()
        elif state == C_TRAILER:
            # Trailer lines until an empty one (RFC 9112 §7.1.2), each ended by CRLF:
            # a bare LF would end the body here but not at a stricter upstream.
            if ch == 13:
                self.chunk_state = C_TRAILER_LF
            elif ch == 10:
                raise ProtocolError("bare LF in chunked trailer section")
            else:
                self.line_length += 1
                if self.line_length > self.max_head_size:
                    raise ProtocolError("trailer section too large")
        elif state == C_TRAILER_LF:
            if ch != 10:
                raise ProtocolError("missing LF in chunked trailer section")
            self.chunk_state = C_DONE if self.line_length == 0 else C_TRAILER
            self.line_length = 0

    cdef void _start_chunk_size(self):
        self.chunk_state = C_SIZE
        self.line_length = 0
        self.remaining = 0


cdef inline int _hex_value(unsigned char ch):
    if 48 <= ch <= 57:
        return ch - 48
    if 97 <= ch <= 102:
        return ch - 87
    if 65 <= ch <= 70:
        return ch - 55
    return -1


cdef bint _keep_alive(Head head):
    """Persistence per RFC 9112 §9.3: 1.1 unless "close"; 1.0 only with "keep-alive"."""
    if head.version == b"HTTP/1.1":
        return head.connection is None or b"close" not in head.connection
    return head.connection is not None and b"keep-alive" in head.connection


# Interned method names, so that comparing them elsewhere is cheap and allocation-free.
_METHODS = {m: m for m in (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS",
                          b"PATCH", b"CONNECT", b"TRACE")}


cdef class Relay:
    """One side of a byte tunnel: writes what it reads to the peer's transport.

    Back-pressure: when the peer's transport buffer fills, the peer's Relay gets
    `pause_writing` and pauses *this* side's reading, so memory stays bounded whatever
    the speeds of the two ends. `on_close(relay, exc)` is called once when this side's
    connection is lost; `eof_received` passes a FIN on as a half-close.

    A side connected before its pair exists (the upstream, while the client side is set
    up) keeps what it reads and pauses; `start()` passes that, and an early FIN, on.
    uvloop starts reading only after `connection_made` returns, so pausing there is
    not possible.
    """
    cdef public object transport
    cdef public Relay peer
    cdef public object on_close
    cdef public long long bytes_in
    cdef public bint eof
    cdef public bint lost
    cdef list early

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, bytes data):
        self.bytes_in += len(data)
        if self.peer is None:
            if self.early is None:
                self.early = []
            self.early.append(data)
            self.transport.pause_reading()
            return
        self.peer.transport.write(data)

    def eof_received(self):
        """Pass the FIN on (half-close); once both sides sent theirs, close both."""
        self.eof = True
        if self.peer is None:
            return True  # `start()` passes it on
        return self._pass_eof()

    cdef bint _pass_eof(self) except -1:
        peer_transport = self.peer.transport
        if self.peer.eof or not peer_transport.can_write_eof():
            peer_transport.close()
            return False
        peer_transport.write_eof()
        return True

    def start(self):
        """Once paired: forward what arrived before, and a FIN that came with it."""
        early, self.early = self.early, None
        if early:
            for data in early:
                self.peer.transport.write(data)
        if self.eof and not self.lost:
            if not self._pass_eof():
                self.transport.close()

    def connection_lost(self, exc):
        self.lost = True
        peer_transport = self.peer.transport if self.peer is not None else None
        if peer_transport is not None and not peer_transport.is_closing():
            peer_transport.close()
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            on_close(self, exc)

    def pause_writing(self):
        self.peer.transport.pause_reading()

    def resume_writing(self):
        self.peer.transport.resume_reading()


cpdef bytes build_head(bytes start_line, list fields, frozenset drop, list extra):
    """Serialize an HTTP/1 head in one join: start line, fields not in `drop`
    (lowercased names), then `extra` fields, then the empty line."""
    cdef list parts = [start_line, b"\r\n"]
    cdef bytes name
    for name, value in fields:
        if drop is not None and name.lower() in drop:
            continue
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")
    if extra:
        for name, value in extra:
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
