"""The driver of the sans-io TCP layer (proxy/driver.py), with fake transports: what
the playbook tests can't see, the driver's own rules (back-pressure, losses, splices).
Real sockets are tests/test_tcp.py's."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from fastproxy._core import Relay
from fastproxy.connection import Client, Server
from fastproxy.proxy.driver import INBOX_HIGH_WATER, Driver
from fastproxy.proxy.layers.tcp import TcpLayer


class FakeTransport:
    """Records writes, pauses and closes; `protocol` is whoever was last set."""

    def __init__(self, protocol=None) -> None:
        self.protocol = protocol
        self.written: list[bytes] = []
        self.reading = True
        self.closed = False
        self.eof_written = False

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


class FakePool:
    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.closed_servers: list[Server] = []

    async def connect(self, host: str, port: int, protocol) -> Server:
        self.transport.protocol = protocol
        protocol.connection_made(self.transport)
        return Server(address=(host, port), peername=("10.0.0.1", port))

    def closed(self, server: Server) -> None:
        self.closed_servers.append(server)


def make(listening: tuple[str, ...], loop) -> tuple[Driver, TcpLayer, SimpleNamespace]:
    fired: list[str] = []
    listeners = SimpleNamespace(**{name: [print] if name in listening else [] for name in
                                   ("tcp_start", "tcp_message", "tcp_end", "tcp_error")})
    client_transport = FakeTransport()
    reader = SimpleNamespace(take_rest=lambda: b"early", at_eof=False)
    endpoint = SimpleNamespace(loop=loop, transport=client_transport, reader=reader,
                               closed=False, on_lost=None)
    ctx = SimpleNamespace(
        client=endpoint, client_conn=Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2)),
        listeners=listeners, pool=FakePool(), server_conn=None,
        addons=SimpleNamespace(fire=lambda name, flow: fired.append(name)))
    layer = TcpLayer(ctx, ("example.com", 7))
    ctx.fired = fired
    return Driver(ctx, layer), layer, ctx


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_loss_is_fed_while_writes_are_paused():
    """The client reads nothing (its transport paused our writes), so no event is fed;
    the server then vanishes: that loss still reaches the layer, which closes the client."""
    async def main():
        driver, layer, ctx = make(("tcp_start", "tcp_message", "tcp_error"),
                                  asyncio.get_running_loop())
        task = asyncio.create_task(driver.run())
        await settle()
        client, server = ctx.client.transport, ctx.pool.transport
        assert server.written == [b"early"]  # what the client sent before the handover
        client.protocol.pause_writing()
        server.protocol.data_received(b"not fed while the client can't take it")
        await settle()
        assert client.written == []
        server.protocol.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
        await asyncio.wait_for(task, 1)
        assert client.closed
        assert ctx.fired == ["tcp_start", "tcp_message", "tcp_message", "tcp_error"]
        assert layer.flow.error.msg == "server connection lost: [Errno 104] Connection reset by peer"
        assert ctx.pool.closed_servers and ctx.server_conn is layer.server
        assert layer.server.peername == ("10.0.0.1", 7)  # the pool's Server, copied
    asyncio.run(main())


def test_reading_pauses_over_the_high_water_mark():
    async def main():
        driver, _layer, ctx = make(("tcp_message",), asyncio.get_running_loop())
        task = asyncio.create_task(driver.run())
        await settle()
        client, server = ctx.client.transport, ctx.pool.transport
        client.protocol.pause_writing()  # nothing is fed: the inbox fills
        chunk = b"x" * (INBOX_HIGH_WATER // 2)
        for _ in range(3):
            server.protocol.data_received(chunk)
        assert not server.reading and not client.reading
        client.protocol.resume_writing()
        await settle()
        assert server.reading and client.reading
        assert b"".join(client.written) == chunk * 3  # joined into one message
        server.protocol.eof_received()
        client.protocol.eof_received()
        await asyncio.wait_for(task, 1)
        assert server.eof_written and client.eof_written and ctx.fired[-1] == "tcp_message"
    asyncio.run(main())


def test_no_listener_hands_both_transports_to_relays():
    async def main():
        driver, layer, ctx = make((), asyncio.get_running_loop())
        task = asyncio.create_task(driver.run())
        await settle()
        client, server = ctx.client.transport, ctx.pool.transport
        assert type(client.protocol) is Relay and type(server.protocol) is Relay
        assert client.protocol.peer is server.protocol and server.written == [b"early"]
        server.protocol.data_received(b"relayed")  # by the Relay, in C
        assert client.written == [b"relayed"]
        server.close()  # the Relay closes the client too
        await asyncio.wait_for(task, 1)
        assert client.closed and ctx.fired == [] and layer.flow is None
    asyncio.run(main())
