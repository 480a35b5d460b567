"""WebSocket through the real proxy: a `websockets` echo server and client on 127.0.0.1.

Regular mode (the client tunnels with CONNECT, as `websockets` does through an HTTP proxy)
and reverse mode; with an addon (messages parsed by wsproto) and without (pure relay).
The addon logs every event as a JSON line, changes "modify:" messages, kills "kill:"
ones and injects toward both sides on "inject".
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

ADDON = r'''
import json, os
from fastproxy.websocket import inject

LOG = os.environ["WS_EVENT_LOG"]

def log(event, flow, **extra):
    ws = flow.websocket
    entry = {"event": event, **extra}
    if ws is not None:
        entry.update(close_code=ws.close_code, close_reason=ws.close_reason,
                     closed_by_client=ws.closed_by_client, n=len(ws.messages))
    if flow.error is not None:
        entry["error"] = flow.error.msg
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")

def websocket_handshake(flow):
    flow.request.headers["X-Handshake"] = "seen"
    log("websocket_handshake", flow)

def response(flow):
    log("response", flow, status=flow.response.status_code, ws=flow.websocket is not None)

def websocket_start(flow):
    log("websocket_start", flow)

def websocket_message(flow):
    m = flow.websocket.messages[-1]
    log("websocket_message", flow, from_client=m.from_client, text=m.is_text,
        size=len(m.content), head=m.content[:40].decode("latin-1"), injected=m.injected)
    if m.from_client and m.content.startswith(b"modify:"):
        m.content = m.content.upper()
    if m.from_client and m.content.startswith(b"kill:"):
        m.kill()
    if m.from_client and m.content == b"inject":
        inject(flow, True, "to-client")
        inject(flow, False, b"to-server", is_text=False)

def websocket_end(flow):
    log("websocket_end", flow)

def websocket_error(flow):
    log("websocket_error", flow)
'''

MiB = 1 << 20


async def echo(ws) -> None:
    """Echo every message; a few commands make the server misbehave on purpose."""
    try:
        async for message in ws:
            if message == "headers?":
                await ws.send(ws.request.headers.get("X-Handshake", "-"))
            elif message == "close-me":
                await ws.close(4001, "server bye")
            elif message == "abort":
                ws.transport.abort()
            elif message == "garbage":
                ws.transport.write(b"\xff\xff\xff\xff garbage")
            else:
                await ws.send(message)
    except ConnectionClosed:
        pass


@pytest.fixture
async def echo_server():
    async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture
def addon(tmp_path):
    script = tmp_path / "ws_addon.py"
    script.write_text(ADDON)
    log = tmp_path / "events.jsonl"
    return script, log


def events(log, wait_for: str | None = None, timeout: float = 10.0) -> list[dict]:
    """The addon's events so far; with wait_for, wait until that event was logged."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        seen = [json.loads(line) for line in lines]
        if wait_for is None or any(e["event"] == wait_for for e in seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"no {wait_for} event in {seen}")
        time.sleep(0.05)


def client_for(mode: str, proxy, port: int, **kwargs):
    if mode == "regular":
        return connect(f"ws://127.0.0.1:{port}/chat", proxy=proxy.url, max_size=None, **kwargs)
    return connect(f"ws://127.0.0.1:{proxy.port}/chat", proxy=None, max_size=None, **kwargs)


def proxy_args(mode: str, port: int, script=None) -> list[str]:
    args = ["-q"]
    if mode == "reverse":
        args += ["--mode", f"reverse:http://127.0.0.1:{port}"]
    if script is not None:
        args += ["-s", str(script)]
    return args


