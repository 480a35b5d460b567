# cython: language_level=3, cdivision=True
"""Recording on the event loop, in C: capturing HTTP/1 exchanges from the fast path and
handing them to the writer process.

`Capture` is what the fast path keeps of an exchange it records (`fastproxy.io.capture`
says what and when). It packs itself (`fastproxy.io._encode`'s packed format) straight
into the `ExchangeSender`'s buffer: no tuple, no Python frame, a few thousand instructions
an exchange where Python functions and pickle cost the loop about 40k.

`ExchangeSender` is the recorder's ``record_exchange`` (`fastproxy.io.recorder`): it packs
each exchange with the keys of its connections, after the state of a connection the writer
has not been sent (or that changed since). A key is a small number the sender gives each
connection (not its 36-character id): the writer looks two up for every exchange.
"""

cimport cython
from libc.string cimport memset
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM

from fastproxy._core cimport Head, Route
from fastproxy.io._encode cimport (P_FALSE, P_FLOAT, P_INT, P_NONE, P_TRUE, P_TUPLE,
                                   FlowBuffer, close_container, open_container, pack,
                                   put_bytes, put_int, put_tag, put_word)

from fastproxy.io._encode import unpack_all

cdef extern from "Python.h":
    object PyObject_GenericGetDict(object obj, void *context)
    int PyObject_GenericSetAttr(object obj, object name, object value) except -1

cdef enum:
    RECENT = 256  # connections `conn_key` knows unchanged at a glance (a power of two)

cdef struct Recent:
    # A connection whose state the writer has, by its instance dict and generation then.
    void *fields  # the dict: compared, never read through
    long long generation  # its `generation` then (0: this entry is empty)
    long long key  # the connection's key


cdef long long last_generation = 0
cdef str GENERATION = "_generation"


def tracked_setattr(self, name, value):
    """``object.__setattr__`` that also gives ``self`` a new ``_generation``, a number no
    other object, nor ``self`` before, had: `fastproxy.connection.Connection`'s
    ``__setattr__``, so that `ExchangeSender.conn_key` knows a connection unchanged since
    its state was sent by one number. (In C: the dataclass's ``__init__`` sets every
    field through it, once per accepted connection.)"""
    global last_generation
    PyObject_GenericSetAttr(self, name, value)
    last_generation += 1
    PyObject_GenericSetAttr(self, GENERATION, last_generation)


cdef inline long long generation(dict fields):
    """The ``_generation`` `tracked_setattr` keeps in ``fields`` (0: none)."""
    cdef object number = fields.get(GENERATION)
    return number if type(number) is int else 0


cdef inline double wall_clock() noexcept:
    """`time.time()`, without a call into Python."""
    cdef timespec now
    clock_gettime(CLOCK_REALTIME, &now)
    return now.tv_sec + now.tv_nsec * 1e-9


cdef class ExchangeSender


