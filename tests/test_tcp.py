"""Raw TCP through the real proxy: echo and sink servers on 127.0.0.1.

TCP flows come from --tcp-hosts, from tunnels whose first bytes are neither TLS nor HTTP,
and from --mode reverse:tcp://. With a tcp_* addon the bytes go through Python (events,
changes); without one, through the Cython relay, whose back-pressure keeps the proxy's
memory bounded however slowly a peer reads.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.support.tcpserver import Server

ADDON = r'''
import json, os
from fastproxy.tcp import inject

LOG = os.environ["TCP_EVENT_LOG"]

def log(event, flow, **extra):
    entry = {"event": event, "id": flow.id, "n": len(flow.messages), **extra}
    if flow.error is not None:
        entry["error"] = flow.error.msg
    if flow.server_conn is not None and flow.server_conn.address:
        entry["server"] = list(flow.server_conn.address)
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")

def tcp_start(flow):
    log("tcp_start", flow)

def tcp_message(flow):
    m = flow.messages[-1]
    if m.from_client:
        m.content = m.content.replace(b"foo", b"bar")
        if m.content == b"inject":
            inject(flow, True, b"injected")
    log("tcp_message", flow, from_client=m.from_client, content=m.content.decode("latin-1"))

def tcp_end(flow):
    log("tcp_end", flow)

def tcp_error(flow):
    log("tcp_error", flow)
'''

MiB = 1 << 20


def echo(conn) -> None:
    """Echo until the client's FIN, then say goodbye and close."""
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.sendall(b"bye")


@pytest.fixture
def echo_server():
    server = Server(echo)
    yield server
    server.close()


@pytest.fixture
def addon(tmp_path):
    script = tmp_path / "tcp_addon.py"
    script.write_text(ADDON)
    return script, tmp_path / "events.jsonl"


def events(log, wait_for: str, timeout: float = 10.0) -> list[dict]:
    """The events of the flow that logged `wait_for` with the most messages (the proxy
    fixture's own probe connection makes a flow of its own in reverse mode)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        ends = [e for e in seen if e["event"] == wait_for and e["n"] > 1]
        if ends or (wait_for != "tcp_end" and any(e["event"] == wait_for for e in seen)):
            flow_id = max(ends or [e for e in seen if e["event"] == wait_for],
                          key=lambda e: e["n"])["id"]
            return [e for e in seen if e["id"] == flow_id]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {wait_for} event in {seen}")
        time.sleep(0.05)


def tunnel(proxy, port: int) -> socket.socket:
    """A CONNECT tunnel through the proxy to 127.0.0.1:port."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return sock


def recv_all(sock) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def exchange(sock, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        got += sock.recv(65536)
    return got


@pytest.mark.parametrize("how", ["tcp-hosts", "unknown-protocol", "reverse"])
def test_tcp_flow_events_and_modification(how, echo_server, addon, start_proxy):
    script, log = addon
    port = echo_server.port
    args = ["-q", "-s", str(script)]
    if how == "tcp-hosts":
        args += ["--tcp-hosts", f"127\\.0\\.0\\.1:{port}"]
    if how == "reverse":
        args += ["--mode", f"reverse:tcp://127.0.0.1:{port}"]
    proxy = start_proxy(*args, env={"TCP_EVENT_LOG": str(log)})
    if how == "reverse":
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    else:
        sock = tunnel(proxy, port)
    with sock:
        first = b"\x00\x01 not http: foo" if how == "unknown-protocol" else b"hello foo"
        assert exchange(sock, first) == first.replace(b"foo", b"bar")
        sock.sendall(b"inject")
        got = b""
        while len(got) < len(b"injectedinject"):
            got += sock.recv(100)
        assert got in (b"injectedinject", b"injectinjected")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock).endswith(b"bye")  # half-close: the answer still comes back
    seen = events(log, "tcp_end")
    assert seen[0]["event"] == "tcp_start" and seen[0]["server"] == ["127.0.0.1", port]
    messages = [(e["from_client"], e["content"]) for e in seen if e["event"] == "tcp_message"]
    assert messages[0] == (True, first.decode("latin-1").replace("foo", "bar"))
    assert (False, "injected") in messages and (True, "inject") in messages
    assert seen[-1]["event"] == "tcp_end" and "error" not in seen[-1]


