"""The spec's `WebSocketFlow` (events.rst): `websocket_message(flow)` with
`flow.messages[-1]` changeable and killable, beside a mitmproxy 11 addon reading
`flow.websocket.messages` over the same message objects. Real clients over real sockets:
CONNECT (the `websockets` client through the proxy), absolute-form (a raw wsproto client
sending ``GET http://host/chat``) and reverse mode; the recording stays mitmproxy's format.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import wsproto
import wsproto.events as wse
from websockets.asyncio.client import connect

from fastproxy.io.flowfile import FlowReader
from tests.test_websocket import echo_server, events  # noqa: F401  (fixture)

SPEC_ADDON = r'''
import json, os
from fastproxy.models import WebSocketFlow
from fastproxy.http import HTTPFlow

LOG = os.environ["WS_EVENT_LOG"]

def log(**entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")

def websocket_start(flow):
    assert isinstance(flow, WebSocketFlow)
    log(event="websocket_start", path=flow.handshake_flow.request.path,
        status=flow.handshake_flow.response.status_code,
        client=list(flow.client_conn.peername), server=list(flow.server_conn.address))

def websocket_message(flow):
    m = flow.messages[-1]
    if m.from_client and m.content.startswith(b"modify:"):
        m.content = m.content.upper()
    if m.from_client and m.content.startswith(b"kill:"):
        m.kill()

def websocket_end(flow):
    log(event="websocket_end", n=len(flow.messages), code=flow.close_code,
        reason=flow.close_reason, sender=flow.close_sender, error=flow.error is not None,
        killed=[m.content.decode() for m in flow.messages if m.killed],
        http=isinstance(flow, HTTPFlow))
'''

MITM11_ADDON = r'''
import json, os
LOG = os.environ["WS_EVENT_LOG"]

def websocket_message(flow):
    m = flow.websocket.messages[-1]
    with open(LOG, "a") as f:
        f.write(json.dumps({"event": "m11", "content": m.content.decode(),
                            "dropped": m.dropped, "same": m is flow.messages[-1]}) + "\n")
    if m.content == b"drop-by-11":
        m.drop()
'''


@pytest.fixture
def scripts(tmp_path):
    spec, m11 = tmp_path / "spec_addon.py", tmp_path / "m11_addon.py"
    spec.write_text(SPEC_ADDON)
    m11.write_text(MITM11_ADDON)
    return spec, m11, tmp_path / "events.jsonl"


class RawAbsoluteFormClient:
    """A WebSocket client that sends its handshake to the proxy in absolute form."""

    async def open(self, proxy_port: int, origin_port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.writer.write(self.ws.send(wse.Request(
            host=f"127.0.0.1:{origin_port}", target=f"http://127.0.0.1:{origin_port}/chat")))
        assert isinstance(await self.next_event(), wse.AcceptConnection)

    async def next_event(self) -> wse.Event:
        while True:
            for event in self.ws.events():
                return event
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            assert data, "connection closed"
            self.ws.receive_data(data)

    async def send(self, text: str) -> None:
        self.writer.write(self.ws.send(wse.TextMessage(text)))

    async def recv(self) -> str:
        parts = []
        while True:
            event = await self.next_event()
            assert isinstance(event, wse.TextMessage), event
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts)

    async def close(self) -> None:
        self.writer.write(self.ws.send(wse.CloseConnection(1000, "done")))
        while not isinstance(await self.next_event(), wse.CloseConnection):
            pass
        self.writer.close()


async def talk(send, recv) -> None:
    await send("modify:abc")
    assert await recv() == "MODIFY:ABC"
    await send("kill:never echoed")
    await send("drop-by-11")
    await send("after")
    assert await recv() == "after"


@pytest.mark.parametrize("mode", ["connect", "absolute", "reverse"])
async def test_spec_addon_changes_and_kills(mode, echo_server, scripts, start_proxy, tmp_path):
    spec, m11, log = scripts
    record = tmp_path / "ws.flows"
    args = ["-q", "-s", str(spec), "-s", str(m11), "-w", str(record)]
    if mode == "reverse":
        args += ["--mode", f"reverse:http://127.0.0.1:{echo_server}"]
    proxy = start_proxy(*args, env={"WS_EVENT_LOG": str(log)})
    if mode == "absolute":
        client = RawAbsoluteFormClient()
        await client.open(proxy.port, echo_server)
        await talk(client.send, client.recv)
        await client.close()
    else:
        target = proxy.port if mode == "reverse" else echo_server
        kwargs = {"proxy": proxy.url} if mode == "connect" else {"proxy": None}
        async with connect(f"ws://127.0.0.1:{target}/chat", **kwargs) as ws:
            await talk(ws.send, ws.recv)
    seen = events(log, "websocket_end")
    start = next(e for e in seen if e["event"] == "websocket_start")
    assert start["path"] == "/chat" and start["status"] == 101
    assert start["server"] == ["127.0.0.1", echo_server]
    m11 = [(e["content"], e["dropped"], e["same"]) for e in seen if e["event"] == "m11"]
    # The mitmproxy 11 addon runs after the spec addon and sees its changes and kills.
    assert m11[:2] == [("MODIFY:ABC", False, True), ("MODIFY:ABC", False, True)]
    assert ("kill:never echoed", True, True) in m11
    assert ("drop-by-11", False, True) in m11
    assert len(m11) == 6  # 4 from the client, 2 echoed: the dropped ones never came back
    end = seen[-1]
    assert end["event"] == "websocket_end" and end["code"] == 1000
    assert end["sender"] == "client" and end["error"] is False and end["http"] is True
    assert end["killed"] == ["kill:never echoed", "drop-by-11"]
    proxy.stop()
    with open(record, "rb") as f:
        flows = list(FlowReader(f).stream())
    ws_flows = [f for f in flows if f.websocket is not None]
    assert len(ws_flows) == 1 and type(ws_flows[0]).__name__ == "HTTPFlow"
    recorded = [(m.content, m.dropped) for m in ws_flows[0].websocket.messages]
    assert (b"MODIFY:ABC", False) in recorded and (b"kill:never echoed", True) in recorded
