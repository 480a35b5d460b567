"""The TCP layer as a state machine: events in, commands out, no socket (playbooks).

Each test feeds `fastproxy.proxy.layers.tcp.TcpLayer` events and checks the commands it
returns (tests/support/playbook.py); the property tests split the bytes of both sides at
random points and check that what goes out is what came in, chunked as it came.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy.connection import Client
from fastproxy.proxy.commands import (
    CloseConnection,
    Hook,
    Log,
    OpenConnection,
    SendData,
    Splice,
)
from fastproxy.proxy.events import ConnectionClosed, DataReceived, Start
from fastproxy.proxy.layers.tcp import MessageInjected, TcpLayer
from fastproxy.tcp import TCPFlow, inject
from tests.support.playbook import Placeholder, Playbook, reply, run_answering

ADDRESS = ("example.com", 7)
TCP_EVENTS = ("tcp_start", "tcp_message", "tcp_end", "tcp_error")


def make_layer(*listening: str, ignore: bool = False) -> TcpLayer:
    """A TcpLayer with a context holding only what it reads: the client, the listeners."""
    listeners = SimpleNamespace(**{name: [print] if name in listening else []
                                   for name in TCP_EVENTS})
    client = Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 8080))
    return TcpLayer(SimpleNamespace(client_conn=client, listeners=listeners), ADDRESS, ignore)


def opened(*listening: str) -> tuple[TcpLayer, Playbook, Placeholder]:
    """A layer with a flow, past tcp_start: (layer, its playbook, the flow)."""
    layer = make_layer(*listening)
    flow = Placeholder(TCPFlow)
    playbook = Playbook(layer)
    assert (playbook
            >> Start() << OpenConnection(layer.server)
            >> reply() << Hook("tcp_start", flow)
            >> reply())
    return layer, playbook, flow


# -- the fast path: no listener, or ignored ----------------------------------------------


def test_no_listener_splices_both_ways():
    layer = make_layer()
    client, server = layer.client, layer.server
    assert (Playbook(layer)
            >> Start() << OpenConnection(server)
            >> reply() << Splice(client, server) << Splice(server, client)
            >> ConnectionClosed(client, half_close=True)  # the relay's business now
            >> ConnectionClosed(server))
    assert layer.flow is None and server.address == ADDRESS


def test_ignored_host_splices_even_with_listeners():
    layer = make_layer(*TCP_EVENTS, ignore=True)
    assert (Playbook(layer)
            >> Start() << OpenConnection(layer.server)
            >> reply() << Splice(layer.client, layer.server) << Splice(layer.server, layer.client))
    assert layer.flow is None


def test_no_listener_unreachable_server_closes_the_client():
    layer = make_layer()
    assert (Playbook(layer)
            >> Start() << OpenConnection(layer.server)
            >> reply(error="cannot connect: refused")
            << Log("tunnel to example.com:7 failed: cannot connect: refused", "info")
            << CloseConnection(layer.client))


# -- with a flow ---------------------------------------------------------------------------


def test_messages_hooks_and_changes():
    layer, playbook, flow = opened("tcp_message")
    client, server = layer.client, layer.server

    def shout(flow):
        flow.messages[-1].content = flow.messages[-1].content.upper()

    assert (playbook
            >> DataReceived(client, b"hello") << Hook("tcp_message", flow)
            >> reply(side_effect=shout) << SendData(server, b"HELLO")
            >> DataReceived(server, b"world") << Hook("tcp_message", flow)
            >> reply() << SendData(client, b"world"))
    assert [(m.from_client, m.content) for m in flow().messages] == [
        (True, b"HELLO"), (False, b"world")]


def test_emptied_message_sends_nothing():
    layer, playbook, flow = opened("tcp_message")

    def drop(flow):
        flow.messages[-1].content = b""

    assert (playbook
            >> DataReceived(layer.client, b"secret") << Hook("tcp_message", flow)
            >> reply(side_effect=drop))


def test_events_wait_while_a_hook_runs():
    """A second read while tcp_message runs is queued, and handled after it, in order."""
    layer, playbook, flow = opened("tcp_message")
    client, server = layer.client, layer.server
    assert (playbook
            >> DataReceived(client, b"one") << Hook("tcp_message", flow)
            >> DataReceived(client, b"two")
            >> reply() << SendData(server, b"one") << Hook("tcp_message", flow)
            >> reply() << SendData(server, b"two"))


def test_half_close_both_ways_then_tcp_end():
    layer, playbook, flow = opened("tcp_end")
    client, server = layer.client, layer.server
    assert (playbook
            >> ConnectionClosed(server, half_close=True)
            << CloseConnection(client, half_close=True)
            >> DataReceived(client, b"still talking") << Hook("tcp_message", flow)
            >> reply() << SendData(server, b"still talking")
            >> ConnectionClosed(client, half_close=True)
            << CloseConnection(server, half_close=True)
            << CloseConnection(client) << CloseConnection(server)
            << Hook("tcp_end", flow)
            >> reply())
    assert not flow().live and flow().error is None


def test_closed_after_fin_is_no_error():
    layer, playbook, flow = opened("tcp_end")
    client, server = layer.client, layer.server
    assert (playbook
            >> ConnectionClosed(server, half_close=True)
            << CloseConnection(client, half_close=True)
            >> ConnectionClosed(server)  # gone after its FIN: the client may still send
            >> ConnectionClosed(client, half_close=True)
            << CloseConnection(client) << Hook("tcp_end", flow))


def test_reset_is_a_tcp_error():
    layer, playbook, flow = opened("tcp_error")
    client, server = layer.client, layer.server
    error = "server connection lost: [Errno 104] Connection reset by peer"
    assert (playbook
            >> ConnectionClosed(server, error="[Errno 104] Connection reset by peer")
            << CloseConnection(client)
            << Log(f"tcp flow to example.com:7: {error}", "info")
            << Hook("tcp_error", flow)
            >> reply()
            >> DataReceived(client, b"late"))  # after the end: ignored
    assert flow().error.msg == error


def test_sending_to_a_gone_side_is_a_tcp_error():
    layer, playbook, flow = opened("tcp_error")
    client, server = layer.client, layer.server
    assert (playbook
            >> ConnectionClosed(server, half_close=True)
            << CloseConnection(client, half_close=True)
            >> ConnectionClosed(server)
            >> DataReceived(client, b"anyone?") << Hook("tcp_message", flow)
            >> reply() << CloseConnection(client)
            << Log("tcp flow to example.com:7: server connection closed while sending to it",
                   "info")
            << Hook("tcp_error", flow))


def test_unreachable_server_is_tcp_start_then_tcp_error():
    layer = make_layer("tcp_error")
    flow = Placeholder(TCPFlow)
    assert (Playbook(layer)
            >> Start() << OpenConnection(layer.server)
            >> reply(error="cannot connect: refused") << Hook("tcp_start", flow)
            >> reply() << CloseConnection(layer.client)
            << Log("tcp flow to example.com:7: cannot connect: refused", "info")
            << Hook("tcp_error", flow))
    assert flow().server_conn.error == "cannot connect: refused"


def test_inject_posts_an_event_handled_like_received_bytes():
    layer, playbook, flow = opened("tcp_message")
    inject(flow(), True, b"injected")  # to the client: as if the server had sent it
    [event] = playbook.posted
    assert type(event) is MessageInjected and event.flow is flow()
    assert (event.message.from_client, event.message.content) == (False, b"injected")
    assert (playbook
            >> event << Hook("tcp_message", flow)
            >> reply() << SendData(layer.client, b"injected"))


def test_after_the_end_inject_is_refused():
    layer, playbook, flow = opened("tcp_end")
    assert (playbook
            >> ConnectionClosed(layer.client, error="closed")
            << CloseConnection(layer.server)
            << Log("tcp flow to example.com:7: client connection lost: closed", "info")
            << Hook("tcp_error", flow))
    with pytest.raises(ValueError):
        inject(flow(), True, b"too late")


# -- bytes split at random points ---------------------------------------------------------

chunks = st.lists(st.binary(min_size=1, max_size=64), max_size=12)


@settings(max_examples=100, deadline=None)
@given(up=chunks, down=chunks, interleave=st.lists(st.booleans(), max_size=24),
       listening=st.sampled_from([("tcp_message",), ("tcp_end",), TCP_EVENTS]))
def test_random_splits_go_through_unchanged_and_in_order(up, down, interleave, listening):
    """However the bytes of each side are split and interleaved, each side's bytes reach
    the other side in order, one message per read, then both FINs end the flow."""
    layer = make_layer(*listening)
    client, server = layer.client, layer.server
    pending = {client: list(up), server: list(down)}
    events = [Start()]
    for from_client in interleave + [True] * len(up) + [False] * len(down):
        side = client if from_client else server
        if pending[side]:
            events.append(DataReceived(side, pending[side].pop(0)))
    events += [ConnectionClosed(client, half_close=True), ConnectionClosed(server, half_close=True)]
    commands = run_answering(layer, events)
    sent = {c: b"".join(x.data for x in commands if type(x) is SendData and x.connection is c)
            for c in (client, server)}
    assert sent[server] == b"".join(up) and sent[client] == b"".join(down)
    flow = layer.flow
    assert [m.content for m in flow.messages if m.from_client] == up
    assert [m.content for m in flow.messages if not m.from_client] == down
    assert [x.name for x in commands if type(x) is Hook] == (
        ["tcp_start"] + ["tcp_message"] * (len(up) + len(down)) + ["tcp_end"])
    assert commands[-3:-1] == [CloseConnection(client), CloseConnection(server)]
    assert not flow.live and flow.error is None


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=512), cuts=st.lists(st.integers(0, 512), max_size=10))
def test_a_hook_changing_each_read_changes_exactly_that_read(data, cuts):
    """An addon's change applies to the read it saw: uppercasing each piece of a split
    stream gives the uppercased stream, wherever the splits fall."""
    layer = make_layer("tcp_message")
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    events = [Start()] + [DataReceived(layer.client, p) for p in pieces]

    def upper(hook):
        if hook.name == "tcp_message":
            hook.data.messages[-1].content = hook.data.messages[-1].content.upper()

    commands = run_answering(layer, events, on_hook=upper)
    assert b"".join(c.data for c in commands if type(c) is SendData) == data.upper()
    assert all(c.connection is layer.server for c in commands if type(c) is SendData)
