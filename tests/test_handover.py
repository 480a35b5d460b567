"""The loop-to-writer packing (`fastproxy.io._handover`): values come back as they went in,
damaged data is an error, and the sender packs whole messages or none."""

import math

import pytest

from fastproxy.io._encode import pack_all, unpack_all
from fastproxy.io._handover import ExchangeSender
from tests.test_flowfile import make_flow

VALUES = [
    None, True, False, 0, -1, 2**63 - 1, -2**63, 2**64, -(2**200), 0.0, -0.5, 1.7e308,
    1795000000.123456, math.inf, b"", b"\x00\xff" * 1000, "", "ascii", "π ≈ 3.14",
    "\udcff surrogate-escaped", (), (1, (2, [3, {}])), [b"a", "b", None],
    {"k": {"nested": [1, 2.5, b"x"]}, b"bytes key": None, 7: "int key"},
]


def test_every_kind_of_value_round_trips_with_its_type():
    back = unpack_all(pack_all(VALUES))
    assert back == VALUES
    assert [type(v) for v in back] == [type(v) for v in VALUES]


def test_a_connection_state_round_trips():
    flow = make_flow()
    states = [flow.client_conn.get_state(), flow.server_conn.get_state()]
    assert unpack_all(pack_all(states)) == states


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
def test_data_cut_short_is_an_error_not_a_crash(cut):
    data = pack_all([(b"x" * 10, "y", 1.5)])
    with pytest.raises(ValueError):
        unpack_all(data[:-cut])


def test_a_bad_type_byte_is_an_error():
    with pytest.raises(ValueError):
        unpack_all(b"?")


def test_values_that_cannot_be_handed_over_are_refused():
    with pytest.raises(TypeError):
        pack_all([object()])
    with pytest.raises(TypeError):
        pack_all([{1, 2}])
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError):
        pack_all([deep])


def _sender():
    calls, errors = [], []
    sender = ExchangeSender(lambda: calls.append(1), errors.append, max_conns=4)
    return sender, calls, errors


def test_sender_packs_connection_states_once_then_exchanges():
    sender, first_calls, errors = _sender()
    flow = make_flow()
    client, server = flow.client_conn, flow.server_conn
    sender(client, server, ("exchange 1",))
    sender(client, server, ("exchange 2",))
    assert first_calls == [1]  # the hand-over is scheduled once per batch
    packed, count = sender.take()
    assert count == 2 and len(sender) == 0 and not errors
    messages = unpack_all(packed)
    # the keys are numbers the sender gives the connections, not their 36-character ids
    assert messages == [
        ("conn", 0, client.get_state()), ("conn", 1, server.get_state()),
        (("exchange 1",), 0, 1), (("exchange 2",), 0, 1)]
    client.timestamp_end = 1795000001.5  # closed: its state changed, sent again, same key
    sender(client, None, ("exchange 3",))
    assert first_calls == [1, 1]
    messages = unpack_all(sender.take()[0])
    assert messages == [("conn", 0, client.get_state()), (("exchange 3",), 0, None)]


def test_sender_forgets_connections_before_it_runs_out_of_room():
    sender, _, errors = _sender()
    flows = [make_flow() for _ in range(3)]
    for flow in flows:
        sender(flow.client_conn, flow.server_conn, ())
    kinds = [m[0] for m in unpack_all(sender.take()[0])]
    # room for 4: the second flow's two connections fill it; the third starts afresh,
    # so both of its connections are known to the writer when its exchange comes
    assert kinds == ["conn", "conn", (), "conn", "conn", (), "forget", "conn", "conn", ()]
    assert not errors


