# The recorder's byte work in C (see _encode.pyx): the packed format the loop hands
# exchanges over in, and the writer's encoder. Declarations, grouped by flow; the small
# buffer functions are defined here, so that modules cimporting them inline them too.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy

cdef enum:
    # The type bytes of the packed format.
    P_NONE = 78  # N
    P_TRUE = 84  # T
    P_FALSE = 70  # F
    P_INT = 105  # i: 8 bytes
    P_BIG_INT = 73  # I: size, decimal digits
    P_FLOAT = 100  # d: 8 bytes
    P_BYTES = 98  # b: size, bytes
    P_STR = 115  # s: size, UTF-8 (surrogateescape)
    P_TUPLE = 116  # t: count, size of the items, items
    P_LIST = 108  # l: count, size of the items, items
    P_DICT = 68  # D: count, size of the items, key and value for each

cdef struct Value:
    # One packed value, read in place (`read_value`).
    char kind
    const char *data  # bytes, str, big int: its bytes; tuple, list, dict: the first item
    Py_ssize_t size  # bytes, str, big int: how many; tuple, list, dict: the item count
    const char *end  # tuple, list, dict: where its items end
    long long number
    double real

cdef class FlowBuffer:
    # the records, one after the other
    cdef char *data
    cdef Py_ssize_t length
    cdef Py_ssize_t capacity
    cdef int exports  # views of it handed out (`__getbuffer__`)
    # random bytes for flow ids, used 16 at a time
    cdef bytes ids
    cdef Py_ssize_t ids_used
    # hash of header fields' bytes and Host rewrite -> (those bytes, the rewrite's size
    # or -1 for none, their encoding)
    cdef dict header_cache

    # the layout of one exchange's record
    cdef bint write_exchange(self, const Value *fields, object client_conn,
                             object server_conn, object limit) except -1
    cdef bytes encoded_fields(self, const Value *fields, const Value *host)
    cdef int fields(self, const Value *fields, const Value *host, Py_ssize_t size) except -1
    cdef inline int pair(self, const char *name, Py_ssize_t n, const Value *value) except -1
    cdef inline int optional(self, const Value *value) except -1
    cdef int new_id(self) except -1

    # the buffer
    cdef int reserve(self, Py_ssize_t extra) except -1
    cdef inline int raw(self, const char *text, Py_ssize_t n) except -1:
        if self.length + n > self.capacity:
            self.reserve(n)
        memcpy(self.data + self.length, text, n)
        self.length += n
        return 0

    cdef inline int put(self, bytes value) except -1
    cdef inline int tag(self, bytes value) except -1
    cdef inline int prefix(self, Py_ssize_t n) except -1
    cdef inline int leaf(self, const char *value, Py_ssize_t n, char tag) except -1


cdef int pack(FlowBuffer out, object value, int depth) except -1
cdef const char* read_value(const char *at, const char *end, Value *value) except NULL
cdef const char* read_item(const Value *container, const char *at, Value *value) except NULL


cdef inline char* room(FlowBuffer out, Py_ssize_t need) except NULL:
    """Where the next ``need`` bytes go (the caller then adds them to ``out.length``)."""
    if out.length + need > out.capacity:
        out.reserve(need)
    return out.data + out.length


cdef inline int put_tag(FlowBuffer out, char kind) except -1:
    room(out, 1)[0] = kind
    out.length += 1
    return 0


cdef inline int put_word(FlowBuffer out, char kind, const void *word) except -1:
    """The type byte, then a number's 8 bytes."""
    cdef char *at = room(out, 9)
    at[0] = kind
    memcpy(at + 1, word, 8)
    out.length += 9
    return 0


cdef inline Py_ssize_t open_container(FlowBuffer out, char kind, long long count) except -1:
    """The type byte, the item count, room for the items' size (`close_container` fills
    it in); returns where the items start."""
    cdef char *at = room(out, 17)
    at[0] = kind
    memcpy(at + 1, &count, 8)
    out.length += 17
    return out.length


cdef inline int close_container(FlowBuffer out, Py_ssize_t items) except -1:
    """Fill in the size of the items written since `open_container` returned ``items``."""
    cdef long long size = out.length - items
    memcpy(out.data + items - 8, &size, 8)
    return 0


cdef inline int put_data(FlowBuffer out, char kind, const char *data, Py_ssize_t n) except -1:
    """The type byte, the size ``n``, ``n`` bytes."""
    cdef char *at = room(out, 9 + n)
    cdef long long size = n
    at[0] = kind
    memcpy(at + 1, &size, 8)
    memcpy(at + 9, data, n)
    out.length += 9 + n
    return 0


cdef inline int put_bytes(FlowBuffer out, bytes value) except -1:
    """A bytes value or None, as `pack` puts it, without its look at the type."""
    if value is None:
        return put_tag(out, P_NONE)
    return put_data(out, P_BYTES, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))


cdef inline int put_int(FlowBuffer out, long long value) except -1:
    return put_word(out, P_INT, &value)
