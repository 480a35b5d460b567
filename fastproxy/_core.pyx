# cython: language_level=3
"""The byte work on fastproxy's hot path.

`HTTP1Reader` is a sans-IO HTTP/1 message reader: feed it bytes, ask it for the next
event. Heads are validated and split by httptools (llhttp); bodies are framed here
(Content-Length, chunked, until close: RFC 9112 §6.3) so that a body that no addon needs
can be forwarded exactly as it arrived, without a Python object per chunk: a body event
hands out the received `bytes` object itself whenever the whole of it is body.

`Relay` is the protocol for one side of a tunnel: whatever it reads it writes to the
peer's transport, and the peer's write buffer pausing pauses this side's reading.

`Head` (a parsed head) and `Route` (where a request goes, `proxy.layers.http.routing`) are C
types declared in _core.pxd, so that the recorder's capture reads them as structs.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcmp, memcpy
from httptools import HttpRequestParser, HttpResponseParser, HttpParserError, HttpParserUpgrade

# Event codes returned by HTTP1Reader.next_event().
NEED_DATA = 0
HEAD = 1
BODY = 2
END = 3
CLOSED = 4

cdef enum ReaderState:
    S_HEAD
    S_BODY
    S_EOF

cdef enum Framing:  # RFC 9112 §6.3
    F_NONE
    F_LENGTH
    F_CHUNKED
    F_CLOSE

cdef enum ChunkState:  # where _framing_byte is in chunked framing (RFC 9112 §7.1)
    C_SIZE
    C_DATA
    C_DATA_CR
    C_DATA_LF
    C_TRAILER
    C_DONE
    C_SIZE_LF
    C_EXT
    C_EXT_WS
    C_TRAILER_LF
    C_EXT_NAME
    C_EXT_VALUE_START
    C_EXT_VALUE
    C_EXT_QUOTED
    C_EXT_QUOTED_PAIR
    C_EXT_AFTER_QUOTE
    C_EXT_NAME_WS
    C_TRAILER_NAME
    C_TRAILER_VALUE

cdef enum:
    MAX_CHUNK_SIZE_DIGITS = 15
    TRAILER_NAME_KEPT = 20  # longer than any name _FORBIDDEN_TRAILERS holds

# Byte classes of RFC 9110 §5.6.2 (tchar) and §5.5 (field-vchar, SP, HTAB, obs-text),
# filled once at import; the head scanner looks every byte up here.
cdef unsigned char _TCHAR[256]
cdef unsigned char _VALUE_CHAR[256]
cdef unsigned char _TARGET_CHAR[256]
cdef unsigned char _HOST_CHAR[256]


cdef void _fill_tables():
    cdef int c
    for c in range(256):
        _TCHAR[c] = (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122
                     or c in b"!#$%&'*+-.^_`|~")
        _VALUE_CHAR[c] = c == 9 or 32 <= c <= 126 or c >= 128
        _TARGET_CHAR[c] = 33 <= c <= 126  # RFC 9112 §3.2: visible ASCII, no SP
        # uri-host [":" port] (RFC 3986 §3.2.2): unreserved, pct-encoded, sub-delims,
        # ':' and the brackets of an IP literal; no SP, '@', '/' or '?'.
        _HOST_CHAR[c] = (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122
                         or c in b"-._~!$&'()*+,;=%:[]")


_fill_tables()


class ProtocolError(Exception):
    """The peer sent bytes that are not valid HTTP/1 (or exceed a limit)."""


@cython.freelist(64)
cdef class Head:
    """The parsed head of one HTTP/1 message: what the proxy needs to route and frame it.

    Header names and values are kept as received, in order, as (bytes, bytes) tuples.
    The fields that framing and hop-by-hop handling depend on are recorded while
    parsing, so that nobody has to search the header list again. Its fields are declared
    in _core.pxd.
    """

    def __repr__(self):
        if self.method is not None:
            return f"<Head {self.method!r} {self.target!r} {self.version!r}>"
        return f"<Head {self.status_code} {self.reason!r} {self.version!r}>"


@cython.freelist(64)
cdef class Route:
    """The upstream of one request and how its head is rewritten for it
    (`fastproxy.proxy.layers.http.routing.route_request` makes it; _core.pxd says what each
    field holds)."""

    def __init__(self, str scheme, str host, int port, bytes authority, bytes path,
                 bytes start_line, frozenset drop, list extra, str host_header):
        self.scheme = scheme
        self.host = host
        self.port = port
        self.authority = authority
        self.path = path
        self.start_line = start_line
        self.drop = drop
        self.extra = extra
        self.host_header = host_header

    def __repr__(self):
        return f"<Route {self.scheme}://{self.host}:{self.port} {self.start_line!r}>"


def head_fields(bytes raw not None) -> list:
    """The header fields of ``raw``, a head this module parsed (`Head.raw`), as
    `Head.fields` has them: the recorder hands a head's bytes over and splits them only
    when it has not seen its fields before."""
    cdef HTTP1Reader reader = HTTP1Reader(True, max_headers=1 << 30)
    cdef Head head = Head.__new__(Head)
    cdef const char *p = PyBytes_AS_STRING(raw)
    cdef const char *line_end = <const char*>memchr(p, 13, PyBytes_GET_SIZE(raw))
    if line_end == NULL or not raw.endswith(b"\r\n\r\n"):
        raise ValueError("not a whole head")
    head.fields = []
    head.content_length = -1
    reader._split_fields(head, raw, line_end - p + 2)
    return head.fields


cdef class _HeadCollector:
    """The httptools protocol object. llhttp validates the head at C speed; the only
    callback installed is message completion (httptools installs a C callback only for
    the methods a protocol defines), so no Python call or bytes object is made per
    header: `_split_fields` slices the validated head instead."""
    cdef bint message_complete

    def on_message_complete(self):
        self.message_complete = True


# Lowercased header names and what they mean for framing, cached by the name as sent
# (servers and clients repeat the same spellings); bounded against random names.
cdef dict _NAME_INFO = {}
cdef enum:
    NAME_CACHE_MAX = 1024

cdef enum HeaderCode:  # what a header name means for framing and hop-by-hop handling
    H_OTHER
    H_CONTENT_LENGTH
    H_TRANSFER_ENCODING
    H_HOST
    H_EXPECT
    H_CONNECTION
    H_HOP_BY_HOP
    H_UPGRADE
_NAME_CODES = {b"content-length": H_CONTENT_LENGTH, b"transfer-encoding": H_TRANSFER_ENCODING,
               b"host": H_HOST, b"expect": H_EXPECT, b"connection": H_CONNECTION,
               b"keep-alive": H_HOP_BY_HOP, b"proxy-connection": H_HOP_BY_HOP,
               b"te": H_HOP_BY_HOP, b"trailer": H_HOP_BY_HOP, b"upgrade": H_UPGRADE}


cdef tuple _name_info(bytes name):
    """(lowercased name, H_* code) of a header name."""
    info = _NAME_INFO.get(name)
    if info is None:
        lowered = name.lower()
        info = (lowered, _NAME_CODES.get(lowered, H_OTHER))
        if len(_NAME_INFO) < NAME_CACHE_MAX:
            _NAME_INFO[name] = info
    return <tuple>info


cpdef bytes lowered_name(bytes name):
    """A header name in lower case (cached)."""
    return <bytes>(_name_info(name)[0])


cdef inline void _note_header(Head head, bytes name, bytes value) except *:
    """Record what framing and hop-by-hop handling need from one header field."""
    cdef int code = _name_info(name)[1]
    if code == H_OTHER:
        return
    if code == H_CONTENT_LENGTH:
        # RFC 9110 §8.6: 1*DIGIT. A list ("5, 5") or a second field is refused: two
        # parsers that resolve them differently are how requests get smuggled.
        if not value.isdigit() or len(value) > 18:
            raise ProtocolError(f"invalid Content-Length {value!r}")
        if head.content_length >= 0:
            raise ProtocolError("more than one Content-Length header field")
        head.content_length = int(value)
    elif code == H_TRANSFER_ENCODING:
        head.has_hop_headers = True
        head.transfer_encoding = value if head.transfer_encoding is None \
            else head.transfer_encoding + b"," + value
        head.has_transfer_encoding = True
    elif code == H_HOST:
        if head.method is not None:  # RFC 9112 §3.2: a second or an invalid Host is a 400
            if head.host is not None:
                raise ProtocolError("more than one Host header field")
            if not _all_in(value, _HOST_CHAR):
                raise ProtocolError(f"invalid Host {value[:100]!r}")
        head.host = value
    elif code == H_EXPECT:
        if value.lower() == b"100-continue":
            head.expect_continue = True
    else:
        head.has_hop_headers = True
        if code == H_CONNECTION:
            value = value.lower()
            head.connection = value if head.connection is None else head.connection + b"," + value
        elif code == H_UPGRADE:
            head.upgrade_to = value.lower()


cdef frozenset _NO_TOKENS = frozenset()
cdef dict _TOKENS_CACHE = {}
_FRAMING_FIELDS = frozenset((b"content-length", b"transfer-encoding"))
_FORBIDDEN_TRAILERS = frozenset((b"content-length", b"transfer-encoding", b"host", b"trailer",
                                 b"connection", b"content-type", b"content-encoding"))


cpdef frozenset connection_tokens(bytes value):
    """The lowercased field names a `Connection` value lists (RFC 9110 §7.6.1).

    Raises ProtocolError for an element that is not a token, and for a framing field
    listed there: dropping that field as hop-by-hop while its body is still relayed with
    the original framing lets the next hop read the body as another message (request
    smuggling, response splitting). Cached: peers send the same few values.
    """
    if value is None:
        return _NO_TOKENS
    tokens = _TOKENS_CACHE.get(value)
    if tokens is not None:
        return <frozenset>tokens
    found = set()
    for part in value.split(b","):
        token = part.strip(b" \t").lower()
        if not token:
            continue  # RFC 9110 §5.6.1: empty list elements are ignored
        if not _is_token(token):
            raise ProtocolError(f"invalid Connection token {token[:64]!r}")
        if token in _FRAMING_FIELDS:
            raise ProtocolError(f"Connection lists the framing field {token.decode()}")
        found.add(token)
    result = frozenset(found)
    if len(_TOKENS_CACHE) < NAME_CACHE_MAX:
        _TOKENS_CACHE[value] = result
    return result


cdef bint _all_in(bytes data, const unsigned char* table):
    """Whether every byte of `data` is in the class `table` marks."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(data)):
        if not table[p[i]]:
            return False
    return True


