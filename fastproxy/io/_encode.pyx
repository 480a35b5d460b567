# cython: language_level=3, cdivision=True, boundscheck=False, wraparound=False
"""The writer's encoder: captured HTTP/1 exchanges to flow-file records, in C.

`FlowBuffer.exchange` turns the tuple of a captured exchange (`Capture.data` in
`fastproxy.io._handover`) into the bytes ``tnetstring.dumps(exchange_state(...))`` gives
(tests/test_recorder.py compares them with ``dumps(HTTPFlow.get_state())``), written
straight into one growing buffer that holds every record of a batch: the writer process
then writes it with one call.

Every size is known before anything is written (the bodies and the connection states are
bytes already, the few floats are formatted first), so each length prefix is written once,
in its place, and nothing is moved afterwards. Like mitmproxy's tnetstring, a dict's items
are written last to first. Connection states come encoded (the writer encodes each once);
header fields are encoded field by field, which in C costs less than looking them up in a
cache would (hashing a tuple of fresh bytes objects reads them all anyway).

Flow ids are random UUID4 strings formatted as `fastproxy.ids.new_id` formats them, from
``os.urandom`` bytes fetched 4 KiB at a time instead of 16 bytes (one syscall) per flow.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport frexp, ldexp
from libc.string cimport memcpy, strlen

import os

from fastproxy.flow import FLOW_FORMAT_VERSION
from fastproxy.io import tnetstring
from fastproxy.io.bodies import dechunk

cdef extern from *:
    ctypedef unsigned long long uint128 "unsigned __int128"

cdef extern from "Python.h":
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags,
                                int *ptype) except NULL
    int Py_DTSF_ADD_DOT_0
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)

cdef enum:
    FLOAT_MAX = 32  # bytes for a formatted number: repr() of a double has at most 24
    ID_POOL = 4096  # random bytes fetched at a time for flow ids
    KEEP_CAPACITY = 4 << 20  # a larger buffer is freed once taken
    N_FIELDS = 25  # the slots of the tuple `Capture.data` makes

cdef bytes NONE = b"0:~"
cdef bytes EMPTY_STR = b"0:;"
cdef bytes EMPTY_DICT = b"0:}"
cdef bytes FALSE = b"5:false!"
cdef bytes HTTP = b"4:http;"
cdef bytes HEX = b"0123456789abcdef"
cdef bytes VARIANT = b"89ab"


cdef inline Py_ssize_t digits(Py_ssize_t n) noexcept:
    cdef Py_ssize_t d = 1
    while n >= 10:
        n //= 10
        d += 1
    return d


cdef inline Py_ssize_t leaf_size(Py_ssize_t n) noexcept:
    """The size of ``N:<n bytes><tag>``."""
    return digits(n) + n + 2


cdef bytes tkey(str name):
    return tnetstring.dumps(name)


cdef bytes K_PATH = tkey("path"), K_AUTHORITY = tkey("authority"), K_SCHEME = tkey("scheme")
cdef bytes K_METHOD = tkey("method"), K_PORT = tkey("port"), K_HOST = tkey("host")
cdef bytes K_TS_END = tkey("timestamp_end"), K_TS_START = tkey("timestamp_start")
cdef bytes K_TRAILERS = tkey("trailers"), K_CONTENT = tkey("content")
cdef bytes K_HEADERS = tkey("headers"), K_HTTP_VERSION = tkey("http_version")
cdef bytes K_REASON = tkey("reason"), K_STATUS = tkey("status_code")
cdef bytes K_WEBSOCKET = tkey("websocket"), K_RESPONSE = tkey("response")
cdef bytes K_REQUEST = tkey("request"), K_BACKUP = tkey("backup")
cdef bytes K_CREATED = tkey("timestamp_created"), K_COMMENT = tkey("comment")
cdef bytes K_METADATA = tkey("metadata"), K_MARKED = tkey("marked")
cdef bytes K_REPLAY = tkey("is_replay"), K_INTERCEPTED = tkey("intercepted")
cdef bytes K_SERVER = tkey("server_conn"), K_CLIENT = tkey("client_conn")
cdef bytes K_ERROR = tkey("error"), K_ID = tkey("id"), K_TYPE = tkey("type")
cdef bytes K_VERSION = tkey("version"), K_MSG = tkey("msg"), K_TIMESTAMP = tkey("timestamp")

# The constant items of a flow dict, in output order, around the varying ones.
cdef bytes FLOW_HEAD = K_WEBSOCKET + NONE  # then response, request
cdef bytes FLOW_MIDDLE = (K_BACKUP + NONE)  # then timestamp_created
cdef bytes FLOW_CONSTANTS = (K_COMMENT + EMPTY_STR + K_METADATA + EMPTY_DICT + K_MARKED
                             + EMPTY_STR + K_REPLAY + NONE + K_INTERCEPTED + FALSE)
cdef bytes FLOW_TAIL = K_TYPE + HTTP + K_VERSION + tnetstring.dumps(FLOW_FORMAT_VERSION)


@cython.final
cdef class FlowBuffer:
    """Encoded flow records, appended one after the other; `take` empties it."""

    def __cinit__(self):
        self.data = NULL
        self.length = 0
        self.capacity = 0
        self.ids = b""
        self.ids_used = ID_POOL

    def __dealloc__(self):
        PyMem_Free(self.data)

    def __len__(self):
        return self.length

    def take(self) -> bytes:
        """Everything appended so far, as one bytes object; the buffer is empty after."""
        cdef bytes out = PyBytes_FromStringAndSize(self.data, self.length)
        self.length = 0
        if self.capacity > KEEP_CAPACITY:  # a batch of big bodies: don't hold on to it
            PyMem_Free(self.data)
            self.data, self.capacity = NULL, 0
        return out

    def append(self, bytes record not None) -> None:
        """Append an already encoded record (flows not captured as exchanges)."""
        self.put(record)

    def exchange(self, tuple data not None, client_conn, server_conn, limit) -> bool:
        """Append the record of the exchange ``data`` (`Capture.data`) with these
        encoded connection states; False, with nothing appended, when a body is longer
        than ``limit`` (the caller cuts it and marks the flow: the rare, general path)."""
        cdef Py_ssize_t start = self.length
        if not isinstance(client_conn, bytes) or not isinstance(server_conn, bytes):
            raise TypeError("connection states come encoded (bytes)")
        if PyTuple_GET_SIZE(data) != N_FIELDS:
            raise ValueError(f"an exchange has {N_FIELDS} fields, not {len(data)}")
        if limit is not None:
            resp_size = data[20]
            if data[11] > limit or (resp_size is not None and resp_size > limit):
                return False
        try:
            self.write_exchange(data, client_conn, server_conn)
        except BaseException:
            self.length = start  # no torn record
            raise
        return True

    # -- the layout -------------------------------------------------------------------

    cdef int write_exchange(self, tuple data, object client_conn, object server_conn) except -1:
        """The record; ``client_conn`` and ``server_conn`` are bytes (or a subclass)."""
        cdef char started[FLOAT_MAX]
        cdef char req_end[FLOAT_MAX]
        cdef char resp_start[FLOAT_MAX]
        cdef char resp_end[FLOAT_MAX]
        cdef char error_ts[FLOAT_MAX]
        cdef char port_text[FLOAT_MAX]
        cdef char status_text[FLOAT_MAX]
        cdef Py_ssize_t n_started, n_req_end, n_resp_start = 0, n_resp_end = 0, n_error_ts = 0
        cdef Py_ssize_t n_port, n_status = 0
        cdef Py_ssize_t request_size, response_size = 3, error_size = 3, flow_size
        cdef Py_ssize_t response_content = 0, error_content = 0
        cdef Py_ssize_t req_headers_size, resp_headers_size = 0
        cdef bytes host, req_body, resp_body, error = None, host_header = None
        cdef bytes method, authority, path, version, resp_version, reason
        cdef list fields, resp_fields
        (t_start, method, scheme, host_str, port, authority, path, version, fields,
         host_header_str, req_body, req_size, req_chunked, t_req_end,
         resp_version, status, reason, resp_fields, t_resp_start, resp_body, resp_size,
         resp_chunked, t_resp_end, error_str, t_error) = data
        cdef bytes scheme_b = scheme.encode()
        host = utf8(host_str)
        if host_header_str is not None:
            host_header = utf8(host_header_str)
        if req_body is not None and req_chunked:
            req_body = dechunk(req_body)
        n_started = format_float(t_start, started)
        if t_req_end is t_start or t_req_end == t_start:  # bodyless: ends with its head
            memcpy(req_end, started, n_started)
            n_req_end = n_started
        else:
            n_req_end = format_float(t_req_end, req_end)
        n_port = format_int(port, port_text)
        req_headers_size = fields_size(fields, host_header)
        request_size = (
            len(K_PATH) + leaf_size(len(path)) + len(K_AUTHORITY) + leaf_size(len(authority))
            + len(K_SCHEME) + leaf_size(len(scheme_b)) + len(K_METHOD) + leaf_size(len(method))
            + len(K_PORT) + n_port + len(K_HOST) + leaf_size(len(host))
            + len(K_TS_END) + n_req_end + len(K_TS_START) + n_started
            + len(K_TRAILERS) + 3 + len(K_CONTENT) + optional_size(req_body)
            + len(K_HEADERS) + leaf_size(req_headers_size)
            + len(K_HTTP_VERSION) + leaf_size(len(version)))
        if status is not None:
            if resp_body is not None and resp_chunked:
                resp_body = dechunk(resp_body)
            n_resp_start = format_float(t_resp_start, resp_start)
            n_resp_end = format_float(t_resp_end, resp_end)
            n_status = format_int(status, status_text)
            resp_headers_size = fields_size(resp_fields, None)
            response_content = (
                len(K_REASON) + leaf_size(len(reason)) + len(K_STATUS) + n_status
                + len(K_TS_END) + n_resp_end + len(K_TS_START) + n_resp_start
                + len(K_TRAILERS) + 3 + len(K_CONTENT) + optional_size(resp_body)
                + len(K_HEADERS) + leaf_size(resp_headers_size)
                + len(K_HTTP_VERSION) + leaf_size(len(resp_version)))
            response_size = leaf_size(response_content)
        if error_str is not None:
            error = utf8(error_str)
            n_error_ts = format_float(t_error, error_ts)
            error_content = len(K_TIMESTAMP) + n_error_ts + len(K_MSG) + leaf_size(len(error))
            error_size = leaf_size(error_content)
        flow_size = (len(FLOW_HEAD) + len(K_RESPONSE) + response_size
                     + len(K_REQUEST) + leaf_size(request_size) + len(FLOW_MIDDLE)
                     + len(K_CREATED) + n_started + len(FLOW_CONSTANTS)
                     + len(K_SERVER) + PyBytes_GET_SIZE(server_conn)
                     + len(K_CLIENT) + PyBytes_GET_SIZE(client_conn)
                     + len(K_ERROR) + error_size + len(K_ID) + 40 + len(FLOW_TAIL))
        self.reserve(leaf_size(flow_size))
        self.prefix(flow_size)
        self.put(FLOW_HEAD)
        self.put(K_RESPONSE)
        if status is None:
            self.put(NONE)
        else:
            self.prefix(response_content)
            self.put(K_REASON)
            self.leaf(reason, b",")
            self.put(K_STATUS)
            self.raw(status_text, n_status)
            self.put(K_TS_END)
            self.raw(resp_end, n_resp_end)
            self.put(K_TS_START)
            self.raw(resp_start, n_resp_start)
            self.put(K_TRAILERS)
            self.put(NONE)
            self.put(K_CONTENT)
            self.optional(resp_body)
            self.put(K_HEADERS)
            self.fields(resp_fields, None, resp_headers_size)
            self.put(K_HTTP_VERSION)
            self.leaf(resp_version, b",")
            self.tag(b"}")
        self.put(K_REQUEST)
        self.prefix(request_size)
        self.put(K_PATH)
        self.leaf(path, b",")
        self.put(K_AUTHORITY)
        self.leaf(authority, b",")
        self.put(K_SCHEME)
        self.leaf(scheme_b, b",")
        self.put(K_METHOD)
        self.leaf(method, b",")
        self.put(K_PORT)
        self.raw(port_text, n_port)
        self.put(K_HOST)
        self.leaf(host, b";")
        self.put(K_TS_END)
        self.raw(req_end, n_req_end)
        self.put(K_TS_START)
        self.raw(started, n_started)
        self.put(K_TRAILERS)
        self.put(NONE)
        self.put(K_CONTENT)
        self.optional(req_body)
        self.put(K_HEADERS)
        self.fields(fields, host_header, req_headers_size)
        self.put(K_HTTP_VERSION)
        self.leaf(version, b",")
        self.tag(b"}")
        self.put(FLOW_MIDDLE)
        self.put(K_CREATED)
        self.raw(started, n_started)
        self.put(FLOW_CONSTANTS)
        self.put(K_SERVER)
        self.raw(PyBytes_AS_STRING(server_conn), PyBytes_GET_SIZE(server_conn))
        self.put(K_CLIENT)
        self.raw(PyBytes_AS_STRING(client_conn), PyBytes_GET_SIZE(client_conn))
        self.put(K_ERROR)
        if error is None:
            self.put(NONE)
        else:
            self.prefix(error_content)
            self.put(K_TIMESTAMP)
            self.raw(error_ts, n_error_ts)
            self.put(K_MSG)
            self.leaf(error, b";")
            self.tag(b"}")
        self.put(K_ID)
        self.new_id()
        self.put(FLOW_TAIL)
        self.tag(b"}")
        return 0

    cdef int fields(self, list fields, bytes host, Py_ssize_t size) except -1:
        """Header fields as a list of [name, value] lists; with ``host``, every Host
        value replaced by it, or a Host field first if there was none (as
        `capture.request_headers`)."""
        cdef tuple field
        cdef bytes name, value
        self.prefix(size)
        if host is not None and not has_host(fields):
            self.pair(b"Host", host)
        for field in fields:
            name = <bytes>PyTuple_GET_ITEM(field, 0)
            value = <bytes>PyTuple_GET_ITEM(field, 1)
            if host is not None and is_host(name):
                value = host
            self.pair(name, value)
        self.tag(b"]")
        return 0

    cdef int pair(self, bytes name, bytes value) except -1:
        self.prefix(leaf_size(len(name)) + leaf_size(len(value)))
        self.leaf(name, b",")
        self.leaf(value, b",")
        self.tag(b"]")
        return 0

    cdef int optional(self, bytes value) except -1:
        if value is None:
            self.put(NONE)
        else:
            self.leaf(value, b",")
        return 0

    # -- the buffer -------------------------------------------------------------------

    cdef int reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self.length + extra, capacity = self.capacity or 65536
        cdef char *data
        if need <= self.capacity:
            return 0
        while capacity < need:
            capacity *= 2
        data = <char*>PyMem_Realloc(self.data, capacity)
        if data == NULL:
            raise MemoryError()
        self.data, self.capacity = data, capacity
        return 0

    cdef inline int put(self, bytes value) except -1:
        return self.raw(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))

    cdef inline int tag(self, bytes value) except -1:
        return self.raw(PyBytes_AS_STRING(value), 1)

    cdef inline int prefix(self, Py_ssize_t n) except -1:
        """``N:``, the length prefix of ``n`` bytes of content."""
        cdef char text[24]
        cdef Py_ssize_t i = 23
        text[i] = b":"
        while True:
            i -= 1
            text[i] = <char>(48 + n % 10)
            n //= 10
            if n == 0:
                break
        return self.raw(text + i, 24 - i)

    cdef inline int leaf(self, bytes value, bytes tag) except -1:
        self.prefix(PyBytes_GET_SIZE(value))
        self.put(value)
        return self.tag(tag)

    cdef int new_id(self) except -1:
        """``36:<uuid4>;``: `fastproxy.ids.new_id`'s format (RFC 9562 §5.4: version
        nibble 4, variant bits 10) from 16 pooled random bytes."""
        cdef char text[40]
        cdef const unsigned char *random
        cdef const char *hexdigits = HEX
        cdef int i, j = 3, byte
        if self.ids_used + 16 > ID_POOL:
            self.ids = os.urandom(ID_POOL)
            self.ids_used = 0
        random = <const unsigned char*>PyBytes_AS_STRING(self.ids) + self.ids_used
        self.ids_used += 16
        memcpy(text, b"36:", 3)
        for i in range(16):
            if i == 4 or i == 6 or i == 8 or i == 10:
                text[j] = b"-"
                j += 1
            byte = random[i]
            text[j] = hexdigits[byte >> 4]
            text[j + 1] = hexdigits[byte & 15]
            j += 2
        text[17] = b"4"  # the first digit of the third group
        text[22] = VARIANT[hex_value(text[22]) & 3]  # the first of the fourth
        text[39] = b";"
        return self.raw(text, 40)


cdef inline int hex_value(char c) noexcept:
    return c - 48 if c <= b"9" else c - 87


cdef inline bint is_host(bytes name) noexcept:
    cdef const char *p
    if PyBytes_GET_SIZE(name) != 4:
        return False
    p = PyBytes_AS_STRING(name)
    return ((p[0] | 32) == b"h" and (p[1] | 32) == b"o" and (p[2] | 32) == b"s"
            and (p[3] | 32) == b"t")


cdef bint has_host(list fields) except -1:
    cdef tuple field
    for field in fields:
        if is_host(<bytes>PyTuple_GET_ITEM(field, 0)):
            return True
    return False


cdef Py_ssize_t fields_size(list fields, bytes host) except -1:
    """The content size of `FlowBuffer.fields`'s list."""
    cdef tuple field
    cdef bytes name, value
    cdef Py_ssize_t size = 0, pair
    if host is not None and not has_host(fields):
        size += leaf_size(leaf_size(4) + leaf_size(len(host)))
    for field in fields:
        if PyTuple_GET_SIZE(field) != 2:
            raise ValueError("a header field is a (name, value) pair")
        name = <bytes?>PyTuple_GET_ITEM(field, 0)
        value = <bytes?>PyTuple_GET_ITEM(field, 1)
        if host is not None and is_host(name):
            value = host
        pair = leaf_size(PyBytes_GET_SIZE(name)) + leaf_size(PyBytes_GET_SIZE(value))
        size += leaf_size(pair)
    return size


