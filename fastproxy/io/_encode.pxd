# The writer's encoder (see _encode.pyx): fields and cdef signatures, grouped by flow.
# `raw` is defined here, so that modules cimporting FlowBuffer inline it too.

from libc.string cimport memcpy

cdef class FlowBuffer:
    # the records, one after the other
    cdef char *data
    cdef Py_ssize_t length
    cdef Py_ssize_t capacity
    # random bytes for flow ids, used 16 at a time
    cdef bytes ids
    cdef Py_ssize_t ids_used

    # the layout of one exchange's record
    cdef int write_exchange(self, tuple data, object client_conn, object server_conn) except -1
    cdef int fields(self, list fields, bytes host, Py_ssize_t size) except -1
    cdef int pair(self, bytes name, bytes value) except -1
    cdef int optional(self, bytes value) except -1
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
    cdef inline int leaf(self, bytes value, bytes tag) except -1