cdef bint _is_token(bytes data):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(data)
    if n == 0:
        return False
    for i in range(n):
        if not _TCHAR[p[i]]:
            return False
    return True


cdef bint _final_coding_is_chunked(bytes transfer_encoding) except -1:
    """Whether the codings end with chunked (RFC 9112 §6.3: a response whose final
    coding is another is read until close; a request must be plain chunked, which
    `_check_semantics` requires); ProtocolError for an element that is not a token."""
    cdef list codings = []
    cdef bytes coding
    for part in transfer_encoding.split(b","):
        coding = part.strip(b" \t").lower()
        if not coding:
            continue  # empty list elements are ignored (RFC 9110 §5.6.1)
        if not _is_token(coding):
            raise ProtocolError(f"invalid transfer coding {coding[:64]!r}")
        codings.append(coding)
    if not codings:
        raise ProtocolError("empty Transfer-Encoding")
    return <bytes>codings[len(codings) - 1] == b"chunked"


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
    cdef unsigned char trailer_name[TRAILER_NAME_KEPT]  # a trailer name, lowercased
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
        cdef const char* p = PyBytes_AS_STRING(self.buf)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(self.buf)
        if self.is_request:
            # RFC 9112 §2.2: ignore empty lines before a request line (some clients
            # send a CRLF after a POST body).
            while self.pos + 1 < size and p[self.pos] == 13 and p[self.pos + 1] == 10:
                self.pos += 2
        cdef Py_ssize_t end = _find_head_end(p, max(self.pos, self.head_search_from),
                                             self.pos, size)
        if end < 0:
            if len(self.buf) - self.pos > self.max_head_size:
                raise ProtocolError(f"head larger than {self.max_head_size} bytes")
            if self.eof:
                if self.pos >= len(self.buf):
                    self.state = S_EOF
                    return CLOSED
                raise ProtocolError("connection closed in the middle of a head")
            self.head_search_from = size
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
        """Check a whole head byte by byte (RFC 9112 §§3-5, as llhttp's strict mode),
        split it into a Head, and have llhttp validate it too.

        Every piece comes from where the scan found it, bounds-checked; nothing is read
        at an assumed offset."""
        cdef Head head = Head.__new__(Head)
        head.fields = []
        head.content_length = -1
        head.raw = raw
        cdef Py_ssize_t fields_start
        if self.is_request:
            fields_start = _split_request_line(head, raw)
        else:
            fields_start = _split_status_line(head, raw)
        self._split_fields(head, raw, fields_start)
        self._validate(raw)
        self._check_semantics(head)
        return head

    cdef void _check_semantics(self, Head head) except *:
        """What the fields mean together: persistence, upgrade, transfer codings."""
        head.connection_tokens = connection_tokens(head.connection)
        head.keep_alive = _keep_alive(head)
        if head.transfer_encoding is not None:
            if head.version == b"HTTP/1.0" and self.is_request:
                # RFC 9112 §6.1: a server MAY treat it as faulty; 1.0 intermediaries
                # would not understand it, so it is a smuggling vector.
                raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
            head.chunked = _final_coding_is_chunked(head.transfer_encoding)
            if self.is_request and head.transfer_encoding.strip(b" \t").lower() != b"chunked":
                # RFC 9112 §6.1: a coding the proxy does not decode (gzip, identity...)
                # may be read differently by the next hop; only plain chunked is taken.
                raise ProtocolError("request transfer coding other than chunked")
        if self.is_request:
            # Only a WebSocket upgrade is passed end to end; any other Upgrade (h2c,
            # TLS/1.0) is hop-by-hop and dropped, so the connection stays HTTP/1.
            head.upgrade = head.upgrade_to == b"websocket" and \
                b"upgrade" in head.connection_tokens
        else:
            head.upgrade = head.status_code == 101

    cdef void _validate(self, bytes raw) except *:
        """Run llhttp over the head too (a second, independent check of RFC 9112)."""
        cdef _HeadCollector c = self.collector
        c.message_complete = False
        if self.parser is None:
            self.parser = (HttpRequestParser if self.is_request else HttpResponseParser)(c)
        try:
            self.parser.feed_data(raw)
        except HttpParserUpgrade:
            self.parser = None
            return
        except HttpParserError as e:
            self.parser = None
            if "CONNECT/Upgrade" in str(e):
                # llhttp pauses on a 101 even without an Upgrade field; httptools then
                # reports an error instead of HttpParserUpgrade.
                return
            raise ProtocolError(str(e) or "malformed head") from None
        if not c.message_complete or not self.parser.should_keep_alive():
            # llhttp now waits for a body we frame ourselves, or takes nothing after
            # this message (Connection: close): start afresh next time.
            self.parser = None

    cdef void _split_fields(self, Head head, bytes raw, Py_ssize_t i) except *:
        """Check and split the field lines from offset i to the head's end (RFC 9112
        §5: `token ":" OWS value OWS CRLF`). A name that is not a token (which includes
        obs-fold and whitespace before the colon), a value with a CTL other than HTAB,
        and a CR not followed by LF are refused."""
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
        cdef Py_ssize_t end = PyBytes_GET_SIZE(raw) - 2  # the final CRLF
        cdef Py_ssize_t colon, value_start, value_end
        cdef list fields = head.fields
        cdef bytes name, value
        while i < end:
            colon = i
            while colon < end and _TCHAR[p[colon]]:
                colon += 1
            if colon == i or colon >= end or p[colon] != 58:  # ':'
                raise ProtocolError("malformed header line")
            if len(fields) >= self.max_headers:
                raise ProtocolError(f"more than {self.max_headers} header fields")
            value_end = colon + 1
            while value_end < end and _VALUE_CHAR[p[value_end]]:
                value_end += 1
            if value_end >= end or p[value_end] != 13 or p[value_end + 1] != 10:
                raise ProtocolError("invalid character in a header field")
            line_end = value_end
            value_start = colon + 1
            while value_start < value_end and (p[value_start] == 32 or p[value_start] == 9):
                value_start += 1
            while value_end > value_start and (p[value_end - 1] == 32 or p[value_end - 1] == 9):
                value_end -= 1
            name = PyBytes_FromStringAndSize(<const char*>p + i, colon - i)
            value = PyBytes_FromStringAndSize(<const char*>p + value_start,
                                              value_end - value_start)
            fields.append((name, value))
            _note_header(head, name, value)
            i = line_end + 2

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
        elif state == C_EXT or C_EXT_NAME <= state <= C_EXT_NAME_WS:
            self._extension_byte(state, ch)
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
            # Trailer lines until an empty one (RFC 9112 §7.1.2), each a field line
            # ended by CRLF: a bare LF would end the body here but not at a stricter
            # upstream, and a line that is not `name: value` is not forwarded.
            if ch == 13:
                self.chunk_state = C_TRAILER_LF
            elif ch == 10:
                raise ProtocolError("bare LF in chunked trailer section")
            elif _TCHAR[ch]:
                self.trailer_name[0] = ch | 0x20 if 65 <= ch <= 90 else ch
                self._count_line_byte("trailer section too large")
                self.chunk_state = C_TRAILER_NAME
            else:
                raise ProtocolError("malformed trailer line")
        elif state == C_TRAILER_NAME:
            if ch == 58:  # ':'
                self._check_trailer_name()
                self.chunk_state = C_TRAILER_VALUE
            elif not _TCHAR[ch]:
                raise ProtocolError("malformed trailer field name")
            elif self.line_length < TRAILER_NAME_KEPT:
                self.trailer_name[self.line_length] = ch | 0x20 if 65 <= ch <= 90 else ch
            self._count_line_byte("trailer section too large")
        elif state == C_TRAILER_VALUE:
            if ch == 13:
                self.chunk_state = C_TRAILER_LF
            elif _VALUE_CHAR[ch]:
                self._count_line_byte("trailer section too large")
            elif ch == 10:
                raise ProtocolError("bare LF in chunked trailer section")
            else:
                raise ProtocolError("invalid character in a trailer field")
        elif state == C_TRAILER_LF:
            if ch != 10:
                raise ProtocolError("missing LF in chunked trailer section")
            self.chunk_state = C_DONE if self.line_length == 0 else C_TRAILER
            self.line_length = 0

    cdef void _extension_byte(self, int state, unsigned char ch) except *:
        """One byte of the chunk extensions after a chunk size (RFC 9112 §7.1.1):
        `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`."""
        self._count_line_byte("chunk extension too large")
        cdef bint space = ch == 32 or ch == 9
        if ch == 10:
            raise ProtocolError("bare LF in chunk size line")
        if state == C_EXT:  # after ';': a name starts
            if _TCHAR[ch]:
                self.chunk_state = C_EXT_NAME
            elif not space:
                raise ProtocolError("chunk extension without a name")
        elif state == C_EXT_NAME or state == C_EXT_VALUE:
            if ch == 13:
                self.chunk_state = C_SIZE_LF
            elif ch == 59:
                self.chunk_state = C_EXT
            elif ch == 61 and state == C_EXT_NAME:  # '='
                self.chunk_state = C_EXT_VALUE_START
            elif space:
                self.chunk_state = C_EXT_NAME_WS if state == C_EXT_NAME else C_EXT_AFTER_QUOTE
            elif not _TCHAR[ch]:
                raise ProtocolError("invalid chunk extension")
        elif state == C_EXT_NAME_WS:  # BWS after a name: "=", ";" or the line's end
            if ch == 61:
                self.chunk_state = C_EXT_VALUE_START
            elif ch == 59:
                self.chunk_state = C_EXT
            elif ch == 13:
                self.chunk_state = C_SIZE_LF
            elif not space:
                raise ProtocolError("invalid chunk extension")
        elif state == C_EXT_VALUE_START:
            if ch == 34:  # '"'
                self.chunk_state = C_EXT_QUOTED
            elif _TCHAR[ch]:
                self.chunk_state = C_EXT_VALUE
            elif not space:
                raise ProtocolError("invalid chunk extension value")
        elif state == C_EXT_QUOTED:  # qdtext (RFC 9110 §5.6.4)
            if ch == 34:
                self.chunk_state = C_EXT_AFTER_QUOTE
            elif ch == 92:  # backslash
                self.chunk_state = C_EXT_QUOTED_PAIR
            elif not _VALUE_CHAR[ch]:
                raise ProtocolError("invalid character in a chunk extension")
        elif state == C_EXT_QUOTED_PAIR:
            if not _VALUE_CHAR[ch]:
                raise ProtocolError("invalid character in a chunk extension")
            self.chunk_state = C_EXT_QUOTED
        elif state == C_EXT_AFTER_QUOTE:  # after a value: BWS, then ";" or the line's end
            if ch == 13:
                self.chunk_state = C_SIZE_LF
            elif ch == 59:
                self.chunk_state = C_EXT
            elif not space:
                raise ProtocolError("invalid chunk extension")

    cdef void _check_trailer_name(self) except *:
        """Refuse a trailer field that frames or routes the message (RFC 9110 §6.5.1):
        a next hop that merges trailers into the header section would see it there."""
        if self.line_length > TRAILER_NAME_KEPT:
            return
        name = PyBytes_FromStringAndSize(<const char*>self.trailer_name, self.line_length)
        if name in _FORBIDDEN_TRAILERS:
            raise ProtocolError(f"{name.decode()} in a chunked trailer section")

    cdef inline void _count_line_byte(self, str message) except *:
        self.line_length += 1
        if self.line_length > self.max_head_size:
            raise ProtocolError(message)

    cdef void _start_chunk_size(self):
        self.chunk_state = C_SIZE
        self.line_length = 0
        self.remaining = 0