cdef inline Py_ssize_t optional_size(bytes value) except -1:
    return 3 if value is None else leaf_size(PyBytes_GET_SIZE(value))


cdef bytes utf8(str value):
    """As `tnetstring` encodes a str: UTF-8, surrogateescape."""
    if PyUnicode_IS_COMPACT_ASCII(value):
        return PyBytes_FromStringAndSize(<char*>PyUnicode_DATA(value),
                                         PyUnicode_GET_LENGTH(value))
    return value.encode("utf-8", "surrogateescape")


cdef Py_ssize_t format_float(object value, char *out) except -1:
    """``N:<repr(value)>^`` (repr: what mitmproxy writes), or ``0:~`` for None, into
    ``out`` (FLOAT_MAX bytes); returns its size."""
    cdef char text[FLOAT_MAX]
    cdef char *slow
    cdef Py_ssize_t n
    if value is None:
        memcpy(out, b"0:~", 3)
        return 3
    n = shortest_repr(value, text)
    if n:
        return small_leaf(text, n, b"^", out)
    slow = PyOS_double_to_string(value, b"r", 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        return small_leaf(slow, strlen(slow), b"^", out)
    finally:
        PyMem_Free(slow)


cdef Py_ssize_t shortest_repr(double value, char *out) noexcept:
    """``repr(value)`` into ``out`` for 1 <= value < 2**53 (timestamps), in integer
    arithmetic; 0 for other values and the rare cases left to dtoa.

    repr() is the shortest decimal that reads back as ``value`` (David Gay's dtoa, mode
    0), in fixed notation below 1e16. With ``value = m / 2**s`` (m the 53-bit
    significand), the closest decimal with k fraction digits is ``c / 10**k``, c rounded
    from ``m * 10**k / 2**s``; it reads back as ``value`` if it lies within half an ulp
    (a tie: if m is even). The first k for which it does gives the shortest. Values whose
    rounding is a tie, and powers of two (their lower half-ulp is narrower), go to dtoa.
    """
    cdef int exponent
    cdef unsigned long long m, integer, fraction
    cdef uint128 scaled, c, half, error, p10 = 1, mask
    cdef int s, k, i, n
    if not (1.0 <= value < 9007199254740992.0):
        return 0
    frexp(value, &exponent)  # value = f * 2**exponent, 0.5 <= f < 1
    s = 53 - exponent
    m = <unsigned long long>ldexp(value, s)
    if m == 1ULL << 52:
        return 0
    mask = ((<uint128>1) << s) - 1
    for k in range(18):
        scaled = <uint128>m * p10
        c = scaled >> s
        half = scaled & mask  # the remainder, compared with half of 2**s
        if half * 2 > mask + 1:
            c += 1
        error = (c << s) - scaled if (c << s) >= scaled else scaled - (c << s)
        if error * 2 < p10 or (error * 2 == p10 and m % 2 == 0):
            if half * 2 == mask + 1:
                return 0  # two k-digit decimals as close: dtoa's choice
            break
        p10 *= 10
    else:
        return 0
    integer = <unsigned long long>(c // p10)
    fraction = <unsigned long long>(c % p10)
    n = put_digits(integer, out)
    out[n] = b"."
    n += 1
    if k == 0:
        out[n] = b"0"
        return n + 1
    for i in range(k - 1, -1, -1):
        out[n + i] = <char>(48 + fraction % 10)
        fraction //= 10
    return n + k


cdef Py_ssize_t format_int(object value, char *out) except -1:
    """``N:<digits>#`` into ``out`` (FLOAT_MAX bytes); returns its size."""
    cdef char text[24]
    cdef long long number = value
    cdef Py_ssize_t n = 0
    if number < 0:
        text[0] = b"-"
        n = 1
        n += put_digits(<unsigned long long>(-(number + 1)) + 1, text + 1)
    else:
        n = put_digits(<unsigned long long>number, text)
    return small_leaf(text, n, b"#", out)


cdef inline Py_ssize_t put_digits(unsigned long long number, char *out) noexcept:
    """The decimal digits of ``number`` into ``out`` (20 bytes); returns how many."""
    cdef char text[20]
    cdef int i = 20
    while True:
        i -= 1
        text[i] = <char>(48 + number % 10)
        number //= 10
        if number == 0:
            break
    memcpy(out, text + i, 20 - i)
    return 20 - i


cdef Py_ssize_t small_leaf(const char *text, Py_ssize_t n, char tag, char *out) except -1:
    """``N:<text><tag>`` into ``out`` (FLOAT_MAX bytes, so at most 27 bytes of text)."""
    cdef Py_ssize_t i = 0
    if n > FLOAT_MAX - 5:
        raise ValueError("number too long")
    if n >= 10:
        out[0] = <char>(48 + n // 10)
        i = 1
    out[i] = <char>(48 + n % 10)
    out[i + 1] = b":"
    memcpy(out + i + 2, text, n)
    out[i + 2 + n] = tag
    return i + 3 + n


def _float_leaf(value) -> bytes:
    """`format_float`'s output, for tests."""
    cdef char out[FLOAT_MAX]
    return out[:format_float(value, out)]
