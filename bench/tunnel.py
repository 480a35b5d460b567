"""CONNECT tunnel throughput: 1 GiB through the proxy vs the same 1 GiB straight to a sink.

The sink is a separate process (`python -m bench.tunnel --sink PORT`) so it does not share
a GIL with the sender. The sender first sends the payload length (8 bytes, big-endian), then
the payload; the sink reads and discards and, once it has that many bytes, answers "OK" and
closes. The clock stops when that answer arrives, so every byte has crossed the tunnel, and
no half-close has to survive the proxy. The payload is zeros after the length: neither TLS
nor HTTP, so the proxy relays it.

The SOCKS5 row is the same relay reached through a SOCKS5 handshake (RFC 1928, no
authentication, an IPv4 address) instead of CONNECT: after the handshake both are the
same Cython relay, so the two rows should match.

The C anchor is nginx's stream module (`nginx-stream`): one worker relaying the same bytes
to the same sink, but the client connects to it directly (no CONNECT request: nginx's
stream module cannot answer one). It shows what a C relay reaches on this machine, where
the sender, the sink and the relay share the cores.
"""
from __future__ import annotations

import argparse
import socket
import sys
import threading
import time

from bench import peers
from bench.proc import Server, free_port, log
from bench.procstat import Sampler
from bench.scenarios import Column, Context, median, scenario
from bench.targets import fastproxy

GIB = 1 << 30
CHUNK = 1 << 20


def serve_sink(port: int) -> None:
    """Accept forever; per connection read the length, drain that much, answer OK, close."""
    ls = socket.create_server(("127.0.0.1", port), backlog=64)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=_drain, args=(conn,), daemon=True).start()


def _drain(conn: socket.socket) -> None:
    buf = bytearray(CHUNK)
    with conn:
        got = b""
        while len(got) < 8:
            chunk = conn.recv(8 - len(got))
            if not chunk:
                return
            got += chunk
        left = int.from_bytes(got, "big")
        while left > 0:
            n = conn.recv_into(buf, min(CHUNK, left))
            if not n:
                return  # short: the sender sees the connection close without OK
            left -= n
        conn.sendall(b"OK")


def connect_via(proxy_port: int, dest_port: int) -> socket.socket:
    """Open a CONNECT tunnel to 127.0.0.1:dest_port and return the socket past the 200."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=30)
    authority = f"127.0.0.1:{dest_port}"
    s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"proxy closed during CONNECT: {head!r}")
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 200" not in status:
        raise RuntimeError(f"CONNECT answered {status!r}")
    if head.index(b"\r\n\r\n") + 4 != len(head):
        raise RuntimeError("bytes after the CONNECT response")
    return s


def transfer(sock: socket.socket, total: int, deadline_s: float = 120.0) -> float:
    """Send the length and `total` zero bytes, wait for the sink's OK; return seconds."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = memoryview(bytes(CHUNK))
    t0 = time.perf_counter()
    sent = 0
    with sock:
        sock.sendall(total.to_bytes(8, "big"))
        while sent < total:
            n = min(CHUNK, total - sent)
            sock.sendall(payload[:n])
            sent += n
            if time.perf_counter() - t0 > deadline_s:
                raise TimeoutError(f"only {sent >> 20} MiB in {deadline_s:.0f}s")
        answer = sock.recv(2)
    elapsed = time.perf_counter() - t0
    if answer != b"OK":
        raise RuntimeError(f"sink did not confirm {total} bytes (got {answer!r})")
    return elapsed