cdef Py_ssize_t _split_request_line(Head head, bytes raw) except -1:
    """`method SP request-target SP HTTP-version CRLF` (RFC 9112 §3), with exactly one
    SP between the parts; returns where the field lines start."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef Py_ssize_t i = 0, target_start
    while i < n and _TCHAR[p[i]]:
        i += 1
    if i == 0 or i >= n or p[i] != 32:
        raise ProtocolError("malformed request line")
    method = raw[:i]
    i += 1
    target_start = i
    while i < n and _TARGET_CHAR[p[i]]:
        i += 1
    if i == target_start or i >= n or p[i] != 32:
        raise ProtocolError("malformed request line")
    head.method = _METHODS.get(method, method)
    head.target = raw[target_start:i]
    head.version = _version(p, n, i + 1)
    if i + 11 > n or p[i + 9] != 13 or p[i + 10] != 10:
        raise ProtocolError("malformed request line")
    return i + 11


cdef Py_ssize_t _split_status_line(Head head, bytes raw) except -1:
    """`HTTP-version SP 3DIGIT SP [reason-phrase] CRLF` (RFC 9112 §4; a missing SP
    before an empty reason is tolerated, as llhttp does); returns where the field lines
    start."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef Py_ssize_t i, reason_start
    head.version = _version(p, n, 0)
    if n < 14 or p[8] != 32 or not (49 <= p[9] <= 57 and 48 <= p[10] <= 57
                                     and 48 <= p[11] <= 57):
        # RFC 9110 §15: three digits; nothing below 100 exists.
        raise ProtocolError("malformed status line")
    head.status_code = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    i = 12
    if p[i] == 32:
        i += 1
    reason_start = i
    while i < n and _VALUE_CHAR[p[i]]:
        i += 1
    if i + 1 >= n or p[i] != 13 or p[i + 1] != 10 or (reason_start == 12 and i != 12):
        raise ProtocolError("malformed status line")
    head.reason = raw[reason_start:i]
    return i + 2