def test_sender_sends_the_states_again_after_forget():
    """`forget` (the recorder dropped packed exchanges): states the writer was sent
    before count as unknown, even those of connections unchanged since."""
    sender, _, errors = _sender()
    flow = make_flow()
    for _ in range(2):
        sender(flow.client_conn, flow.server_conn, ())
    sender.forget()
    sender(flow.client_conn, flow.server_conn, ())
    messages = unpack_all(sender.take()[0])
    assert [m[0] for m in messages] == ["conn", "conn", (), (), "conn", "conn", ()]
    # under new keys: the writer may still hold the old ones (it was not told to forget)
    assert [m[1] for m in messages if m[0] == "conn"] == [0, 1, 2, 3]
    assert messages[-1][1:] == (2, 3)
    assert not errors


def test_sender_reports_an_exchange_it_cannot_pack_and_leaves_no_torn_message():
    sender, _, errors = _sender()
    flow = make_flow()
    sender(flow.client_conn, flow.server_conn, ("ok",))
    sender(flow.client_conn, flow.server_conn, ("bad", object()))
    assert len(errors) == 1 and "cannot record an exchange" in errors[0]
    packed, count = sender.take()
    assert count == 1
    assert [m[0] for m in unpack_all(packed)] == ["conn", "conn", ("ok",)]


def test_the_writer_reports_a_damaged_batch_and_writes_the_next(tmp_path):
    """A packed batch cut short is reported as a bad message, with nothing of it written
    torn; the batches after it are written."""
    import io
    import os

    from fastproxy.io import tnetstring
    from fastproxy.io.writer import Writer, split_messages
    from tests.test_recorder import _capture, frame

    get = b"GET /p HTTP/1.1\r\nHost: example.com\r\n\r\n"
    client, server, data = _capture(get, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    sent = bytearray()
    for cut in (7, 0):
        sender, _, errors = _sender()  # each batch with the connection states
        sender(client, server, data)
        packed = sender.take()[0]
        sent += frame(("packed", packed[:len(packed) - cut]))
        assert not errors
    out = io.StringIO()
    path = tmp_path / "flows"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    Writer(fd, out=out).handle(split_messages(memoryview(sent))[0])
    os.close(fd)
    assert "bad message" in out.getvalue()
    state, rest = tnetstring.pop(path.read_bytes())
    assert rest == b"" and state["request"]["method"] == b"GET"  # one record, whole


def test_an_exchange_of_an_unknown_connection_is_reported_alone():
    """The writer reports an exchange whose connection it was not told of (its state
    lost) and still writes the exchanges after it in the same batch."""
    from tests.test_recorder import _capture, frame, writes

    get = b"GET /p HTTP/1.1\r\nHost: example.com\r\n\r\n"
    client, server, data = _capture(get, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    sender, _, errors = _sender()
    sender(client, server, data)
    sender.take()  # the connection states, lost with this batch
    sender(client, server, data)  # known to the sender: packed without them
    orphan = sender.take()[0]
    other, _, _ = _sender()
    other(client, server, data)
    sent = frame(("packed", orphan + other.take()[0]))
    written = writes(sent)
    assert len(written) == 1 and written[0].count(b"4:path") == 1 and not errors


def test_sender_knows_an_unchanged_connection_by_its_generation():
    """Every field set gives a connection a new ``_generation`` (one counter for all);
    with the same generation, and the same dict, `conn_key` does not look at the fields."""
    sender, _, errors = _sender()
    flow = make_flow()
    client, server = flow.client_conn, flow.server_conn
    assert client._generation != server._generation
    before = client._generation
    client.sni = client.sni
    assert client._generation > before
    assert sender.conn_key(client) == 0
    client.__dict__["timestamp_end"] = 1795000001.5  # behind its back: generation kept
    assert sender.conn_key(client) == 0
    assert [m[0] for m in unpack_all(sender.take()[0])] == ["conn"]
    client.timestamp_end = 1795000001.5  # set: a new generation, the fields are looked at
    assert sender.conn_key(client) == 0
    messages = unpack_all(sender.take()[0])
    assert messages == [("conn", 0, client.get_state())] and not errors
