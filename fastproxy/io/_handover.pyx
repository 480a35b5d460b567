# cython: language_level=3, cdivision=True
"""Handing captured HTTP/1 exchanges from the event loop to the writer process, in C.

Pickling an exchange cost the loop about 20k instructions: pickle puts every object it
writes into its memo (a hash table, grown and then wiped for every dump). What is handed
over holds only None, bools, ints, floats, bytes, str, tuples and lists (dicts too, in a
connection's state), none of it shared, so `pack` writes each value as a type byte and its
bytes, with no memo: a few thousand instructions for an exchange. `unpack` reads them back
in the writer. Both ends run on the same machine: numbers are in its byte order.

`ExchangeSender` is what `fastproxy.proxy.capture.record` calls for each exchange (the
recorder puts it in the listener table): the connection checks and the packing, with no
Python frame in between.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcpy

from fastproxy.io._encode cimport FlowBuffer

cdef extern from "Python.h":
    ctypedef struct PyObject
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)

cdef enum:
    MAX_DEPTH = 32  # a connection's state nests three deep; deeper is not ours

# The type bytes.
cdef char NONE = b"N", TRUE = b"T", FALSE = b"F", INT = b"i", BIG_INT = b"I"
cdef char FLOAT = b"d", BYTES = b"b", STR = b"s", TUPLE = b"t", LIST = b"l", DICT = b"D"


cdef int pack(FlowBuffer out, object value, int depth=0) except -1:
    """Append ``value`` to ``out`` (TypeError for anything else than the types above)."""
    cdef type kind = type(value)
    cdef int overflow = 0
    cdef long long number
    cdef double real
    cdef Py_ssize_t i, n, pos = 0
    cdef PyObject *key
    cdef PyObject *item
    cdef bytes data
    if depth > MAX_DEPTH:
        raise ValueError("nested too deep to hand over")
    if value is None:
        return out.raw(&NONE, 1)
    if kind is bytes:
        out.raw(&BYTES, 1)
        return counted(out, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    if kind is str:
        out.raw(&STR, 1)
        if PyUnicode_IS_COMPACT_ASCII(value):
            return counted(out, <char*>PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value))
        data = value.encode("utf-8", "surrogateescape")
        return counted(out, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    if kind is tuple:
        n = PyTuple_GET_SIZE(value)
        out.raw(&TUPLE, 1)
        size(out, n)
        for i in range(n):
            pack(out, <object>PyTuple_GET_ITEM(value, i), depth + 1)
        return 0
    if kind is list:
        n = PyList_GET_SIZE(value)
        out.raw(&LIST, 1)
        size(out, n)
        for i in range(n):
            pack(out, <object>PyList_GET_ITEM(value, i), depth + 1)
        return 0
    if kind is bool:
        return out.raw(&TRUE if value else &FALSE, 1)
    if kind is int:
        number = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            data = str(value).encode()
            out.raw(&BIG_INT, 1)
            return counted(out, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        out.raw(&INT, 1)
        return out.raw(<char*>&number, sizeof(number))
    if kind is float:
        real = PyFloat_AS_DOUBLE(value)
        out.raw(&FLOAT, 1)
        return out.raw(<char*>&real, sizeof(real))
    if kind is dict:
        out.raw(&DICT, 1)
        size(out, len(value))
        while PyDict_Next(value, &pos, &key, &item):
            pack(out, <object>key, depth + 1)
            pack(out, <object>item, depth + 1)
        return 0
    raise TypeError(f"cannot hand over a {kind.__name__}")


cdef inline int size(FlowBuffer out, Py_ssize_t n) except -1:
    return out.raw(<char*>&n, sizeof(n))


cdef inline int counted(FlowBuffer out, const char *data, Py_ssize_t n) except -1:
    size(out, n)
    return out.raw(data, n)


def pack_all(values) -> bytes:
    """The values, packed one after the other (for tests and tools)."""
    cdef FlowBuffer out = FlowBuffer()
    for value in values:
        pack(out, value)
    return out.take()


@cython.final
cdef class _Reader:
    cdef const char *data
    cdef Py_ssize_t pos, end

    cdef inline const char* take(self, Py_ssize_t n) except NULL:
        cdef const char *at = self.data + self.pos
        if n < 0 or n > self.end - self.pos:
            raise ValueError("handed-over data cut short")
        self.pos += n
        return at

    cdef inline Py_ssize_t count(self) except -1:
        cdef Py_ssize_t n
        memcpy(&n, self.take(sizeof(n)), sizeof(n))
        return n

    cdef object value(self, int depth):
        cdef char kind = self.take(1)[0]
        cdef Py_ssize_t n, i
        cdef long long number
        cdef double real
        cdef const char *at
        cdef tuple items
        cdef list elements
        cdef dict mapping
        if depth > MAX_DEPTH:
            raise ValueError("handed-over data nested too deep")
        if kind == BYTES:
            n = self.count()
            return PyBytes_FromStringAndSize(self.take(n), n)
        if kind == STR:
            n = self.count()
            return PyUnicode_DecodeUTF8(self.take(n), n, "surrogateescape")
        if kind == NONE:
            return None
        if kind == FLOAT:
            memcpy(&real, self.take(sizeof(real)), sizeof(real))
            return real
        if kind == INT:
            memcpy(&number, self.take(sizeof(number)), sizeof(number))
            return number
        if kind == TUPLE:
            n = self.count()
            items = tuple([self.value(depth + 1) for i in range(n)])
            return items
        if kind == LIST:
            n = self.count()
            elements = [self.value(depth + 1) for i in range(n)]
            return elements
        if kind == TRUE:
            return True
        if kind == FALSE:
            return False
        if kind == DICT:
            n = self.count()
            mapping = {}
            for i in range(n):
                key = self.value(depth + 1)
                mapping[key] = self.value(depth + 1)
            return mapping
        if kind == BIG_INT:
            n = self.count()
            at = self.take(n)
            return int(at[:n])
        raise ValueError(f"bad type byte {kind!r} in handed-over data")


def unpack_all(bytes data not None) -> list:
    """The values `pack` wrote into ``data``, in order (ValueError if it is damaged)."""
    cdef _Reader reader = _Reader()
    cdef list values = []
    reader.data = PyBytes_AS_STRING(data)
    reader.pos = 0
    reader.end = PyBytes_GET_SIZE(data)
    while reader.pos < reader.end:
        values.append(reader.value(0))
    return values


@cython.final
cdef class ExchangeSender:
    """Packs captured exchanges, and the states of their connections, for the writer.

    Called as ``sender(client_conn, server_conn, data)`` with what `capture.record` hands
    to recorders; packs ``(data, client key, server key)``, after ``("conn", key,
    state)`` for a connection the writer has not seen or whose state changed since
    (`conn_key`). ``on_first()`` is called when the first exchange after a `take` is packed
    (the recorder then schedules the hand-over), ``on_error(message)`` when one cannot be
    packed: a call never raises into the loop.
    """

    cdef FlowBuffer out
    cdef readonly Py_ssize_t count
    cdef readonly Py_ssize_t max_conns
    cdef dict conns  # connection id -> the fields `fingerprint` reads, as last sent
    cdef object on_first
    cdef object on_error

    def __init__(self, on_first, on_error, Py_ssize_t max_conns=4096):
        self.out = FlowBuffer()
        self.count = 0
        self.max_conns = max_conns
        self.conns = {}
        self.on_first = on_first
        self.on_error = on_error

    def __len__(self):
        return self.out.length

    def __call__(self, client_conn, server_conn, tuple data not None):
        cdef Py_ssize_t start = self.out.length, after_conns
        cdef str ckey = None, skey = None
        try:
            self.make_room()
            ckey = self.conn_key(client_conn)
            if server_conn is not None:
                skey = self.conn_key(server_conn)
            after_conns = self.out.length
            try:
                self.out.raw(&TUPLE, 1)
                size(self.out, 3)
                pack(self.out, data)
                pack(self.out, ckey)
                pack(self.out, skey)
            except BaseException:
                self.out.length = after_conns  # no torn message
                raise
        except Exception as e:
            self.on_error(f"cannot record an exchange: {e}")
            return
        self.count += 1
        if self.count == 1:
            self.on_first()

    cpdef make_room(self):
        """Forget the connections sent (the writer too) if there is no room for two more:
        called before the `conn_key` calls for one flow, so that both stay known."""
        if len(self.conns) >= self.max_conns - 1:
            self.conns.clear()
            pack(self.out, ("forget",))

    cpdef str conn_key(self, conn):
        """The key the writer knows ``conn``'s state by, packing the state first when it
        is new to the writer or changed."""
        cdef str key = conn.id
        cdef tuple seen = self.conns.get(key), now = fingerprint(conn)
        cdef Py_ssize_t start
        if seen is not None and seen == now:
            return key
        start = self.out.length
        try:
            pack(self.out, ("conn", key, conn.get_state()))
        except BaseException:
            self.out.length = start
            raise
        self.conns[key] = now
        return key

    def take(self) -> tuple:
        """(what was packed since the last take, how many exchanges it holds)."""
        cdef Py_ssize_t count = self.count
        self.count = 0
        return self.out.take(), count


cdef inline tuple fingerprint(conn):
    """What tells that a connection's state changed since it was sent: the proxy sets the
    fields that change after a connection is accepted or opened together with one of
    these (peername and sockname with timestamp_tcp_setup, sni, alpn, tls_version and the
    certificates with timestamp_tls_setup: `upstream`, `layers.tls`), or at the end."""
    return (conn.timestamp_end, conn.timestamp_tls_setup, conn.error,
            getattr(conn, "timestamp_tcp_setup", None))
