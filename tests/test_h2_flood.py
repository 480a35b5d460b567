"""HTTP/2 abuse limits (issue 15, finding 4): floods bounded in count and time, each
ending in GOAWAY with the right code, the proxy's CPU seconds and RSS growth bounded
(< 50 MB), and another client served meanwhile (median of the probes under 100 ms).

Counts are kept small (tens of thousands of frames, not millions) so the suite takes
seconds; the limits make each connection end long before that anyway.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import threading
import time

import h2.errors
import hpack
import pytest
from hyperframe.frame import GoAwayFrame, SettingsFrame

from tests.support.h2kit import H2Client, RecordingH2Origin, client_context, read_frames
from tests.support.proxyproc import ProxyProcess
from tests.support.tls_origin import TestCA
from tests.test_h2_conformance import GET, PREFACE, raw_frame

E = h2.errors.ErrorCodes


@pytest.fixture
def proxy_for(tmp_path):
    """proxy_for(*args) -> ProxyProcess in reverse mode to a recording h2 origin."""
    ca = TestCA(tmp_path / "ca")
    origin = RecordingH2Origin(ca)
    started = []

    def start(*args):
        proxy = ProxyProcess("-q", "--set", "termlog_verbosity=warn",
                             "--set", f"ssl_verify_upstream_trusted_ca={ca.ca_pem}",
                             "--mode", f"reverse:https://127.0.0.1:{origin.port}", *args,
                             tmp_path=tmp_path)
        started.append(proxy)
        return proxy
    yield start
    for proxy in started:
        proxy.stop()
    origin.stop()


def usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), rss


def flood(port: int, data: bytes, chunk: int = 1 << 16, timeout: float = 10.0):
    """Send `data` after the preface as fast as the proxy takes it; the GOAWAY (frame) or
    None, and how many bytes went out before the proxy stopped reading."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock = client_context().wrap_socket(raw, server_hostname="localhost")
    sent = 0
    try:
        sock.sendall(PREFACE + SettingsFrame(0).serialize())
        for i in range(0, len(data), chunk):
            try:
                sock.sendall(data[i:i + chunk])
            except OSError:
                break
            sent += chunk
        goaway = [f for f in read_frames(sock, timeout) if isinstance(f, GoAwayFrame)]
        return (goaway[0] if goaway else None), sent
    finally:
        sock.close()


def probe_latencies(port: int, count: int = 7) -> list[float]:
    client = H2Client(port)
    times = []
    try:
        for i in range(count):
            start = time.monotonic()
            assert client.request("GET", f"/probe{i}").status == 200
            times.append(time.monotonic() - start)
            time.sleep(0.02)
    finally:
        client.close()
    return times


def rapid_reset(count: int) -> bytes:
    """HEADERS then RST_STREAM CANCEL, `count` times (CVE-2023-44487)."""
    encoder = hpack.Encoder()
    out = []
    for i in range(count):
        sid = 2 * i + 1
        out.append(raw_frame(1, 4, sid, encoder.encode(GET[:3] + [(b":path", b"/r")])))
        out.append(raw_frame(3, 0, sid, b"\0\0\0\x08"))
    return b"".join(out)


def under_flood(proxy, make_flood, connections: int):
    """Flood from a thread, `connections` connections one after the other, while a
    second client probes; returns (GOAWAYs, probe times, CPU s used, RSS growth)."""
    cpu0, rss0 = usage(proxy.proc.pid)
    goaways = []

    def run():
        for _ in range(connections):
            goaways.append(flood(proxy.port, make_flood())[0])
    thread = threading.Thread(target=run)
    thread.start()
    times = []
    while thread.is_alive() and len(times) < 21:
        times += probe_latencies(proxy.port, 3)
    thread.join(60)
    assert not thread.is_alive()
    time.sleep(0.3)  # freed streams and connections are collected
    cpu1, rss1 = usage(proxy.proc.pid)
    return goaways, times, cpu1 - cpu0, rss1 - rss0


def assert_served_meanwhile(times: list[float]) -> None:
    # The 100 ms; the median of several probes, so that one scheduling hiccup
    # on a shared 2-core machine does not fail it.
    assert times, "no probe ran during the flood"
    assert statistics.median(times) < 0.1, times


def test_rapid_reset_gets_goaway_and_memory_stays_flat(proxy_for):
    proxy = proxy_for()
    probe_latencies(proxy.port, 2)  # warm up: the upstream connection, imports
    data = rapid_reset(20_000)
    goaways, times, cpu, growth = under_flood(proxy, lambda: data, 10)
    assert all(g is not None and g.error_code == E.ENHANCE_YOUR_CALM for g in goaways), goaways
    assert growth < 50 * 1024 * 1024, growth
    assert cpu < 10, cpu
    assert_served_meanwhile(times)
    assert "GOAWAY ENHANCE_YOUR_CALM" in proxy.stderr + proxy.stdout


def test_reset_count_per_connection_limit(proxy_for):
    proxy = proxy_for("--set", "h2_max_resets_per_second=1000000", "--set", "h2_max_resets=500")
    goaway, _ = flood(proxy.port, rapid_reset(5000))
    assert goaway is not None and goaway.error_code == E.ENHANCE_YOUR_CALM
    assert "more than 500 streams reset (h2_max_resets)" in proxy.stderr + proxy.stdout