@cython.final
@cython.freelist(64)
cdef class Capture:
    """What is kept of one exchange recorded without a flow: its times, the response
    head, the bodies. Made when the request head arrived; a bodyless request ends there.

    ``request_tee`` keeps the request body (a tee from ``make_tee``, None when there is no
    body). For the response body, `response_started` returns the tee: the capture itself
    (`add` keeps each piece) when the body has a Content-Length within the limit, the
    common case that then needs no other object; else a tee of its own.
    """

    cdef readonly double t_start
    cdef readonly object t_request_end  # None until the request ended
    cdef readonly object request_tee
    cdef readonly Head response  # once it arrived
    cdef readonly double t_response_start
    cdef readonly object response_tee  # None when the capture keeps the body itself
    cdef list pieces

    def __init__(self, request_tee=None):
        self.begin(request_tee)

    cdef inline void begin(self, request_tee):
        self.t_start = wall_clock()
        self.request_tee = request_tee
        self.t_request_end = None if request_tee is not None else self.t_start
        self.pieces = []

    @staticmethod
    def start(exchange, make_tee):
        """The capture of an exchange (an `http1.Exchange`) whose request head just
        arrived; ``make_tee(limit, head)`` makes the tee of a request body. (Made
        without the call of the type, which parses arguments: once per exchange.)"""
        cdef Capture capture = Capture.__new__(Capture)
        if exchange.request_body_done:
            capture.begin(None)  # a bodyless request ends with its head
        else:
            capture.begin(make_tee(exchange.ctx.options.save_body_limit, exchange.head))
        return capture

    def request_ended(self):
        self.t_request_end = wall_clock()

    def response_started(self, Head head not None, long long limit, make_tee):
        """Note the response head; return the tee for its body (``make_tee(limit,
        head)`` when the capture cannot keep it itself)."""
        cdef long long length = head.content_length
        self.response = head
        self.t_response_start = wall_clock()
        if head.chunked or not 0 <= length <= limit:
            self.response_tee = make_tee(limit, head)
            return self.response_tee
        return self

    def add(self, bytes piece not None):
        self.pieces.append(piece)

    def record(self, exchange, str error=None):
        """Hand the exchange (an `http1.Exchange`, whose capture this is) over to the
        recorders, once; with ``error`` when it failed. An `ExchangeSender` packs it
        straight from here; other recorders get `data`."""
        cdef Head head = exchange.head
        cdef Route route = exchange.route
        exchange.rec = None
        ctx = exchange.ctx
        client, server = ctx.client_conn, ctx.server_conn
        for fn in ctx.listeners.record_exchange:
            if type(fn) is ExchangeSender:
                (<ExchangeSender>fn).send(client, server, self, head, route, error, None)
            else:
                fn(client, server, self.data(head, route, error))

    def data(self, Head head not None, Route route not None, str error=None) -> tuple:
        """The exchange (request ``head``, its ``route``) as the tuple of plain values
        recorders get; its fields are `flowstate.EXCHANGE`. Made by
        unpacking what `pack` writes, so that the two cannot disagree: the recorder
        there is, the `ExchangeSender`, takes the packed form."""
        cdef FlowBuffer out = FlowBuffer()
        self.pack(out, head, route, error)
        return unpack_all(out.take())[0]

    cdef int pack(self, FlowBuffer out, Head head, Route route, str error) except -1:
        cdef double now = wall_clock()
        cdef long long n, zero = 0
        cdef bytes body
        cdef int i
        cdef Head response = self.response
        cdef Py_ssize_t items = open_container(out, P_TUPLE, 25)
        put_word(out, P_FLOAT, &self.t_start)
        put_bytes(out, head.method)
        pack(out, route.scheme, 1)
        pack(out, route.host, 1)
        put_int(out, route.port)
        put_bytes(out, route.authority)
        put_bytes(out, route.path)
        put_bytes(out, head.version)
        put_bytes(out, head.raw)
        pack(out, route.host_header, 1)
        if self.t_request_end is None:  # the body did not end: none is recorded
            put_tag(out, P_NONE)
            put_word(out, P_INT, &zero)
            put_tag(out, P_FALSE)
        elif self.request_tee is None:
            pack(out, b"", 1)
            put_word(out, P_INT, &zero)
            put_tag(out, P_FALSE)
        else:
            put_kept(out, self.request_tee, head.chunked)
        pack(out, self.t_request_end, 1)
        if response is None:
            for i in range(9):
                put_tag(out, P_NONE)
        else:
            put_bytes(out, response.version)
            put_int(out, response.status_code)
            put_bytes(out, response.reason)
            put_bytes(out, response.raw)
            put_word(out, P_FLOAT, &self.t_response_start)
            if error is not None:  # the body did not end: none is recorded
                put_tag(out, P_NONE)
                put_word(out, P_INT, &zero)
                put_tag(out, P_FALSE)
                put_tag(out, P_NONE)
            else:
                if self.response_tee is None:  # the capture was the tee: all is kept
                    body = joined(self.pieces)
                    n = len(body)
                    put_bytes(out, body)
                    put_word(out, P_INT, &n)
                    put_tag(out, P_FALSE)
                else:
                    put_kept(out, self.response_tee, response.chunked)
                put_word(out, P_FLOAT, &now)
        pack(out, error, 1)
        put_word(out, P_FLOAT, &now)
        return close_container(out, items)


cdef int put_kept(FlowBuffer out, tee, bint chunked) except -1:
    """A body's three fields from its tee: the bytes it kept, the size it counted,
    whether they are chunked."""
    pack(out, joined(tee.pieces), 1)
    pack(out, tee.size, 1)
    return put_tag(out, P_TRUE if chunked else P_FALSE)


cdef inline bytes joined(list pieces):
    cdef Py_ssize_t n = len(pieces)
    if n == 1:
        return pieces[0]
    return b"".join(pieces)


