# cython: language_level=3, cdivision=True, boundscheck=False, wraparound=False
"""The recorder's byte work in C: the packed format exchanges are handed over in, and the
writer's encoder of flow records.

The packed format (`pack`, `unpack_all`): what the proxy hands its writer process holds
only None, bools, ints, floats, bytes, str, tuples and lists (dicts too, in a connection's
state), none of it shared, so each value is a type byte (`P_*` in _encode.pxd) and its
bytes: 8 for a number, a size or a count, then the bytes or the items. Packing an exchange
costs the loop a few thousand instructions where pickle, whose memo hashes every object,
cost 20k. Both ends run on the same machine: numbers are in its byte order.

The encoder (`FlowBuffer.packed`) reads packed exchanges in place and writes the bytes
``tnetstring.dumps(exchange_state(...))`` gives for them: the layout of
`fastproxy.io.flowstate`, which this module is checked against when it is imported
(`flowstate.check_encoder`; tests/test_recorder.py compares them with
``dumps(HTTPFlow.get_state())`` too) straight into one growing buffer that holds
every record of a batch: the writer process then writes it with one call. No Python object
is made for an exchange's fields.

Every size is known before anything is written (the bodies and the connection states are
bytes already, the few floats are formatted first), so each length prefix is written once,
in its place, and nothing is moved afterwards. Like mitmproxy's tnetstring, a dict's items
are written last to first. Connection states come encoded (the writer encodes each once).

Flow ids are random UUID4 strings formatted as `fastproxy.ids.new_id` formats them, from
``os.urandom`` bytes fetched 4 KiB at a time instead of 16 bytes (one syscall) per flow.
"""

cimport cython
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport frexp, ldexp
from libc.string cimport memchr, memcmp, memcpy, strlen

import os

from fastproxy._core import head_fields
from fastproxy.io import flowstate, tnetstring
from fastproxy.io.flowstate import FLOW_FORMAT_VERSION
from fastproxy.io.bodies import dechunk

cdef extern from *:
    ctypedef unsigned long long uint128 "unsigned __int128"

cdef extern from "Python.h":
    ctypedef struct PyObject
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
    N_FIELDS = 25  # the fields of an exchange (`Capture.data`)
    MAX_DEPTH = 32  # a connection's state nests three deep; deeper is not ours
    MAX_CACHED_HEADERS = 1024  # encoded header lists kept (`encoded_fields`)