MODES = ["regular", "reverse"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_addon", [True, False], ids=["addon", "relay"])
async def test_echo_text_binary_fragmented_and_large(mode, with_addon, echo_server, addon, start_proxy):
    script, log = addon
    proxy = start_proxy(*proxy_args(mode, echo_server, script if with_addon else None),
                        env={"WS_EVENT_LOG": str(log)})
    big = bytes(range(256)) * (10 * MiB // 256)
    async with client_for(mode, proxy, echo_server) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\x01binary")
        assert await ws.recv() == b"\x00\x01binary"
        await ws.send(["frag", "mented ", "t\u00e9xt"])  # three frames, one message
        assert await ws.recv() == "fragmented t\u00e9xt"
        await ws.send(big)
        assert await ws.recv() == big
        await ws.send("\u00e9" * (5 * MiB))
        assert await ws.recv() == "\u00e9" * (5 * MiB)
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        await ws.send("headers?")
        assert await ws.recv() == ("seen" if with_addon else "-")
    if not with_addon:
        return
    seen = events(log, "websocket_end")
    names = [e["event"] for e in seen]
    assert names[:3] == ["websocket_handshake", "response", "websocket_start"]
    assert seen[1]["status"] == 101 and seen[1]["ws"] is True
    messages = [e for e in seen if e["event"] == "websocket_message"]
    assert [(m["from_client"], m["size"]) for m in messages[:8]] == [
        (True, 5), (False, 5), (True, 8), (False, 8), (True, 16), (False, 16),
        (True, 10 * MiB), (False, 10 * MiB)]
    assert messages[4]["head"] == "fragmented t\u00c3\u00a9xt" and messages[4]["text"]
    assert not messages[2]["text"]
    end = seen[-1]
    assert end["event"] == "websocket_end" and end["close_code"] == 1000
    assert end["closed_by_client"] is True


@pytest.mark.parametrize("mode", MODES)
async def test_modify_kill_and_inject(mode, echo_server, addon, start_proxy):
    script, log = addon
    proxy = start_proxy(*proxy_args(mode, echo_server, script), env={"WS_EVENT_LOG": str(log)})
    async with client_for(mode, proxy, echo_server) as ws:
        await ws.send("modify:abc")
        assert await ws.recv() == "MODIFY:ABC"
        await ws.send("kill:never seen")
        await ws.send("after")
        assert await ws.recv() == "after"
        await ws.send("inject")
        got = {await ws.recv() for _ in range(3)}
        assert got == {"to-client", "inject", b"to-server"}
    seen = events(log, "websocket_end")
    messages = [(e["from_client"], e["head"], e["injected"]) for e in seen
                if e["event"] == "websocket_message"]
    assert (True, "kill:never seen", False) in messages
    assert (False, "kill:never seen", False) not in messages
    assert (False, "to-client", True) in messages and (True, "to-server", True) in messages


@pytest.mark.parametrize("mode", MODES)
async def test_clean_close_codes(mode, echo_server, addon, start_proxy):
    script, log = addon
    proxy = start_proxy(*proxy_args(mode, echo_server, script), env={"WS_EVENT_LOG": str(log)})
    async with client_for(mode, proxy, echo_server) as ws:
        await ws.send("hi")
        await ws.recv()
        await ws.close(4000, "client bye")
    end = events(log, "websocket_end")[-1]
    assert (end["close_code"], end["close_reason"], end["closed_by_client"]) == (4000, "client bye", True)
    log.unlink()
    async with client_for(mode, proxy, echo_server) as ws:
        await ws.send("close-me")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4001 and closed.value.rcvd.reason == "server bye"
    end = events(log, "websocket_end")[-1]
    assert (end["close_code"], end["close_reason"], end["closed_by_client"]) == (4001, "server bye", False)


@pytest.mark.parametrize("command", ["abort", "garbage"])
async def test_abrupt_close_and_garbage_are_errors(command, echo_server, addon, start_proxy):
    script, log = addon
    proxy = start_proxy(*proxy_args("regular", echo_server, script), env={"WS_EVENT_LOG": str(log)})
    async with client_for("regular", proxy, echo_server) as ws:
        await ws.send(command)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    error = events(log, "websocket_error")[-1]
    assert "server" in error["error"]
    assert not any(e["event"] == "websocket_end" for e in events(log))


async def test_client_vanishing_is_an_error(echo_server, addon, start_proxy):
    script, log = addon
    proxy = start_proxy(*proxy_args("reverse", echo_server, script), env={"WS_EVENT_LOG": str(log)})
    async with client_for("reverse", proxy, echo_server) as ws:
        await ws.send("hi")
        await ws.recv()
        ws.transport.abort()
    error = events(log, "websocket_error")[-1]
    assert "client" in error["error"]


@pytest.mark.parametrize("client_deflate", [True, False])
async def test_deflate_only_when_both_offer(client_deflate, echo_server, addon, start_proxy):
    script, log = addon
    proxy = start_proxy(*proxy_args("reverse", echo_server, script), env={"WS_EVENT_LOG": str(log)})
    compression = "deflate" if client_deflate else None
    async with client_for("reverse", proxy, echo_server, compression=compression) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert ("permessage-deflate" in negotiated) == client_deflate
        text = "compressible " * 10000
        await ws.send(text)
        assert await ws.recv() == text
    sizes = [e["size"] for e in events(log, "websocket_end") if e["event"] == "websocket_message"]
    assert sizes == [len(text), len(text)]  # the addon sees the uncompressed message


def test_websockets_is_the_real_library():
    assert websockets.__version__
