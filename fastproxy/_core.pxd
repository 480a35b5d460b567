# The HTTP/1 core (see _core.pyx): what other extensions read in C. `Head` and `Route` are
# declared here so that the recorder's capture (fastproxy.io._handover) reads their fields
# as struct members instead of through attribute lookups, on every recorded exchange.

cdef class Head:
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
    cdef public bytes raw  # the head as received: what recording keeps (`head_fields`)
    cdef public bytes transfer_encoding  # the Transfer-Encoding values, joined
    cdef public bytes upgrade_to  # the Upgrade value, lowercased
    cdef public frozenset connection_tokens  # the field names Connection lists, lowercased


cdef class Route:
    cdef public str scheme
    cdef public str host
    cdef public int port
    cdef public bytes authority  # of an absolute-form target (empty for origin-form)
    cdef public bytes path
    cdef public bytes start_line  # the request line to send upstream
    cdef public frozenset drop  # lowercased field names not to forward
    cdef public list extra  # fields to add (the rewritten Host), or None
    cdef public str host_header  # the Host value the upstream gets when it is rewritten