FLOODS = {
    "settings": lambda: raw_frame(4, 0, 0, b"") * 20_000,
    "ping": lambda: raw_frame(6, 0, 0, b"12345678") * 20_000,
    "priority": lambda: b"".join(raw_frame(2, 0, 2 * i + 1, b"\0\0\0\0\x10")
                                 for i in range(20_000)),
    "window_update": lambda: raw_frame(8, 0, 0, b"\0\0\0\x01") * 40_000,
}


@pytest.mark.parametrize("kind", list(FLOODS))
def test_control_frame_floods(proxy_for, kind):
    proxy = proxy_for()
    probe_latencies(proxy.port, 2)
    data = FLOODS[kind]()
    goaways, times, cpu, growth = under_flood(proxy, lambda: data, 5)
    assert all(g is not None and g.error_code == E.ENHANCE_YOUR_CALM for g in goaways), goaways
    assert cpu < 5, cpu
    assert growth < 50 * 1024 * 1024, growth
    assert_served_meanwhile(times)


def test_continuation_flood_is_bounded(proxy_for):
    """HEADERS without END_HEADERS, then CONTINUATION frames without end
    (CVE-2024-27316): the header block is bounded and the connection ends."""
    proxy = proxy_for()
    first = raw_frame(1, 0, 1, hpack.Encoder().encode(GET))
    cont = raw_frame(9, 0, 1, b"\x40\x03abc\x83xyz" * 1000)
    cpu0, rss0 = usage(proxy.proc.pid)
    goaway, _ = flood(proxy.port, first + cont * 2000)
    cpu1, rss1 = usage(proxy.proc.pid)
    assert goaway is not None and goaway.error_code in (E.PROTOCOL_ERROR,
                                                        E.ENHANCE_YOUR_CALM,
                                                        E.COMPRESSION_ERROR), goaway
    assert rss1 - rss0 < 50 * 1024 * 1024
    assert cpu1 - cpu0 < 5


def test_header_list_size_limit(proxy_for):
    """SETTINGS_MAX_HEADER_LIST_SIZE is announced; a larger header list ends the
    connection (the HPACK state cannot be kept in step otherwise)."""
    proxy = proxy_for("--set", "h2_max_header_list_size=16384")
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock = client_context().wrap_socket(raw, server_hostname="localhost")
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    settings = next(f for f in read_frames(sock, 0.5) if isinstance(f, SettingsFrame))
    assert settings.settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == 16384
    sock.close()
    fields = GET + [(b"x-big-%d" % i, b"v" * 1000) for i in range(20)]
    block = hpack.Encoder().encode(fields)
    data = raw_frame(1, 0, 1, block[:16000]) + raw_frame(9, 4, 1, block[16000:])
    goaway, _ = flood(proxy.port, data)
    assert goaway is not None and goaway.error_code in (E.COMPRESSION_ERROR,
                                                        E.ENHANCE_YOUR_CALM,
                                                        E.PROTOCOL_ERROR), goaway


def test_hpack_bomb(proxy_for):
    """One 4,000-byte field in the dynamic table, then referenced by 1-byte indexes: the
    decoded list is bounded by h2_max_header_list_size (the "HPACK bomb"; RFC 7541 §7.3,
    RFC 9113 §10.5.1)."""
    proxy = proxy_for()
    encoder = hpack.Encoder()
    first = encoder.encode(GET + [(b"x-bomb", b"b" * 4000)])  # into the dynamic table
    block = encoder.encode(GET + [(b"x-bomb", b"b" * 4000)] * 400)  # indexed: ~1 byte each
    assert len(block) < 1000
    data = raw_frame(1, 5, 1, first) + raw_frame(1, 5, 3, block)
    cpu0, _ = usage(proxy.proc.pid)
    goaway, _ = flood(proxy.port, data)
    assert goaway is not None and goaway.error_code in (E.COMPRESSION_ERROR,
                                                        E.ENHANCE_YOUR_CALM), goaway
    assert usage(proxy.proc.pid)[0] - cpu0 < 2


def test_concurrent_streams_limit(proxy_for):
    proxy = proxy_for()
    encoder = hpack.Encoder()
    data = b"".join(raw_frame(1, 4, 2 * i + 1, encoder.encode(GET[:3] + [(b":path", b"/x")]))
                    for i in range(150))
    goaway, _ = flood(proxy.port, data)
    assert goaway is not None and goaway.error_code == E.PROTOCOL_ERROR


def test_zero_window_stall_gets_goaway(proxy_for):
    """A client that announces a zero window and never opens it is let go after
    h2_stall_timeout."""
    proxy = proxy_for("--set", "h2_stall_timeout=1")
    client = H2Client(proxy.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    try:
        sid = client.start("POST", "/echo", body=b"x" * 1000)
        start = time.monotonic()
        terminated = client.wait_goaway(10)
        assert terminated is not None and terminated.error_code == E.ENHANCE_YOUR_CALM
        assert 0.9 < time.monotonic() - start < 8
        assert client.replies[sid].body == b""
    finally:
        client.close()
    assert "h2_stall_timeout" in proxy.stderr + proxy.stdout