@pytest.mark.parametrize("with_addon", [True, False], ids=["addon", "relay"])
def test_half_close_both_directions(with_addon, addon, start_proxy):
    script, log = addon

    def server_closes_first(conn):
        conn.sendall(b"greeting")
        conn.shutdown(socket.SHUT_WR)  # FIN from the server, reading on
        conn.sendall(b"") if False else None
        received = recv_all(conn)
        time.sleep(0.1)
        conn.sendall(b"") if False else None
        with open(str(log) + ".server", "wb") as f:
            f.write(received)

    server = Server(server_closes_first)
    args = ["-q", "--tcp-hosts", f":{server.port}$"]
    if with_addon:
        args += ["-s", str(script)]
    proxy = start_proxy(*args, env={"TCP_EVENT_LOG": str(log)})
    with tunnel(proxy, server.port) as sock:
        assert recv_all(sock) == b"greeting"  # the server's FIN arrived ...
        sock.sendall(b"still talking " * 1000)  # ... and this direction keeps flowing
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""
    deadline = time.monotonic() + 10
    server_log = log.parent / (log.name + ".server")
    while not server_log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    assert server_log.read_bytes() == b"still talking " * 1000
    if with_addon:
        assert events(log, "tcp_end")[-1]["event"] == "tcp_end"
    server.close()


def test_unreachable_server_is_a_tcp_error(addon, start_proxy):
    script, log = addon
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    proxy = start_proxy("-q", "-s", str(script), "--mode", f"reverse:tcp://127.0.0.1:{port}",
                        env={"TCP_EVENT_LOG": str(log)})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        assert recv_all(sock) == b""
    seen = events(log, "tcp_error")
    assert [e["event"] for e in seen] == ["tcp_start", "tcp_error"]
    assert "cannot connect" in seen[-1]["error"]


def test_reset_by_server_is_a_tcp_error(addon, start_proxy):
    script, log = addon

    def reset(conn):
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # RST

    server = Server(reset)
    proxy = start_proxy("-q", "-s", str(script), "--mode", f"reverse:tcp://127.0.0.1:{server.port}",
                        env={"TCP_EVENT_LOG": str(log)})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"hi")
        try:
            recv_all(sock)
        except ConnectionResetError:
            pass
    seen = events(log, "tcp_error")
    assert "server" in seen[-1]["error"]
    server.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


RSS_GROWTH_BOUND_MIB = 48
"""How much the proxy's RSS may grow while relaying to a slow reader (its buffers are
~64 KiB per direction; the rest is allocator noise)."""


@pytest.mark.parametrize("total_mib,with_addon", [(1024, False), (128, True)],
                         ids=["relay-1GiB", "addon-128MiB"])
def test_slow_reader_keeps_proxy_memory_bounded(total_mib, with_addon, addon, start_proxy):
    """The sink stalls, then reads in bursts with pauses: the proxy must stop reading
    from the sender instead of buffering what the sink has not taken yet."""
    script, log = addon
    received = [0]

    def slow_sink(conn):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        time.sleep(1.5)  # stalled: everything sent now must wait in the proxy or the kernel
        buf = bytearray(1 << 20)
        n_reads = 0
        while n := conn.recv_into(buf):
            received[0] += n
            n_reads += 1
            if n_reads % 2048 == 0:
                time.sleep(0.05)  # a reader that keeps pausing
        conn.sendall(b"done")

    server = Server(slow_sink)
    args = ["-q", "--tcp-hosts", f":{server.port}$"]
    if with_addon:  # it keeps no history: flow.messages would hold every byte (as in mitmproxy)
        script.write_text("def tcp_message(flow):\n    flow.messages.clear()\n")
        args += ["-s", str(script)]
    proxy = start_proxy(*args, env={"TCP_EVENT_LOG": str(log)})
    pid = proxy.proc.pid
    baseline = rss_kib(pid)
    peak = [baseline]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    block = bytes(range(256)) * 4096  # 1 MiB
    with tunnel(proxy, server.port) as sock:
        for _ in range(total_mib):
            sock.sendall(block)
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"done"
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    server.close()
    assert received[0] == total_mib * MiB
    growth_mib = (peak[0] - baseline) / 1024
    print(f"{total_mib} MiB in {elapsed:.1f}s ({total_mib / elapsed:.0f} MiB/s); "
          f"RSS {baseline // 1024} MiB -> peak {peak[0] // 1024} MiB")
    assert growth_mib < RSS_GROWTH_BOUND_MIB, f"proxy RSS grew by {growth_mib:.0f} MiB"