def socks5_via(proxy_port: int, dest_port: int) -> socket.socket:
    """A SOCKS5 CONNECT to 127.0.0.1:dest_port; the socket past the success reply."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"\x05\x01\x00")
    if _recv_exact(s, 2) != b"\x05\x00":
        raise RuntimeError("SOCKS5 proxy refused the no-authentication method")
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + dest_port.to_bytes(2, "big"))
    reply = _recv_exact(s, 10)
    if reply[1] != 0:
        raise RuntimeError(f"SOCKS5 CONNECT answered {reply[1]:#04x}")
    return s


def _recv_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise RuntimeError(f"proxy closed during the SOCKS5 handshake: {data!r}")
        data += chunk
    return data


#: name -> (label, make(port, sink_port) -> Server or None for direct,
#:          how the client reaches the sink: True CONNECT, "socks5", False directly)
TUNNEL_TARGETS = {
    "direct": ("direct to the sink (no proxy)", None, False),
    "fastproxy": ("fastproxy regular, CONNECT", lambda p, _: fastproxy(p, "regular"), True),
    "fastproxy-socks5": ("fastproxy socks5, SOCKS5 CONNECT",
                         lambda p, _: fastproxy(p, "socks5", name="fastproxy-socks5"), "socks5"),
    "nginx-stream": ("nginx stream proxy (C relay, no CONNECT)", peers.nginx_stream, False),
    "mitmdump": ("mitmdump regular, CONNECT", lambda p, _: peers.mitmdump(p, "regular"), True),
}


def open_to_sink(srv: Server | None, sink_port: int, via_connect: bool | str) -> socket.socket:
    """A socket whose bytes reach the sink: direct, through a plain relay, or via CONNECT."""
    if srv is None:
        return socket.create_connection(("127.0.0.1", sink_port), timeout=30)
    if via_connect == "socks5":
        return socks5_via(srv.port, sink_port)
    if via_connect:
        return connect_via(srv.port, sink_port)
    return socket.create_connection(("127.0.0.1", srv.port), timeout=30)


@scenario("tunnel", "CONNECT tunnel moving 1 GiB (median of ≥ 3 runs)", order=20, columns=[
    Column("target", "label", "{}"), Column("MB/s", "mbps", "{:,.0f}"),
    Column("seconds", "seconds", "{:.2f}"), Column("× direct", "x_direct", "{:.2f}×"),
    Column("CPU s/GiB", "cpu_s_per_gib", "{:.2f}"),
    Column("peak RSS MiB", "peak_rss_mib", "{:,.1f}"),
])
def tunnel(ctx: Context) -> list[dict]:
    sink_port = free_port()
    sink = Server("sink", [sys.executable, "-m", "bench.tunnel", "--sink", str(sink_port)],
                  sink_port)
    rows = []
    with sink:
        for name, (label, make, via_connect) in TUNNEL_TARGETS.items():
            if ctx.wanted("tunnel", name):
                rows.append(tunnel_target(ctx, name, label, make, via_connect, sink_port))
    direct = next((r.get("mbps") for r in rows if r["target"] == "direct"), None)
    for r in rows:
        if direct and r.get("mbps") and r["target"] != "direct":
            r["x_direct"] = r["mbps"] / direct
    return rows


def tunnel_target(ctx: Context, name: str, label: str, make, via_connect: bool | str,
                  sink_port: int) -> dict:
    row = {"scenario": "tunnel", "target": name, "label": label, "bytes": GIB}
    srv = None
    try:
        srv = make(free_port(), sink_port).start() if make else None
        runs = []
        # A 1 GiB run takes well under a second when direct: always at least 3 of them.
        for _ in range(max(3, ctx.repeats)):
            sock = open_to_sink(srv, sink_port, via_connect)
            with Sampler(srv.pid if srv else None) as s:
                secs = transfer(sock, GIB)
            runs.append({"seconds": secs, "mbps": GIB / secs / 1e6, "cpu_s": s.cpu_s,
                         "peak_rss_mib": s.peak_rss / 2**20 if s.peak_rss else None})
    except Exception as e:  # noqa: BLE001 - a failure is a row
        died = "" if srv is None or srv.alive() else f" (server died: {srv.log_tail(500)})"
        log(f"tunnel/{name}: FAILED: {e}{died}")
        return {**row, "error": f"{e}{died}"}
    finally:
        if srv:
            srv.stop()
    for key in ("seconds", "mbps", "cpu_s", "peak_rss_mib"):
        row[key] = median([r[key] for r in runs])
    row["cpu_s_per_gib"] = row["cpu_s"]
    row["runs"] = runs
    log(f"tunnel/{name}: {row['mbps']:,.0f} MB/s")
    return row


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sink", type=int, required=True)
    serve_sink(ap.parse_args().sink)
