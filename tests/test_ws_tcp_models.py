"""WebSocketMessage/WebSocketData and TCPFlow/TCPMessage: behaviour and mitmproxy 11 state.

Flow files with WebSocket and TCP flows written by us are read by mitmproxy 11.0.2 (in a
subprocess, $FASTPROXY_MITMPROXY_PYTHON) and theirs by us.
"""

import io

import pytest
from wsproto.frame_protocol import Opcode

from fastproxy.connection import Client, Server
from fastproxy.flow import Flow
from fastproxy.io import tnetstring
from fastproxy.io.flowfile import FlowReader
from fastproxy.tcp import TCPFlow, TCPMessage
from fastproxy.tcp import inject as inject_tcp
from fastproxy.websocket import WebSocketData, WebSocketMessage, inject
from tests.test_flowfile import make_flow, run_mitmproxy, write_flows


def ws_flow():
    flow = make_flow()
    flow.response.status_code = 101
    flow.websocket = WebSocketData()
    flow.websocket.messages += [
        WebSocketMessage(Opcode.TEXT, True, b"hello", 1.5),
        WebSocketMessage(Opcode.BINARY, False, bytes(range(256)), 2.5, dropped=True),
        WebSocketMessage(Opcode.TEXT, False, b"injected", 3.5, injected=True),
    ]
    flow.websocket.closed_by_client = True
    flow.websocket.close_code = 1000
    flow.websocket.close_reason = "bye"
    flow.websocket.timestamp_end = 4.0
    return flow


def tcp_flow():
    client = Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 8080), timestamp_start=1.0)
    flow = TCPFlow(client, Server(address=("example.com", 22)))
    flow.messages = [TCPMessage(True, b"SSH-2.0\r\n", 1.0), TCPMessage(False, b"\x00\xff", 2.0)]
    return flow


def test_websocket_message():
    m = WebSocketMessage(Opcode.TEXT, True, b"caf\xc3\xa9")
    assert m.is_text and m.text == "caf\u00e9" and not m.dropped and not m.injected
    m.text = "x"
    assert m.content == b"x" and repr(m) == "'x'"
    m.kill()
    assert m.dropped
    b = WebSocketMessage(2, False, b"\x00", 7.0)
    assert b.type is Opcode.BINARY and not b.is_text and b.timestamp == 7.0
    with pytest.raises(AttributeError):
        b.text
    assert WebSocketMessage.from_state(b.get_state()) == b
    assert b.get_state() == (2, False, b"\x00", 7.0, False, False)


def test_websocket_data_state_roundtrip():
    flow = ws_flow()
    state = flow.get_state()
    assert set(state["websocket"]) == {"messages", "closed_by_client", "close_code",
                                       "close_reason", "timestamp_end"}
    again = Flow.from_state(tnetstring.loads(tnetstring.dumps(state)))
    assert again.websocket == flow.websocket
    assert again.websocket.messages[1].content == bytes(range(256))
    plain = lambda st: tnetstring.loads(tnetstring.dumps(st))
    assert plain(again.get_state()) == plain(state)


def test_tcp_flow_state_roundtrip():
    flow = tcp_flow()
    assert flow.type == "tcp" and repr(flow) == "<TCPFlow (2 messages)>"
    state = tnetstring.loads(tnetstring.dumps(flow.get_state()))
    assert state["messages"] == [[True, b"SSH-2.0\r\n", 1.0], [False, b"\x00\xff", 2.0]]
    again = Flow.from_state(state)
    assert isinstance(again, TCPFlow) and again.messages == flow.messages
    assert again.server_conn.address == ("example.com", 22)


def test_inject_refuses_flows_that_are_not_live():
    with pytest.raises(ValueError):
        inject(ws_flow(), True, "x")
    with pytest.raises(ValueError):
        inject_tcp(tcp_flow(), True, b"x")
    flow, sent = ws_flow(), []
    flow.live = True
    flow.websocket._inject = sent.append
    inject(flow, True, "to the client")
    inject(flow, False, b"\x01")
    assert [(m.from_client, m.type, m.content, m.injected) for m in sent] == [
        (False, Opcode.TEXT, b"to the client", True), (True, Opcode.BINARY, b"\x01", True)]


MITM_READ = """
    import sys
    from mitmproxy import io
    from mitmproxy.io import tnetstring
    with open(sys.argv[1], "rb") as fo:
        flows = list(io.FlowReader(fo).stream())
    out = []
    for f in flows:
        d = {"type": f.type, "state": f.get_state()}
        if f.type == "http":
            d["messages"] = [[m.is_text, m.from_client, m.content, m.dropped, m.injected]
                             for m in f.websocket.messages]
            d["close"] = [f.websocket.close_code, f.websocket.close_reason]
        else:
            d["messages"] = [[m.from_client, m.content] for m in f.messages]
        out.append(d)
    sys.stdout.buffer.write(tnetstring.dumps(out))
"""

MITM_WRITE = """
    import sys
    from mitmproxy import io
    from mitmproxy.test import tflow
    with open(sys.argv[1], "wb") as fo:
        w = io.FlowWriter(fo)
        w.add(tflow.twebsocketflow())
        w.add(tflow.ttcpflow())
"""


def test_mitmproxy_reads_our_websocket_and_tcp_flows(tmp_path):
    ours = [ws_flow(), tcp_flow()]
    path = tmp_path / "ours.flows"
    path.write_bytes(write_flows(ours))
    ws, tcp = tnetstring.loads(run_mitmproxy(MITM_READ, str(path)))
    assert ws["type"] == "http" and tcp["type"] == "tcp"
    assert ws["messages"] == [[True, True, b"hello", False, False],
                              [False, False, bytes(range(256)), True, False],
                              [True, False, b"injected", False, True]]
    assert ws["close"] == [1000, "bye"]
    assert tcp["messages"] == [[True, b"SSH-2.0\r\n"], [False, b"\x00\xff"]]
    # What mitmproxy makes of our state is our state.
    for flow, seen in zip(ours, (ws, tcp)):
        assert tnetstring.loads(tnetstring.dumps(flow.get_state())) == seen["state"]


def test_we_read_mitmproxys_websocket_and_tcp_flows(tmp_path):
    path = tmp_path / "theirs.flows"
    run_mitmproxy(MITM_WRITE, str(path))
    with open(path, "rb") as fo:
        reader = FlowReader(fo)
        ws, tcp = list(reader.stream())
    assert reader.skipped == []
    assert ws.websocket is not None and len(ws.websocket.messages) > 0
    assert all(isinstance(m, WebSocketMessage) for m in ws.websocket.messages)
    assert isinstance(tcp, TCPFlow) and len(tcp.messages) > 0
    again = list(FlowReader(io.BytesIO(write_flows([ws, tcp]))).stream())
    assert [f.get_state() for f in again] == [f.get_state() for f in (ws, tcp)]
