import asyncio
import io
import os
import pickle

import pytest

from fastproxy.addonmanager import Loader
from fastproxy.addons.save import Save, worker_path
from fastproxy.io import tnetstring
from fastproxy.io.bodies import TRUNCATED_KEY, truncate_bodies
from fastproxy.io.flowfile import FlowReader
from fastproxy.io.recorder import Recorder
from fastproxy.options import Options, OptionsError
from tests.test_flowfile import make_flow


def read_all(path):
    with open(path, "rb") as fo:
        reader = FlowReader(fo)
        flows = list(reader.stream())
    assert reader.error is None
    return flows


def test_close_flushes_everything(tmp_path):
    path = str(tmp_path / "rec.flows")
    errors = []
    rec = Recorder(path, on_error=errors.append)
    flows = [make_flow() for _ in range(2000)]
    for f in flows:
        rec.add(f.get_state())
    rec.close()
    rec.close()  # idempotent
    assert [f.id for f in read_all(path)] == [f.id for f in flows]
    assert errors == []


def test_exchanges_wait_for_a_stalled_writer_and_none_is_lost(tmp_path, monkeypatch):
    """While the writer is stopped the ring fills: the exchanges packed meanwhile wait in
    the proxy, in order, and all reach the file once it runs again."""
    import signal

    from fastproxy.io import recorder

    monkeypatch.setattr(recorder, "RING_SIZE", 1 << 20)
    client, server, data = _capture(b"GET /p HTTP/1.1\r\nHost: example.com\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    path = str(tmp_path / "rec.flows")
    errors = []

    async def record(rec):
        stalled = False
        for _ in range(80):  # loop iterations of 50 exchanges, about 4 MB in all
            for _ in range(50):
                rec.add_exchange(client, server, data)
            await asyncio.sleep(0)
            stalled = stalled or bool(rec._unsent)
        return stalled

    rec = Recorder(path, on_error=errors.append)
    os.kill(rec._proc.pid, signal.SIGSTOP)
    try:
        assert asyncio.run(record(rec))  # the ring was full at some point
    finally:
        os.kill(rec._proc.pid, signal.SIGCONT)
    rec.close()
    assert errors == []
    assert len(read_all(path)) == 80 * 50


def test_states_dropped_with_exchanges_are_sent_again(tmp_path, monkeypatch):
    """Exchanges dropped while the writer lags took the states of new connections with
    them: those connections' next exchanges carry their states again, and are recorded."""
    import signal

    from fastproxy.io import recorder

    monkeypatch.setattr(recorder, "MAX_PENDING", 64 << 10)
    monkeypatch.setattr(recorder, "RING_SIZE", 64 << 10)
    get = b"GET /p HTTP/1.1\r\nHost: example.com\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    first, later = _capture(get, ok), _capture(get, ok)  # two pairs of connections
    path = str(tmp_path / "rec.flows")
    errors = []

    async def record(rec):
        while not rec._dropping:  # the ring fills, then what waits for it
            for _ in range(50):
                rec.add_exchange(*first)
            await asyncio.sleep(0)
        for _ in range(50):
            rec.add_exchange(*first)
        rec.add_exchange(*later)  # dropped with those, and its connections' states too
        await asyncio.sleep(0)
        os.kill(rec._proc.pid, signal.SIGCONT)
        while rec._dropping:  # until the writer caught up
            await asyncio.sleep(0.01)
        rec.add_exchange(*later)
        await asyncio.sleep(0)

    rec = Recorder(path, on_error=errors.append)
    os.kill(rec._proc.pid, signal.SIGSTOP)
    try:
        asyncio.run(asyncio.wait_for(record(rec), 60))
    finally:
        os.kill(rec._proc.pid, signal.SIGCONT)
    rec.close()
    flows = read_all(path)
    assert flows[-1].client_conn.id == later[0].id
    assert flows[-1].server_conn.id == later[1].id
    assert [e for e in errors if "falls behind" not in e and "caught up" not in e] == []


def test_a_writer_that_dies_is_reported_once_and_the_proxy_goes_on(tmp_path):
    """The writer killed: one error says so, later flows are let go (not kept in memory
    for a ring nobody empties), and closing does not wait for it."""
    import signal

    client, server, data = _capture(b"GET /p HTTP/1.1\r\nHost: example.com\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    errors = []

    async def record(rec):
        rec.add_exchange(client, server, data)
        await asyncio.sleep(0)  # the first hand-over starts listening to the writer
        os.kill(rec._proc.pid, signal.SIGKILL)
        for _ in range(500):
            if errors:
                break
            await asyncio.sleep(0.01)
        for _ in range(100):
            rec.add_exchange(client, server, data)
            rec.add(make_flow().get_state())
            await asyncio.sleep(0)
        return rec._pending_size, len(rec.add_exchange)

    rec = Recorder(str(tmp_path / "rec.flows"), on_error=errors.append)
    assert asyncio.run(asyncio.wait_for(record(rec), 30)) == (0, 0)
    rec.close()
    assert len(errors) == 1 and "writer process exited" in errors[0]


def test_unwritable_path_fails_at_start(tmp_path):
    with pytest.raises(OSError):
        Recorder(str(tmp_path / "missing-dir" / "x.flows"), on_error=print)


def test_disk_full_is_reported_not_raised():
    errors = []
    rec = Recorder("/dev/full", on_error=errors.append)
    rec.add(make_flow().get_state())
    rec.close()
    assert len(errors) == 1 and "/dev/full" in errors[0]


def test_unserializable_flow_is_reported_and_skipped(tmp_path):
    path = str(tmp_path / "rec.flows")
    errors = []
    rec = Recorder(path, on_error=errors.append)
    bad, good = make_flow(), make_flow()
    state = bad.get_state()
    state["metadata"]["obj"] = object()
    rec.add(state)
    rec.add(good.get_state())
    rec.close()
    assert [f.id for f in read_all(path)] == [good.id]
    assert "cannot record flow" in errors[0]


def test_append_cuts_a_torn_tail_first(tmp_path):
    path = str(tmp_path / "rec.flows")
    first, second = make_flow(), make_flow()
    with open(path, "wb") as fo:
        data = tnetstring.dumps(first.get_state())
        fo.write(data + data[:40])  # as after kill -9 in the middle of a write
    rec = Recorder(path, append=True, on_error=print)
    rec.add(second.get_state())
    rec.close()
    assert [f.id for f in read_all(path)] == [first.id, second.id]


def test_bodies_over_the_limit_are_truncated_and_marked(tmp_path):
    path = str(tmp_path / "rec.flows")
    flow = make_flow(body=b"x" * 1000)
    rec = Recorder(path, body_limit=100, on_error=print)
    rec.add(flow.get_state())
    rec.close()
    [read] = read_all(path)
    assert read.response.raw_content == b"x" * 100
    assert read.request.raw_content == flow.request.raw_content  # under the limit
    assert read.metadata[TRUNCATED_KEY] == {"response": 1000}
    assert "response body truncated to 100 of 1000 bytes" in read.comment
    assert flow.response.raw_content == b"x" * 1000  # the live flow is untouched


def test_truncate_bodies_leaves_small_flows_alone():
    state = make_flow().get_state()
    before = dict(state)
    truncate_bodies(state, 1 << 20)
    assert state == before


def make_save(tmp_path, **values):
    options = Options()
    save = Save()
    save.load(Loader(options))
    options.update(**values)
    save.configure(options, options.keys())
    return save, options


def test_save_records_each_flow_once(tmp_path):
    path = str(tmp_path / "save.flows")
    save, _ = make_save(tmp_path, save_stream_file=path)
    done = make_flow()
    failed_late = make_flow(error="client went away")  # complete response, then an error
    failed_early = make_flow(response=False, error="connect failed")

    async def hooks():
        save.response(done)
        save.response(failed_late)
        save.error(failed_late)
        save.error(failed_early)

    asyncio.run(hooks())
    save.done()
    assert [f.id for f in read_all(path)] == [done.id, failed_late.id, failed_early.id]


def test_save_appends_with_plus(tmp_path):
    path = str(tmp_path / "save.flows")
    for _ in range(2):
        save, _ = make_save(tmp_path, save_stream_file="+" + path)
        save.response(make_flow())
        save.done()
    assert len(read_all(path)) == 2


def test_save_unwritable_path_is_an_options_error(tmp_path):
    with pytest.raises(OptionsError, match="cannot record flows"):
        make_save(tmp_path, save_stream_file=str(tmp_path / "nope" / "x.flows"))


def test_save_per_worker_files(tmp_path):
    path = str(tmp_path / "w.flows")
    save, _ = make_save(tmp_path, save_stream_file=path, workers=3, worker_index=2)
    save.response(make_flow())
    save.done()
    assert os.path.exists(path + ".w2") and not os.path.exists(path)
    assert worker_path(path, 1, 0) == path


def frame(message: tuple) -> bytes:
    """A message as the recorder hands it to the writer: pickled, or for ``("packed",
    data)`` the packed bytes themselves."""
    from fastproxy.io import writer

    if message[0] == "packed":
        return writer.frame(writer.PACKED, len(message[1])) + message[1]
    data = pickle.dumps(message)
    return writer.frame(writer.PICKLED, len(data)) + data


def writes(sent: bytes) -> list[bytes]:
    """What the writer writes for the messages ``sent``, one item per write."""
    from fastproxy.connection import Server
    from fastproxy.io.writer import Writer, split_messages

    written = []

    class Sink(Writer):
        def write(self, data, count):
            written.append(bytes(data))

    writer = Sink(os.open(os.devnull, os.O_WRONLY), out=io.StringIO())
    writer.apply(("unconnected", Server(address=None).get_state()))  # as the recorder's first
    try:
        messages, end = split_messages(memoryview(sent))
        assert end == len(sent)
        writer.handle(messages)
    finally:
        os.close(writer.fd)
    return written


def test_the_inbox_puts_messages_back_together_across_reads():
    """The writer takes the ring's bytes into one reused buffer: a message cut by a take
    is kept for the next, a message larger than the buffer makes it grow, and input ends
    when the pipe closes, after what is left in the ring."""
    import mmap

    from fastproxy.io._ring import HEADER, Ring
    from fastproxy.io.writer import Inbox, Writer

    handled = []

    class Sink(Writer):
        def handle(self, messages):
            handled.extend((kind, pickle.loads(payload)) for kind, payload in messages)

    messages = [("limit", 5), ("flow", {"id": "x" * 100}, None, None), ("forget",)]
    sent = b"".join(frame(m) for m in messages)
    read_fd, write_fd = os.pipe()
    ring = Ring(mmap.mmap(-1, HEADER + 64))  # smaller than the messages: it wraps
    inbox = Inbox(ring, read_fd, size=16)
    sink = Sink(os.open(os.devnull, os.O_WRONLY), out=io.StringIO())
    try:
        for start in range(0, len(sent) - 10, 10):  # the proxy's puts, 10 bytes each
            assert ring.put([sent[start:start + 10]]) == 10
            assert inbox.read() > 0
            inbox.handle(sink)
        assert ring.put([sent[start + 10:]]) == len(sent) - start - 10
        os.close(write_fd)  # the proxy is gone: the ring's rest is still taken
        while inbox.read():
            inbox.handle(sink)
    finally:
        os.close(read_fd)
        os.close(sink.fd)
    assert [message for _, message in handled] == messages
    assert inbox.filled == 0 and len(inbox.buffer) >= 128


def test_snapshot_is_get_state_and_the_writer_writes_identical_bytes():
    """What the loop hands over, rebuilt and encoded by the writer (connection states and
    header fields encoded once, reused), is byte for byte ``dumps(flow.get_state())``."""
    from fastproxy.io._encode import unpack_all
    from fastproxy.io._handover import ExchangeSender
    from fastproxy.io.recorder import flow_state

    flows = [make_flow(), make_flow(response=False, error="connect failed"), make_flow()]
    flows[2].client_conn = flows[0].client_conn  # a keep-alive connection's second flow
    flows[2].server_conn = flows[0].server_conn
    for flow in flows:
        state = flow_state(flow)
        assert state == {**flow.get_state(), "client_conn": None, "server_conn": None}
    sent = bytearray()
    sender = ExchangeSender(lambda: None, pytest.fail)
    conn_messages = []
    for flow in flows:  # as Recorder.add_flow
        sender.make_room()
        keys = sender.conn_key(flow.client_conn), sender.conn_key(flow.server_conn)
        packed, count = sender.take()
        assert count == 0
        conn_messages += unpack_all(packed)
        sent += frame(("packed", packed)) + frame(("flow", flow_state(flow), *keys))
    assert [m[0] for m in conn_messages] == ["conn"] * 4  # two each for flows 0 and 1
    assert writes(sent) == [b"".join(tnetstring.dumps(f.get_state()) for f in flows)]


def _capture(request: bytes, response: bytes | None, *, reverse_host=None, error=None,
             limit=16 << 20, no_server=False):
    """Run `capture` over a request (and response) as the fast path does; what it hands
    to a recorder: the connections and the data tuple. An `ExchangeSender` listening too
    packs the same tuple straight from the capture."""
    from types import SimpleNamespace

    from fastproxy._core import BODY, HTTP1Reader
    from fastproxy.io import capture
    from fastproxy.io._encode import unpack_all
    from fastproxy.io._handover import Capture, ExchangeSender
    from fastproxy.proxy.layers.http.routing import Route
    from tests.test_flowfile import make_flow as make_conns

    def body(reader, tee):
        reader.decode = False
        while reader.next_event() == BODY:
            tee.add(reader.chunk)

    conns = make_conns()
    handed = []
    sender = ExchangeSender(lambda: None, pytest.fail)
    ctx = SimpleNamespace(options=SimpleNamespace(save_body_limit=limit),
                          client_conn=conns.client_conn,
                          server_conn=None if no_server else conns.server_conn,
                          listeners=SimpleNamespace(record_exchange=(
                              lambda c, s, data: handed.append((c, s, data)), sender)))
    reader = HTTP1Reader(True)
    reader.feed(request)
    reader.next_event()
    head = reader.head
    route = Route("http", "example.com", 80, b"example.com", b"/p?q=1", b"", frozenset(),
                  None, reverse_host)
    exchange = SimpleNamespace(ctx=ctx, head=head, route=route, rec=None,
                               request_body_done=not reader.has_body)
    exchange.rec = Capture.start(exchange, capture.tee)
    if reader.has_body:
        body(reader, exchange.rec.request_tee)
        exchange.rec.request_ended()
    if response is not None:
        up = HTTP1Reader(False)
        up.expect_response_to(head.method)
        up.feed(response)
        up.next_event()
        tee = exchange.rec.response_started(up.head, limit, capture.tee)
        if error is None:
            body(up, tee)
    exchange.rec.record(exchange, error)
    assert exchange.rec is None and len(handed) == 1
    packed, count = sender.take()
    assert count == 1
    messages = unpack_all(packed)
    conn_ids = {m[1]: m[2]["id"] for m in messages if m[0] == "conn"}
    data, ckey, skey = messages[-1]
    assert conn_ids[ckey] == conns.client_conn.id
    assert skey is None if no_server else conn_ids[skey] == conns.server_conn.id
    assert _timeless(data) == _timeless(handed[0][2])
    return handed[0]


def _timeless(data: tuple) -> tuple:
    """An exchange's data without the times taken as it is handed over (the response's
    end and the error's time), which differ between two recorders."""
    return data[:22] + data[23:24]


def _flow_for(client, server, data, written_state, limit):
    """The HTTPFlow the flow path builds for the same exchange (its id and the unconnected
    server's taken from what was written)."""
    from fastproxy.connection import Server
    from fastproxy.flow import Error
    from fastproxy.http import Headers, HTTPFlow, Request, Response
    from fastproxy.io.flowstate import exchange_state
    state = exchange_state(data, None, None, limit)
    if server is None:
        server = Server.from_state(written_state["server_conn"])
        assert server.address is None
    flow = HTTPFlow(client, server)
    flow.id = written_state["id"]
    flow.timestamp_created = state["timestamp_created"]
    flow.request = Request.from_state(state["request"])
    if state["response"] is not None:
        flow.response = Response.from_state(state["response"])
    if state["error"] is not None:
        flow.error = Error.from_state(state["error"])
    flow.metadata.update(state["metadata"])
    flow.comment = state["comment"]
    assert isinstance(flow.request.headers, Headers)
    return flow


def test_exchange_capture_written_is_get_state_byte_for_byte():
    """An exchange captured on the fast path, handed over as a tuple and made into a state
    by the writer, encodes byte for byte as ``dumps(flow.get_state())`` of the flow with
    the same fields: key order, types, de-chunked bodies, the rewritten Host, errors."""
    from fastproxy.io._handover import ExchangeSender

    get = b"GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-B: 2\r\n\r\nhello"
    chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    post = b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    captured = [
        _capture(get, ok),
        _capture(post, chunked, reverse_host="example.com"),
        _capture(get, None, error="cannot connect to example.com:80"),
        _capture(get, None, error="cannot connect to example.com:80", no_server=True),
        _capture(get, chunked, limit=8),  # cut (the writer's limit too): marked
        _capture(get, ok, error="connection closed: upstream went away"),  # head, no body
        _capture(post, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ]
    sent = bytearray()
    sender = ExchangeSender(lambda: None, pytest.fail)
    limits = [8 if i == 4 else None for i in range(len(captured))]
    for (client, server, data), limit in zip(captured, limits):
        sender(client, server, data)
        sent += frame(("limit", limit)) + frame(("packed", sender.take()[0]))
    written = writes(sent)
    records = []
    data = written[0]
    while data:
        state, data = tnetstring.pop(data)
        records.append(state)
    assert len(records) == len(captured)
    flows = [_flow_for(client, server, data, state, limit)
             for (client, server, data), state, limit in zip(captured, records, limits)]
    assert written == [b"".join(tnetstring.dumps(f.get_state()) for f in flows)]
    get_state, post_state = records[0], records[1]
    assert get_state["request"]["headers"] == [[b"Host", b"example.com"], [b"X-A", b"1"]]
    assert get_state["response"]["content"] == b"hello"
    assert post_state["request"]["content"] == b"abc"
    assert post_state["response"]["content"] == b"hello world"
    assert records[2]["response"] is None and records[2]["error"]["msg"].startswith("cannot")
    assert records[3]["server_conn"]["address"] is None
    assert records[4]["response"]["content"] == b"hello wo"
    assert records[4]["metadata"] == {TRUNCATED_KEY: {"response": 11}}
    assert records[5]["response"]["content"] is None
    assert records[5]["response"]["timestamp_end"] is None


def test_chunked_tee_counts_and_keeps_like_a_gathered_body():
    from fastproxy.io.bodies import dechunk
    from fastproxy.io.capture import ChunkedTee
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"a" * 700, b"b" * 900, b"c" * 5))
    body += b"0\r\nTrailer: x\r\n\r\n"
    for split in (1, 2, 3, 7, 700, len(body)):
        tee = ChunkedTee(1000)
        for i in range(0, len(body), split):
            tee.add(body[i:i + split])
        assert tee.size == 1605
        kept = dechunk(b"".join(tee.pieces))
        assert len(kept) >= 1000 and (b"a" * 700 + b"b" * 900 + b"c" * 5).startswith(kept)
        if split < 100:  # pieces stop being kept once 1000 bytes of content are
            assert len(kept) < 1000 + split


def test_recording_alone_keeps_the_fast_path(tmp_path):
    """Save is the only HTTP listener: no flows for HTTP/1 (http_flows False), exchanges
    go to Save.record_exchange; another HTTP listener brings the flows back, and Save
    records those."""
    from fastproxy.addonmanager import AddonManager

    class Noop:
        def response(self, flow):
            pass

    options = Options()
    manager = AddonManager(options)
    save = Save()
    manager.add(save)
    assert not manager.listeners.record_exchange  # no file: idle
    options.update(save_stream_file=str(tmp_path / "x.flows"))
    manager.configure_all({"save_stream_file"})
    listeners = manager.listeners
    assert listeners.http_flows is False
    assert listeners.record_exchange == (save.record_exchange,)
    assert listeners.response == (save.response,)  # HTTP/2, WebSocket flows: as before
    manager.add(Noop())
    assert listeners.http_flows is True and listeners.record_exchange == ()
    save.done()
