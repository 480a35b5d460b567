# cython: language_level=3
"""The ring that carries recorded flows from the proxy to its writer process.

A pipe cost the proxy a ``write`` system call per loop iteration and the kernel two copies
of every byte (in, and out to the writer); the ring is shared memory (a memfd both map),
so handing over is one copy and a counter stored, with no system call. One process puts,
the other takes: a single producer and a single consumer, so two counters suffice.

Layout: a header, then ``capacity`` bytes of data. The header holds two byte counts that
only grow: ``head``, all that was ever put (stored by the producer), and ``tail``, all
that was ever taken (stored by the consumer); data byte ``n`` lives at ``n % capacity``.
The producer stores ``head`` after the bytes it counts (a release store) and the consumer
reads it before them (an acquire load), and the other way round for ``tail``: each side
only ever reads what the other has finished with, on any CPU.
"""

from cpython.buffer cimport PyBUF_WRITABLE, PyObject_GetBuffer, PyBuffer_Release
from libc.string cimport memcpy

cdef extern from *:
    """
    static inline unsigned long long fastproxy_load_acquire(unsigned long long *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void fastproxy_store_release(unsigned long long *p, unsigned long long v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    """
    unsigned long long load_acquire "fastproxy_load_acquire" (unsigned long long *p) nogil
    void store_release "fastproxy_store_release" (unsigned long long *p,
                                                  unsigned long long v) nogil

cdef enum:
    HEADER_SIZE = 128  # ``head`` at 0, ``tail`` at 64: cache lines of their own

HEADER = HEADER_SIZE
"""Bytes before the data."""


cdef class Ring:
    """The ring in ``mapping`` (a writable buffer of `HEADER` + capacity bytes, e.g. an
    ``mmap`` of a memfd; zeroed when new). The producer calls `put`, the consumer `take`."""

    cdef Py_buffer view
    cdef unsigned char *data
    cdef unsigned long long *head
    cdef unsigned long long *tail
    cdef readonly Py_ssize_t capacity

    def __cinit__(self, mapping):
        PyObject_GetBuffer(mapping, &self.view, PyBUF_WRITABLE)
        if self.view.len <= HEADER_SIZE:
            PyBuffer_Release(&self.view)
            raise ValueError("the mapping has no room for data")
        cdef unsigned char *base = <unsigned char *>self.view.buf
        self.head = <unsigned long long *>base
        self.tail = <unsigned long long *>(base + 64)
        self.data = base + HEADER_SIZE
        self.capacity = self.view.len - HEADER_SIZE

    def __dealloc__(self):
        PyBuffer_Release(&self.view)

    cdef inline Py_ssize_t free(self) noexcept:
        """Bytes that can be put now."""
        return self.capacity - <Py_ssize_t>(self.head[0] - load_acquire(self.tail))

    def put(self, list parts not None) -> int:
        """Put the buffers in ``parts``, one after the other, as far as there is room;
        how many bytes. (The consumer puts messages cut this way back together.)"""
        cdef unsigned long long head = self.head[0]
        cdef Py_ssize_t room = self.free(), n, put = 0
        cdef const unsigned char[::1] part
        for item in parts:
            if put == room:
                break
            part = item
            n = min(part.shape[0], room - put)
            if n:
                self.copy_in(head + put, &part[0], n)
                put += n
        if put:
            store_release(self.head, head + put)
        return put

    def take(self, unsigned char[::1] out not None) -> int:
        """Copy what was put and not yet taken into ``out`` (as much as it holds); how
        many bytes."""
        cdef unsigned long long tail = self.tail[0]
        cdef Py_ssize_t n = <Py_ssize_t>(load_acquire(self.head) - tail)
        if n > out.shape[0]:
            n = out.shape[0]
        if n == 0:
            return 0
        self.copy_out(tail, &out[0], n)
        store_release(self.tail, tail + n)
        return n

    cdef void copy_in(self, unsigned long long at, const unsigned char *src,
                      Py_ssize_t n) noexcept:
        cdef Py_ssize_t pos = at % self.capacity
        cdef Py_ssize_t first = min(n, self.capacity - pos)
        memcpy(self.data + pos, src, first)
        if first < n:
            memcpy(self.data, src + first, n - first)

    cdef void copy_out(self, unsigned long long at, unsigned char *dst,
                       Py_ssize_t n) noexcept:
        cdef Py_ssize_t pos = at % self.capacity
        cdef Py_ssize_t first = min(n, self.capacity - pos)
        memcpy(dst, self.data + pos, first)
        if first < n:
            memcpy(dst + first, self.data, n - first)