@cython.final
cdef class ExchangeSender:
    """Packs captured exchanges, and the states of their connections, for the writer.

    Called as ``sender(client_conn, server_conn, data)`` with what `Capture.data` gives
    (`Capture.record` packs its capture directly instead); packs ``(data, client key, server
    key)``, after ``("conn", key, state)`` for a connection the writer has not seen or whose
    state changed since (`conn_key`). ``on_first()`` is called when the first exchange
    after a `take` is packed (the recorder then schedules the hand-over),
    ``on_error(message)`` when one cannot be packed: a call never raises into the loop.
    """

    cdef FlowBuffer out
    cdef readonly Py_ssize_t count
    cdef readonly Py_ssize_t max_conns
    cdef dict conns  # connection id -> (its key, the fields `fingerprint` reads as sent)
    cdef long long next_key  # never reused: a key the writer knows is never another's
    cdef Recent recent[RECENT]  # by the dict's address (`recent_slot`)
    cdef object on_first
    cdef object on_error

    def __init__(self, on_first, on_error, Py_ssize_t max_conns=4096):
        self.out = FlowBuffer()
        self.count = 0
        self.max_conns = max_conns
        self.conns = {}
        self.next_key = 0
        self.on_first = on_first
        self.on_error = on_error

    def __len__(self):
        return self.out.length

    def __call__(self, client_conn, server_conn, tuple data not None):
        self.send(client_conn, server_conn, None, None, None, None, data)

    cdef send(self, client_conn, server_conn, Capture capture, Head head, Route route,
              str error, tuple data):
        """Pack an exchange: ``data``, or what ``capture`` (with ``head``, ``route``,
        ``error``) packs for it."""
        cdef Py_ssize_t after_conns, items
        cdef long long ckey, skey = -1  # -1: no server
        try:
            self.make_room()
            ckey = self.conn_key(client_conn)
            if server_conn is not None:
                skey = self.conn_key(server_conn)
            after_conns = self.out.length
            try:
                items = open_container(self.out, P_TUPLE, 3)
                if capture is None:
                    pack(self.out, data, 1)
                else:
                    capture.pack(self.out, head, route, error)
                put_int(self.out, ckey)
                if skey < 0:
                    put_tag(self.out, P_NONE)
                else:
                    put_int(self.out, skey)
                close_container(self.out, items)
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
            self.forget()
            pack(self.out, ("forget",), 0)

    cpdef forget(self):
        """Take none of the connections as known to the writer any more: their states are
        sent again with their next exchange, under new keys (the recorder calls this when
        it dropped packed exchanges, and with them states the writer was to learn)."""
        self.conns.clear()
        memset(self.recent, 0, sizeof(self.recent))

    cpdef long long conn_key(self, conn) except -1:
        """The key the writer knows ``conn``'s state by, packing the state first when it
        is new to the writer or changed.

        A connection unchanged since its state was sent (the same ``_generation``:
        `tracked_setattr`) is known without a look at its fields: the common case, twice
        per exchange."""
        cdef dict fields = instance_fields(conn)
        cdef long long now_generation = generation(fields)
        cdef Recent *recent = &self.recent[recent_slot(fields)]
        cdef long long key
        cdef tuple seen, now
        cdef Py_ssize_t start
        if now_generation != 0 and recent.generation == now_generation and \
                recent.fields == <void*>fields:
            return recent.key
        conn_id = fields["id"]
        seen = self.conns.get(conn_id)
        if seen is None:
            key = self.next_key
            self.next_key += 1
        else:
            key = seen[0]
        if seen is None or not unchanged(<tuple>seen[1], fields):
            now = fingerprint(fields)
            start = self.out.length
            try:
                pack(self.out, ("conn", key, conn.get_state()), 0)
            except BaseException:
                self.out.length = start
                raise
            self.conns[conn_id] = (key, now)
        recent.fields = <void*>fields
        recent.generation = now_generation
        recent.key = key
        return key

    def take(self) -> tuple:
        """(what was packed since the last take, how many exchanges it holds)."""
        cdef Py_ssize_t count = self.count
        self.count = 0
        return self.out.take(), count

    def view(self) -> memoryview:
        """What was packed since the last take, viewed in place (the hand-over writes it
        from there, without a copy); `clear` once the view is released."""
        return memoryview(self.out)

    def clear(self) -> None:
        """Drop what was packed (after a `view` of it was handed over)."""
        self.out.clear()
        self.count = 0


cdef inline Py_ssize_t recent_slot(dict fields) noexcept:
    """Where in `ExchangeSender.recent` the connection with these ``fields`` goes: bits
    of the dict's address (two dicts on one slot only cost the slower check)."""
    cdef size_t address = <size_t><void*>fields
    return ((address >> 4) ^ (address >> 12)) & (RECENT - 1)


cdef inline dict instance_fields(conn):
    """``conn.__dict__``, without the attribute lookup (several hundred instructions,
    and this runs twice per exchange)."""
    return <dict>PyObject_GenericGetDict(conn, NULL)


cdef tuple FINGERPRINT = ("timestamp_end", "timestamp_tls_setup", "error",
                          "timestamp_tcp_setup")


cdef inline bint unchanged(tuple seen, dict fields) except -1:
    """Whether the fields `fingerprint` reads still are as ``seen`` (mostly the very
    same objects: identity first)."""
    cdef Py_ssize_t i
    for i in range(4):
        before = <object>PyTuple_GET_ITEM(seen, i)
        now = fields.get(<str>PyTuple_GET_ITEM(FINGERPRINT, i))
        if before is not now and before != now:
            return False
    return True


cdef inline tuple fingerprint(dict fields):
    """What tells that a connection's state changed since it was sent (from the fields
    in its ``__dict__``, where the connection dataclasses keep them: reading them there
    costs a fraction of attribute lookups, which run once per request). The proxy sets
    the fields that change after a connection is accepted or opened together with one of
    these (peername and sockname with timestamp_tcp_setup, sni, alpn, tls_version and the
    certificates with timestamp_tls_setup: `upstream`, `layers.tls`), or at the end."""
    return tuple([fields.get(name) for name in FINGERPRINT])