cdef bytes _version(const unsigned char* p, Py_ssize_t n, Py_ssize_t i):
    """The interned b"HTTP/1.1" or b"HTTP/1.0" at offset i of a head of n bytes."""
    if i + 8 <= n and memcmp(p + i, b"HTTP/1.", 7) == 0:
        if p[i + 7] == 49:
            return b"HTTP/1.1"
        if p[i + 7] == 48:
            return b"HTTP/1.0"
    raise ProtocolError("unsupported or missing HTTP version")


cdef Py_ssize_t _find_head_end(const char* p, Py_ssize_t start, Py_ssize_t first,
                               Py_ssize_t size) except -2:
    """Offset of the CRLFCRLF that ends the head beginning at `first`, searching from
    `start`; -1 if it is not all here. Every LF must follow a CR (RFC 9112 §2.2 lets a
    recipient accept a bare LF, but an upstream that reads it differently would see
    other header lines than we did), so a bare LF is refused at once instead of
    waiting for a CRLFCRLF that never comes."""
    cdef const char* found
    cdef Py_ssize_t i = start
    while i < size:
        found = <const char*>memchr(p + i, 10, size - i)
        if found == NULL:
            return -1
        i = found - p
        if i == first or p[i - 1] != 13:
            raise ProtocolError("bare LF in head")
        if i - 3 >= first and p[i - 2] == 10 and p[i - 3] == 13:
            return i - 3
        i += 1
    return -1


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
        return b"close" not in head.connection_tokens
    return b"keep-alive" in head.connection_tokens


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
    """Serialize an HTTP/1 head into one bytes object: start line, the fields whose
    lowercased names are not in `drop`, then `extra` fields, then the empty line.

    Sized first and filled with memcpy: no intermediate list or join."""
    cdef list kept = fields if drop is None else \
        [field for field in fields if lowered_name(field[0]) not in drop]
    cdef Py_ssize_t total = PyBytes_GET_SIZE(start_line) + 4
    total += _fields_size(kept)
    if extra:
        total += _fields_size(extra)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* dst = PyBytes_AS_STRING(out)
    dst = _put(dst, start_line)
    dst[0] = 13
    dst[1] = 10
    dst = _put_fields(dst + 2, kept)
    if extra:
        dst = _put_fields(dst, extra)
    dst[0] = 13
    dst[1] = 10
    return out


cdef Py_ssize_t _fields_size(list fields) except -1:
    cdef Py_ssize_t total = 0
    cdef bytes name, value
    for name, value in fields:
        total += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
    return total


cdef inline char* _put(char* dst, bytes data):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    memcpy(dst, PyBytes_AS_STRING(data), n)
    return dst + n


cdef char* _put_fields(char* dst, list fields) except NULL:
    cdef bytes name, value
    for name, value in fields:
        dst = _put(dst, name)
        dst[0] = 58  # ':'
        dst[1] = 32
        dst = _put(dst + 2, value)
        dst[0] = 13
        dst[1] = 10
        dst += 2
    return dst


