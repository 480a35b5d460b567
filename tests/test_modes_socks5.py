"""SOCKS5 mode (RFC 1928, RFC 1929) with real clients: curl --socks5-hostname, httpx with a
SOCKS proxy, and raw sockets for every reply code."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support import connlog
from tests.support.cli import curl, records
from tests.support.origin import payload
from tests.support.socks import EchoServer, socks_connect

CONNLOG_SCRIPT = str(Path(connlog.__file__))


@pytest.fixture
def socks_proxy(start_proxy, tmp_path):
    def start(*args, log=True, quiet=True):
        path = tmp_path / "conn.jsonl"
        script = ["-s", CONNLOG_SCRIPT] if log else []
        proxy = start_proxy(*(["-q"] if quiet else []), "-m", "socks5", *script, *args,
                            env={"CONNLOG": str(path)})
        return proxy, path
    return start


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.stop()


def test_curl_socks5_hostname_http(socks_proxy, origin):
    proxy, log = socks_proxy()
    out = curl("--socks5-hostname", f"127.0.0.1:{proxy.port}",
               f"http://localhost:{origin.port}/bytes/100000")
    assert out.returncode == 0, out.stderr
    assert out.stdout == payload(100000)
    client = records(log, "clientconnect")[0]
    assert client["type"] == "socks5" and client["mode"] == "socks5"
    assert client["sockname"] == ["127.0.0.1", proxy.port]
    assert client["peername"][0] == "127.0.0.1"
    server = records(log, "serverconnect")[0]
    assert server["address"] == ["localhost", origin.port] and server["via"] is None
    flow = records(log, "response")[0]
    assert flow["url"] == f"http://localhost:{origin.port}/bytes/100000"
    assert flow["mode"] == "socks5" and flow["status"] == 200


def test_httpx_through_socks5(socks_proxy, origin):
    proxy, _ = socks_proxy(log=False)
    with httpx.Client(proxy=f"socks5://127.0.0.1:{proxy.port}", timeout=10) as client:
        for _ in range(3):  # one tunnel each time: the pool of the tunnel is reused too
            response = client.get(f"http://127.0.0.1:{origin.port}/bytes/5000")
            assert response.status_code == 200
            assert response.content == payload(5000)


def test_tls_interception_inside_socks5(start_proxy, tmp_path, https_origin, test_ca):
    log = tmp_path / "conn.jsonl"
    proxy = start_proxy("-q", "-m", "socks5", "-s", CONNLOG_SCRIPT,
                        "--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}",
                        env={"CONNLOG": str(log)})
    cacert = tmp_path / "confdir" / "fastproxy-ca-cert.pem"
    out = curl("--socks5-hostname", f"127.0.0.1:{proxy.port}", "--cacert", str(cacert),
               f"https://localhost:{https_origin.port}/bytes/3000")
    assert out.returncode == 0, out.stderr
    assert out.stdout == payload(3000)
    flow = records(log, "response")[0]
    assert flow["url"] == f"https://localhost:{https_origin.port}/bytes/3000"  # decrypted


def test_tcp_relay_ipv4_ipv6_and_domain(socks_proxy, echo):
    proxy, _ = socks_proxy(log=False)
    try:
        echo6 = EchoServer("::1")
    except OSError:
        echo6 = None
    targets = [("127.0.0.1", echo.port), ("localhost", echo.port)]
    if echo6 is not None:
        targets.append(("::1", echo6.port))
    for host, port in targets:
        sock, code = socks_connect(proxy.port, host, port)
        with sock:
            assert code == 0, (host, code)
            message = b"\x00\x01binary, not HTTP " + host.encode() + b"\xff" * 1000
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                got += sock.recv(65536)
            assert got == message
    if echo6 is not None:
        assert echo6.peers and echo6.peers[0][0] == "::1"
        echo6.stop()


def test_reply_codes(socks_proxy):
    proxy, _ = socks_proxy(log=False)
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    sock, code = socks_connect(proxy.port, "127.0.0.1", closed_port)
    sock.close()
    assert code == 0x05
    sock, code = socks_connect(proxy.port, "127.0.0.1", 80, command=2)  # BIND
    sock.close()
    assert code == 0x07
    sock, code = socks_connect(proxy.port, "127.0.0.1", 80, atyp=9)
    sock.close()
    assert code == 0x08
    sock, code = socks_connect(proxy.port, "no-such-host.invalid", 80)
    sock.close()
    assert code == 0x04
    sock, code = socks_connect(proxy.port, "127.0.0.1", 80, methods=b"\x02")  # no auth here
    sock.close()
    assert code == 0xFF


def test_http_client_on_the_socks_port_is_told(socks_proxy):
    proxy, _ = socks_proxy(log=False)
    out = curl("-x", f"http://127.0.0.1:{proxy.port}", "http://127.0.0.1:1/")
    assert b"Invalid SOCKS version" in out.stdout


def test_socks5_username_password(socks_proxy, origin, echo):
    proxy, _ = socks_proxy("--proxyauth", "alice:s3cret", log=False, quiet=False)
    ok = curl("--socks5-hostname", f"127.0.0.1:{proxy.port}", "--proxy-user", "alice:s3cret",
              f"http://127.0.0.1:{origin.port}/bytes/10")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == payload(10)
    bad = curl("--socks5-hostname", f"127.0.0.1:{proxy.port}", "--proxy-user", "alice:wrong",
               f"http://127.0.0.1:{origin.port}/bytes/10")
    assert bad.returncode != 0
    sock, code = socks_connect(proxy.port, "127.0.0.1", echo.port, auth=("alice", "nope"))
    sock.close()
    assert code == 0x101  # RFC 1929 status 1: failure
    sock, code = socks_connect(proxy.port, "127.0.0.1", echo.port)  # offers no-auth only
    sock.close()
    assert code == 0xFF
    sock, code = socks_connect(proxy.port, "127.0.0.1", echo.port, auth=("alice", "s3cret"))
    with sock:
        assert code == 0
        sock.sendall(b"ping")
        assert sock.recv(10) == b"ping"
    with httpx.Client(proxy=f"socks5://alice:s3cret@127.0.0.1:{proxy.port}",
                      timeout=10) as client:
        assert client.get(f"http://127.0.0.1:{origin.port}/bytes/7").content == payload(7)
    deadline = time.monotonic() + 5
    while "proxy authentication failed" not in proxy.stdout + proxy.stderr:
        assert time.monotonic() < deadline, proxy.stdout + proxy.stderr
        time.sleep(0.05)
    assert "alice" in proxy.stdout + proxy.stderr


WS_ADDON = '''
def websocket_message(flow):
    message = flow.websocket.messages[-1]
    if message.from_client and message.is_text:
        message.text = message.text.upper()
'''


async def test_websocket_inside_socks5(start_proxy, tmp_path):
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    script = tmp_path / "ws_addon.py"
    script.write_text(WS_ADDON)
    proxy = start_proxy("-q", "-m", "socks5", "-s", str(script))
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        sock, code = socks_connect(proxy.port, "localhost", port)
        assert code == 0
        sock.setblocking(False)
        async with connect(f"ws://localhost:{port}/chat", sock=sock, proxy=None) as ws:
            await ws.send("hello through socks")
            assert await ws.recv() == "HELLO THROUGH SOCKS"  # the addon saw the message
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"


def test_server_first_protocol_through_socks5(socks_proxy):
    """The server speaks first (an SMTP-like banner): the tunnel is TCP at once."""
    proxy, _ = socks_proxy(log=False)
    banner = EchoServer(greeting=b"220 banner first\r\n")
    try:
        sock, code = socks_connect(proxy.port, "127.0.0.1", banner.port)
        with sock:
            assert code == 0
            got = b""
            while not got.endswith(b"\r\n"):
                got += sock.recv(100)
            assert got == b"220 banner first\r\n"
            sock.sendall(b"EHLO x\r\n")
            assert sock.recv(100) == b"EHLO x\r\n"
    finally:
        banner.stop()