# The fields of an exchange, in order: `flowstate.EXCHANGE` (checked at import, by
# `FIELD_NUMBERS` below).
cdef enum:
    F_T_START, F_METHOD, F_SCHEME, F_HOST, F_PORT, F_AUTHORITY, F_PATH, F_VERSION
    F_FIELDS, F_HOST_HEADER, F_REQ_BODY, F_REQ_SIZE, F_REQ_CHUNKED, F_T_REQ_END
    F_RESP_VERSION, F_STATUS, F_REASON, F_RESP_FIELDS, F_T_RESP_START, F_RESP_BODY
    F_RESP_SIZE, F_RESP_CHUNKED, F_T_RESP_END, F_ERROR, F_T_ERROR

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
cdef bytes K_TRAILERS_NONE_CONTENT = K_TRAILERS + NONE + K_CONTENT
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
    """A growing byte buffer: flow records one after the other (the writer), or packed
    values (the proxy); `take` empties it."""

    def __cinit__(self):
        self.data = NULL
        self.length = 0
        self.capacity = 0
        self.exports = 0
        self.ids = b""
        self.ids_used = ID_POOL
        self.header_cache = {}

    def __dealloc__(self):
        PyMem_Free(self.data)

    def __len__(self):
        return self.length

    def take(self) -> bytes:
        """Everything appended so far, as one bytes object; the buffer is empty after."""
        cdef bytes out = PyBytes_FromStringAndSize(self.data, self.length)
        self.clear()
        return out

    def clear(self) -> None:
        """Empty the buffer (keeping its memory, unless a batch of big bodies grew it)."""
        if self.exports:
            raise BufferError("the buffer is viewed")
        self.length = 0
        if self.capacity > KEEP_CAPACITY:
            PyMem_Free(self.data)
            self.data, self.capacity = NULL, 0

    def __getbuffer__(self, Py_buffer *view, int flags):
        """A read-only view of what was appended: written out from here, it needs no
        copy. The buffer neither grows nor empties while viewed."""
        PyBuffer_FillInfo(view, self, self.data, self.length, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1

    def append(self, bytes record not None) -> None:
        """Append an already encoded record (flows not captured as exchanges)."""
        self.put(record)

    def exchange(self, tuple data not None, client_conn, server_conn, limit) -> bool:
        """Append the record of the exchange ``data`` (`Capture.data`) with these
        encoded connection states; False, with nothing appended, when a body is longer
        than ``limit`` (the caller cuts it and marks the flow: the rare, general path)."""
        cdef FlowBuffer scratch = FlowBuffer()
        cdef Value exchange
        cdef Value fields[N_FIELDS]
        pack(scratch, data, 0)
        read_value(scratch.data, scratch.data + scratch.length, &exchange)
        read_exchange(&exchange, fields)
        return self.write_exchange(fields, client_conn, server_conn, limit)

    def packed(self, const unsigned char[::1] data not None, dict conns not None, limit,
               other) -> int:
        """Encode the exchanges among the messages packed in ``data`` (by the proxy's
        `ExchangeSender`; bytes or a view of them): ``(exchange, client key, server
        key)``, whose connection states are in ``conns`` (encoded) under those keys
        (numbers). Every other message, and an exchange this cannot encode (a body over
        ``limit``, no server, a connection not in ``conns``, a malformed field), goes to
        ``other(message)`` unpacked, in order; it returns how many records it appended.
        Returns how many records were appended in all."""
        if data.shape[0] == 0:
            return 0
        cdef const char *at = <const char*>&data[0]
        cdef const char *end = at + data.shape[0]
        cdef const char *start
        cdef const char *item
        cdef Value message, first, key
        cdef Value fields[N_FIELDS]
        cdef int count = 0
        while at < end:
            start = at
            at = read_value(at, end, &message)
            if message.kind == P_TUPLE and message.size == 3:
                item = read_item(&message, message.data, &first)
                if first.kind == P_TUPLE:
                    read_exchange(&first, fields)
                    read_item(&message, read_item(&message, item, &key), &first)  # keys
                    client = conns.get(key.number) if key.kind == P_INT else None
                    server = conns.get(first.number) if first.kind == P_INT else None
                    try:
                        written = client is not None and server is not None and \
                            self.write_exchange(fields, client, server, limit)
                    except ValueError:  # malformed: `other` reports it, alone
                        written = False
                    if written:
                        count += 1
                        continue
            count += other(unpack_all(PyBytes_FromStringAndSize(start, at - start))[0])
        return count

    # -- the layout -------------------------------------------------------------------

    cdef bint write_exchange(self, const Value *f, object client_conn, object server_conn,
                             object limit) except -1:
        """Append the record of the exchange whose fields are ``f``, with these encoded
        connection states; False, with nothing appended, when a body is longer than
        ``limit``."""
        cdef char started[FLOAT_MAX]
        cdef char req_end[FLOAT_MAX]
        cdef char resp_start[FLOAT_MAX]
        cdef char resp_end[FLOAT_MAX]
        cdef char error_ts[FLOAT_MAX]
        cdef char port_text[FLOAT_MAX]
        cdef char status_text[FLOAT_MAX]
        cdef Py_ssize_t n_started, n_req_end, n_resp_start = 0, n_resp_end = 0, n_error_ts = 0
        cdef Py_ssize_t n_port, n_status = 0, start = self.length
        cdef Py_ssize_t request_size, response_size = 3, error_size = 3, flow_size
        cdef Py_ssize_t response_content = 0, error_content = 0
        cdef bytes req_headers, resp_headers = None
        cdef Value req_body = f[F_REQ_BODY], resp_body = f[F_RESP_BODY]
        cdef const Value *host_header = &f[F_HOST_HEADER] if f[F_HOST_HEADER].kind == P_STR \
            else NULL
        cdef bint has_response = f[F_STATUS].kind != P_NONE
        cdef bytes req_plain, resp_plain  # de-chunked bodies, kept alive while written
        if not isinstance(client_conn, bytes) or not isinstance(server_conn, bytes):
            raise TypeError("connection states come encoded (bytes)")
        check_exchange(f)
        if limit is not None and (f[F_REQ_SIZE].number > limit or (
                has_response and f[F_RESP_SIZE].kind == P_INT and f[F_RESP_SIZE].number > limit)):
            return False
        if req_body.kind == P_BYTES and f[F_REQ_CHUNKED].kind == P_TRUE:
            req_plain = dechunk(PyBytes_FromStringAndSize(req_body.data, req_body.size))
            req_body.data, req_body.size = PyBytes_AS_STRING(req_plain), len(req_plain)
        n_started = format_float(&f[F_T_START], started)
        if f[F_T_REQ_END].kind == P_FLOAT and f[F_T_REQ_END].real == f[F_T_START].real:
            memcpy(req_end, started, n_started)  # bodyless: ends with its head
            n_req_end = n_started
        else:
            n_req_end = format_float(&f[F_T_REQ_END], req_end)
        n_port = format_int(f[F_PORT].number, port_text)
        req_headers = self.encoded_fields(&f[F_FIELDS], host_header)
        request_size = (
            len(K_PATH) + leaf_size(f[F_PATH].size)
            + len(K_AUTHORITY) + leaf_size(f[F_AUTHORITY].size)
            + len(K_SCHEME) + leaf_size(f[F_SCHEME].size)
            + len(K_METHOD) + leaf_size(f[F_METHOD].size)
            + len(K_PORT) + n_port + len(K_HOST) + leaf_size(f[F_HOST].size)
            + len(K_TS_END) + n_req_end + len(K_TS_START) + n_started
            + len(K_TRAILERS) + 3 + len(K_CONTENT) + optional_size(&req_body)
            + len(K_HEADERS) + len(req_headers)
            + len(K_HTTP_VERSION) + leaf_size(f[F_VERSION].size))
        if has_response:
            if resp_body.kind == P_BYTES and f[F_RESP_CHUNKED].kind == P_TRUE:
                resp_plain = dechunk(PyBytes_FromStringAndSize(resp_body.data,
                                                               resp_body.size))
                resp_body.data, resp_body.size = PyBytes_AS_STRING(resp_plain), len(resp_plain)
            n_resp_start = format_float(&f[F_T_RESP_START], resp_start)
            n_resp_end = format_float(&f[F_T_RESP_END], resp_end)
            n_status = format_int(f[F_STATUS].number, status_text)
            resp_headers = self.encoded_fields(&f[F_RESP_FIELDS], NULL)
            response_content = (
                len(K_REASON) + leaf_size(f[F_REASON].size) + len(K_STATUS) + n_status
                + len(K_TS_END) + n_resp_end + len(K_TS_START) + n_resp_start
                + len(K_TRAILERS) + 3 + len(K_CONTENT) + optional_size(&resp_body)
                + len(K_HEADERS) + len(resp_headers)
                + len(K_HTTP_VERSION) + leaf_size(f[F_RESP_VERSION].size))
            response_size = leaf_size(response_content)
        if f[F_ERROR].kind == P_STR:
            n_error_ts = format_float(&f[F_T_ERROR], error_ts)
            error_content = (len(K_TIMESTAMP) + n_error_ts + len(K_MSG)
                             + leaf_size(f[F_ERROR].size))
            error_size = leaf_size(error_content)
        flow_size = (len(FLOW_HEAD) + len(K_RESPONSE) + response_size
                     + len(K_REQUEST) + leaf_size(request_size) + len(FLOW_MIDDLE)
                     + len(K_CREATED) + n_started + len(FLOW_CONSTANTS)
                     + len(K_SERVER) + PyBytes_GET_SIZE(server_conn)
                     + len(K_CLIENT) + PyBytes_GET_SIZE(client_conn)
                     + len(K_ERROR) + error_size + len(K_ID) + 40 + len(FLOW_TAIL))
        try:
            self.reserve(leaf_size(flow_size))
            self.prefix(flow_size)
            self.put(FLOW_HEAD)
            self.put(K_RESPONSE)
            if not has_response:
                self.put(NONE)
            else:
                self.prefix(response_content)
                self.put(K_REASON)
                self.leaf(f[F_REASON].data, f[F_REASON].size, b",")
                self.put(K_STATUS)
                self.raw(status_text, n_status)
                self.put(K_TS_END)
                self.raw(resp_end, n_resp_end)
                self.put(K_TS_START)
                self.raw(resp_start, n_resp_start)
                self.put(K_TRAILERS_NONE_CONTENT)
                self.optional(&resp_body)
                self.put(K_HEADERS)
                self.put(resp_headers)
                self.put(K_HTTP_VERSION)
                self.leaf(f[F_RESP_VERSION].data, f[F_RESP_VERSION].size, b",")
                self.tag(b"}")
            self.put(K_REQUEST)
            self.prefix(request_size)
            self.put(K_PATH)
            self.leaf(f[F_PATH].data, f[F_PATH].size, b",")
            self.put(K_AUTHORITY)
            self.leaf(f[F_AUTHORITY].data, f[F_AUTHORITY].size, b",")
            self.put(K_SCHEME)
            self.leaf(f[F_SCHEME].data, f[F_SCHEME].size, b",")
            self.put(K_METHOD)
            self.leaf(f[F_METHOD].data, f[F_METHOD].size, b",")
            self.put(K_PORT)
            self.raw(port_text, n_port)
            self.put(K_HOST)
            self.leaf(f[F_HOST].data, f[F_HOST].size, b";")
            self.put(K_TS_END)
            self.raw(req_end, n_req_end)
            self.put(K_TS_START)
            self.raw(started, n_started)
            self.put(K_TRAILERS_NONE_CONTENT)
            self.optional(&req_body)
            self.put(K_HEADERS)
            self.put(req_headers)
            self.put(K_HTTP_VERSION)
            self.leaf(f[F_VERSION].data, f[F_VERSION].size, b",")
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
            if f[F_ERROR].kind != P_STR:
                self.put(NONE)
            else:
                self.prefix(error_content)
                self.put(K_TIMESTAMP)
                self.raw(error_ts, n_error_ts)
                self.put(K_MSG)
                self.leaf(f[F_ERROR].data, f[F_ERROR].size, b";")
                self.tag(b"}")
            self.put(K_ID)
            self.new_id()
            self.put(FLOW_TAIL)
            self.tag(b"}")
        except BaseException:
            self.length = start  # no torn record
            raise
        return True

    cdef bytes encoded_fields(self, const Value *fields, const Value *host):
        """The encoding of a header list: ``fields`` is a packed list, or the head it came
        in (`Head.raw`: its lines after the first are the fields). From the cache when
        the same fields, with the same Host rewrite, were encoded before: a client sends
        the same request headers again and again, a server mostly the same response
        headers. Encoding them costs most of a record; looking them up, a tenth of that.
        The cache is keyed by a hash of the fields' bytes (no key object to build and
        hash per record) and holds the bytes themselves, compared on a hit; a head is
        split into fields only on a miss."""
        cdef const char *data = fields.data
        cdef Py_ssize_t size
        cdef Py_ssize_t host_size = host.size if host is not NULL else -1  # -1: none
        cdef const char *line_end
        cdef unsigned long long h
        cdef FlowBuffer scratch, split
        cdef Value listed
        cdef bytes key
        cdef tuple entry
        if fields.kind == P_BYTES:
            line_end = <const char*>memchr(fields.data, 13, fields.size)
            if line_end == NULL:
                raise ValueError("a head without a line end")
            data = line_end + 2
            size = fields.data + fields.size - data
        elif fields.kind == P_LIST:
            size = fields.end - fields.data
        else:  # None where a response has a status
            raise ValueError("header fields are a list or a head")
        h = hash_bytes(data, size, <unsigned long long>host_size)
        if host is not NULL:
            h = hash_bytes(host.data, host.size, h)
        entry = self.header_cache.get(h)
        if entry is not None and <Py_ssize_t>entry[1] == host_size and same_key(
                <bytes>entry[0], data, size, host):
            return <bytes>entry[2]
        key = PyBytes_FromStringAndSize(data, size)
        if host is not NULL:
            key += PyBytes_FromStringAndSize(host.data, host.size)
        if fields.kind == P_BYTES:
            split = FlowBuffer()
            pack(split, head_fields(PyBytes_FromStringAndSize(fields.data, fields.size)), 0)
            read_value(split.data, split.data + split.length, &listed)
            fields = &listed
        scratch = FlowBuffer()
        scratch.fields(fields, host, fields_size(fields, host))
        encoded = scratch.take()
        if len(self.header_cache) >= MAX_CACHED_HEADERS:
            self.header_cache.clear()
        self.header_cache[h] = (key, host_size, encoded)
        return encoded

    cdef int fields(self, const Value *fields, const Value *host, Py_ssize_t size) except -1:
        """Header fields (a packed list of (name, value) tuples) as a list of [name,
        value] lists; with ``host``, every Host value replaced by it, or a Host field
        first if there was none (as `flowstate.request_headers`)."""
        cdef const char *at = fields.data
        cdef Value pair, name, value
        cdef Py_ssize_t i
        self.prefix(size)
        if host is not NULL and not has_host(fields):
            self.pair(b"Host", 4, host)
        for i in range(fields.size):
            at = read_pair(fields, at, &name, &value)
            self.pair(name.data, name.size, host if host is not NULL and
                      is_host(name.data, name.size) else &value)
        self.tag(b"]")
        return 0

    cdef inline int pair(self, const char *name, Py_ssize_t n, const Value *value) except -1:
        self.prefix(leaf_size(n) + leaf_size(value.size))
        self.leaf(name, n, b",")
        self.leaf(value.data, value.size, b",")
        return self.tag(b"]")

    cdef inline int optional(self, const Value *value) except -1:
        if value.kind == P_NONE:
            return self.put(NONE)
        return self.leaf(value.data, value.size, b",")

    # -- the buffer -------------------------------------------------------------------

    cdef int reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self.length + extra, capacity = self.capacity or 65536
        cdef char *data
        if need <= self.capacity:
            return 0
        if self.exports:
            raise BufferError("the buffer is viewed")
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

    cdef inline int leaf(self, const char *value, Py_ssize_t n, char tag) except -1:
        self.prefix(n)
        self.raw(value, n)
        return self.raw(&tag, 1)

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


cdef inline bint is_host(const char *p, Py_ssize_t n) noexcept:
    return (n == 4 and (p[0] | 32) == b"h" and (p[1] | 32) == b"o" and (p[2] | 32) == b"s"
            and (p[3] | 32) == b"t")


cdef const char* read_pair(const Value *fields, const char *at, Value *name,
                           Value *value) except NULL:
    """The header field at ``at`` in ``fields``: a (name, value) tuple of bytes, as
    `fields_size` checked."""
    cdef Value pair
    at = read_item(fields, at, &pair)
    read_item(&pair, read_item(&pair, pair.data, name), value)
    return at


cdef bint has_host(const Value *fields) except -1:
    cdef const char *at = fields.data
    cdef Value name, value
    cdef Py_ssize_t i
    for i in range(fields.size):
        at = read_pair(fields, at, &name, &value)
        if is_host(name.data, name.size):
            return True
    return False


cdef Py_ssize_t fields_size(const Value *fields, const Value *host) except -1:
    """The content size of `FlowBuffer.fields`'s list, checking that each field is a
    (name, value) tuple of bytes (the other functions then take it as such)."""
    cdef const char *at = fields.data
    cdef Value pair, name, value
    cdef Py_ssize_t size = 0, i
    for i in range(fields.size):
        at = read_item(fields, at, &pair)
        if pair.kind != P_TUPLE or pair.size != 2:
            raise ValueError("a header field is a (name, value) pair")
        read_item(&pair, read_item(&pair, pair.data, &name), &value)
        if name.kind != P_BYTES or value.kind != P_BYTES:
            raise ValueError("a header field is a (name, value) pair of bytes")
    at = fields.data
    if host is not NULL and not has_host(fields):
        size += leaf_size(leaf_size(4) + leaf_size(host.size))
    for i in range(fields.size):
        at = read_pair(fields, at, &name, &value)
        if host is not NULL and is_host(name.data, name.size):
            value = host[0]
        size += leaf_size(leaf_size(name.size) + leaf_size(value.size))
    return size


cdef inline Py_ssize_t optional_size(const Value *value) noexcept:
    return 3 if value.kind == P_NONE else leaf_size(value.size)


# -- reading an exchange in place --------------------------------------------------------

# The types each field may have, three letters a field (`P_*`; a T stands for T and F).
# Header fields come as a list, or as the raw head (bytes).
cdef char *KINDS = (b"ddd" b"bbb" b"sss" b"sss" b"iii" b"bbb" b"bbb" b"bbb" b"lbb" b"sNN"
                    b"bNN" b"iii" b"TTT" b"dNN"
                    b"bNN" b"iNN" b"bNN" b"lbN" b"dNN" b"bNN" b"iNN" b"TNN" b"dNN" b"sNN"
                    b"ddd")


cdef int read_exchange(const Value *exchange, Value *fields) except -1:
    """Read the 25 fields of a packed exchange (a tuple) into ``fields``."""
    cdef const char *at = exchange.data
    cdef Py_ssize_t i
    if exchange.kind != P_TUPLE or exchange.size != N_FIELDS:
        raise ValueError(f"an exchange has {N_FIELDS} fields")
    for i in range(N_FIELDS):
        at = read_item(exchange, at, &fields[i])
    return 0


cdef int check_exchange(const Value *fields) except -1:
    """That each field has a type the encoder takes (`KINDS`; `fields_size` checks the
    header lists' items)."""
    cdef Py_ssize_t i
    cdef char kind
    for i in range(N_FIELDS):
        kind = P_TRUE if fields[i].kind == P_FALSE else fields[i].kind
        if kind != KINDS[3 * i] and kind != KINDS[3 * i + 1] and kind != KINDS[3 * i + 2]:
            raise ValueError(f"field {i} of an exchange has the wrong type")
    return 0


# -- the packed format ---------------------------------------------------------------

cdef inline unsigned long long hash_bytes(const char *data, Py_ssize_t n,
                                          unsigned long long h) noexcept:
    """A fast 64-bit hash of ``n`` bytes, 8 at a time (not for untrusted keys' sake:
    a collision only costs a miss, `same_key` decides)."""
    cdef unsigned long long word
    while n >= 8:
        memcpy(&word, data, 8)
        h = (h ^ word) * 0x9E3779B97F4A7C15ULL
        h ^= h >> 29
        data += 8
        n -= 8
    word = <unsigned long long>n << 56
    memcpy(&word, data, n)
    h = (h ^ word) * 0x9E3779B97F4A7C15ULL
    return h ^ (h >> 32)


cdef inline bint same_key(bytes key, const char *data, Py_ssize_t size,
                          const Value *host) noexcept:
    """Whether ``key`` (header fields' bytes, then the Host rewrite of the same size as
    ``host``'s) is these bytes."""
    cdef Py_ssize_t host_size = host.size if host is not NULL else 0
    cdef const char *k = PyBytes_AS_STRING(key)
    if PyBytes_GET_SIZE(key) != size + host_size or memcmp(k, data, size) != 0:
        return False
    return host is NULL or memcmp(k + size, host.data, host_size) == 0


cdef int pack(FlowBuffer out, object value, int depth) except -1:
    """Append ``value`` to ``out`` (TypeError for anything else than the types above).
    The most frequent types in an exchange are tested first."""
    cdef type kind = type(value)
    cdef int overflow = 0
    cdef long long n  # counts and sizes go over as 8 bytes, as numbers do
    cdef double real
    cdef Py_ssize_t i, items, pos = 0
    cdef PyObject *key
    cdef PyObject *item
    cdef bytes data
    if kind is bytes:
        return put_data(out, P_BYTES, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    if depth > MAX_DEPTH:
        raise ValueError("nested too deep to hand over")
    if kind is tuple:
        n = PyTuple_GET_SIZE(value)
        items = open_container(out, P_TUPLE, n)
        for i in range(n):
            element = <object>PyTuple_GET_ITEM(value, i)
            if type(element) is bytes:  # a header field's name and value: no call
                put_data(out, P_BYTES, PyBytes_AS_STRING(element), PyBytes_GET_SIZE(element))
            else:
                pack(out, element, depth + 1)
        return close_container(out, items)
    if value is None:
        return put_tag(out, P_NONE)
    if kind is float:
        real = PyFloat_AS_DOUBLE(value)
        return put_word(out, P_FLOAT, &real)
    if kind is str:
        if PyUnicode_IS_COMPACT_ASCII(value):
            return put_data(out, P_STR, <char*>PyUnicode_DATA(value),
                            PyUnicode_GET_LENGTH(value))
        data = value.encode("utf-8", "surrogateescape")
        return put_data(out, P_STR, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    if kind is list:
        n = PyList_GET_SIZE(value)
        items = open_container(out, P_LIST, n)
        for i in range(n):
            pack(out, <object>PyList_GET_ITEM(value, i), depth + 1)
        return close_container(out, items)
    if kind is int:
        n = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            data = str(value).encode()
            return put_data(out, P_BIG_INT, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        return put_word(out, P_INT, &n)
    if kind is bool:
        return put_tag(out, P_TRUE if value else P_FALSE)
    if kind is dict:
        items = open_container(out, P_DICT, len(value))
        while PyDict_Next(value, &pos, &key, &item):
            pack(out, <object>key, depth + 1)
            pack(out, <object>item, depth + 1)
        return close_container(out, items)
    raise TypeError(f"cannot hand over a {kind.__name__}")


cdef const char* read_value(const char *at, const char *end, Value *value) except NULL:
    """Read the packed value at ``at`` into ``value``, in place (its bytes and items stay
    where they are), checked not to reach past ``end``; returns where the next value
    begins. A container is skipped over whole: its items are read with `read_item`."""
    cdef char kind
    cdef long long word, size
    if end - at < 1:
        raise ValueError("handed-over data cut short")
    kind = value.kind = at[0]
    at += 1
    if kind == P_NONE or kind == P_TRUE or kind == P_FALSE:
        return at
    if end - at < 8:
        raise ValueError("handed-over data cut short")
    memcpy(&word, at, 8)
    at += 8
    if kind == P_INT:
        value.number = word
        return at
    if kind == P_FLOAT:
        memcpy(&value.real, &word, 8)
        return at
    if kind == P_BYTES or kind == P_STR or kind == P_BIG_INT:
        if not 0 <= word <= end - at:
            raise ValueError("bad size in handed-over data")
        value.data, value.size = at, word
        return at + word
    if kind == P_TUPLE or kind == P_LIST or kind == P_DICT:
        if end - at < 8:
            raise ValueError("handed-over data cut short")
        memcpy(&size, at, 8)
        at += 8
        if not (0 <= size <= end - at and 0 <= word <= size):  # an item has a byte at least
            raise ValueError("bad size or count in handed-over data")
        value.data, value.size, value.end = at, word, at + size
        return at + size
    raise ValueError(f"bad type byte {kind!r} in handed-over data")


cdef inline const char* read_item(const Value *container, const char *at,
                                  Value *value) except NULL:
    """Read the item of ``container`` at ``at`` (its first: ``container.data``)."""
    return read_value(at, container.end, value)


def pack_all(values) -> bytes:
    """The values, packed one after the other (for tests and tools)."""
    cdef FlowBuffer out = FlowBuffer()
    for value in values:
        pack(out, value, 0)
    return out.take()


def unpack_all(bytes data not None) -> list:
    """The values packed into ``data``, in order (ValueError if it is damaged)."""
    cdef const char *at = PyBytes_AS_STRING(data)
    cdef const char *end = at + PyBytes_GET_SIZE(data)
    cdef list values = []
    cdef Value value
    while at < end:
        at = read_value(at, end, &value)
        values.append(to_object(&value, 0))
    return values


cdef object to_object(const Value *value, int depth):
    """The Python object of a value `read_value` read."""
    cdef char kind = value.kind
    cdef const char *at = value.data
    cdef Value item, second
    cdef Py_ssize_t i
    cdef list items
    cdef dict mapping
    if depth > MAX_DEPTH:
        raise ValueError("handed-over data nested too deep")
    if kind == P_BYTES:
        return PyBytes_FromStringAndSize(value.data, value.size)
    if kind == P_STR:
        return PyUnicode_DecodeUTF8(value.data, value.size, "surrogateescape")
    if kind == P_NONE:
        return None
    if kind == P_FLOAT:
        return value.real
    if kind == P_INT:
        return value.number
    if kind == P_TRUE:
        return True
    if kind == P_FALSE:
        return False
    if kind == P_BIG_INT:
        return int(PyBytes_FromStringAndSize(value.data, value.size))
    if kind == P_DICT:
        mapping = {}
        for i in range(value.size):
            at = read_item(value, read_item(value, at, &item), &second)
            mapping[to_object(&item, depth + 1)] = to_object(&second, depth + 1)
        return mapping
    items = []
    for i in range(value.size):
        at = read_item(value, at, &item)
        items.append(to_object(&item, depth + 1))
    return tuple(items) if kind == P_TUPLE else items


# -- numbers --------------------------------------------------------------------------

cdef Py_ssize_t format_float(const Value *value, char *out) except -1:
    """``N:<repr(value)>^`` (repr: what mitmproxy writes), or ``0:~`` for None, into
    ``out`` (FLOAT_MAX bytes); returns its size."""
    cdef char text[FLOAT_MAX]
    cdef char *slow
    cdef Py_ssize_t n
    if value.kind == P_NONE:
        memcpy(out, b"0:~", 3)
        return 3
    n = shortest_repr(value.real, text)
    if n:
        return small_leaf(text, n, b"^", out)
    slow = PyOS_double_to_string(value.real, b"r", 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        return small_leaf(slow, strlen(slow), b"^", out)
    finally:
        PyMem_Free(slow)


cdef inline bint reads_back(unsigned long long m, int s, uint128 mask, uint128 p10,
                            uint128 *c, bint *tie) noexcept:
    """Whether the closest decimal with k fraction digits (``p10`` = 10**k) to
    ``m / 2**s``, ``c[0] / p10``, reads back as it; ``tie[0]``: whether two were as
    close."""
    cdef uint128 scaled = <uint128>m * p10, half, error
    c[0] = scaled >> s
    half = scaled & mask  # the remainder, compared with half of 2**s
    if half * 2 > mask + 1:
        c[0] += 1
    tie[0] = half * 2 == mask + 1
    error = (c[0] << s) - scaled if (c[0] << s) >= scaled else scaled - (c[0] << s)
    return error * 2 < p10 or (error * 2 == p10 and m % 2 == 0)


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
    cdef uint128 c, lower_c, p10 = 1000000, mask
    cdef int s, k = 6, i, n
    cdef bint tie, lower_tie
    if not (1.0 <= value < 9007199254740992.0):
        return 0
    frexp(value, &exponent)  # value = f * 2**exponent, 0.5 <= f < 1
    s = 53 - exponent
    m = <unsigned long long>ldexp(value, s)
    if m == 1ULL << 52:
        return 0
    mask = ((<uint128>1) << s) - 1
    # Whether k digits read back does not decrease with k: start at 6 (a timestamp has
    # six or seven) and step towards the first k that does.
    if reads_back(m, s, mask, p10, &c, &tie):
        while k > 0 and reads_back(m, s, mask, p10 // 10, &lower_c, &lower_tie):
            k -= 1
            p10 //= 10
            c, tie = lower_c, lower_tie
    else:
        while True:
            k += 1
            p10 *= 10
            if k == 18:
                return 0
            if reads_back(m, s, mask, p10, &c, &tie):
                break
    if tie:
        return 0  # two k-digit decimals as close: dtoa's choice
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


cdef Py_ssize_t format_int(long long number, char *out) except -1:
    """``N:<digits>#`` into ``out`` (FLOAT_MAX bytes); returns its size."""
    cdef char text[24]
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
    cdef Value packed
    packed.kind = P_NONE if value is None else P_FLOAT
    if value is not None:
        packed.real = value
    return out[:format_float(&packed, out)]


# -- checked against the layout, at import ----------------------------------------------

FIELD_NUMBERS = {
    "t_start": F_T_START, "method": F_METHOD, "scheme": F_SCHEME, "host": F_HOST,
    "port": F_PORT, "authority": F_AUTHORITY, "path": F_PATH, "version": F_VERSION,
    "fields": F_FIELDS, "host_header": F_HOST_HEADER, "req_body": F_REQ_BODY,
    "req_size": F_REQ_SIZE, "req_chunked": F_REQ_CHUNKED, "t_req_end": F_T_REQ_END,
    "resp_version": F_RESP_VERSION, "status": F_STATUS, "reason": F_REASON,
    "resp_fields": F_RESP_FIELDS, "t_resp_start": F_T_RESP_START, "resp_body": F_RESP_BODY,
    "resp_size": F_RESP_SIZE, "resp_chunked": F_RESP_CHUNKED, "t_resp_end": F_T_RESP_END,
    "error": F_ERROR, "t_error": F_T_ERROR,
}
"""The encoder's number of each exchange field (its ``F_*``), by the layout's name."""


def encode_exchange(tuple data not None, bytes client_conn not None,
                    bytes server_conn not None) -> bytes:
    """The record the encoder writes for the exchange ``data`` with these encoded
    connection states, and no body limit (for the layout's check and for tests)."""
    cdef FlowBuffer out = FlowBuffer()
    out.exchange(data, client_conn, server_conn, None)
    return out.take()


if len(FIELD_NUMBERS) != N_FIELDS or sorted(FIELD_NUMBERS.values()) != list(range(N_FIELDS)):
    raise ImportError("the encoder's exchange fields are not numbered 0 to N_FIELDS - 1")
try:
    flowstate.check_encoder(encode_exchange, KINDS[:3 * N_FIELDS],
                            tuple(sorted(FIELD_NUMBERS, key=FIELD_NUMBERS.get)))
except RuntimeError as e:
    raise ImportError(f"the flow encoder disagrees with fastproxy.io.flowstate: {e}") from None
