"""Recording end to end: real traffic through the real `fastproxy run -w`, read back by ours
and by mitmproxy 11.0.2's own reader, listed, filtered, exported as HAR and replayed."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import haralyzer
import jsonschema
import pytest

from fastproxy.io import tnetstring
from fastproxy.io.flowfile import FlowFileWarning, FlowReader
from fastproxy.io.bodies import TRUNCATED_KEY, dechunk
from tests.support.origin import Origin, payload
from tests.support.proxyproc import free_port
from tests.test_flowfile import MITM_READ, run_mitmproxy
from tests.test_har import HAR_SCHEMA


def request(proxy, method, url, body=None, headers=None):
    """One request through the proxy (absolute-form); (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def read_flows(path):
    with open(path, "rb") as fo:
        reader = FlowReader(fo)
        flows = list(reader.stream())
    return flows, reader.error


def fastproxy(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "fastproxy.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def wait_recorded(path, count, timeout=10.0):
    """Flows are written shortly after they complete: wait until ``count`` are there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FlowFileWarning)
                if len(read_flows(path)[0]) >= count:
                    return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} flows in {path}")


TRAFFIC = [
    ("GET", "/bytes/1000", None, 200),
    ("POST", "/echo", b"a=1&b=2", 200),
    ("GET", "/chunked/5000", None, 200),
    ("GET", "/gzip", None, 200),
    ("GET", "/status/404", None, 404),
]


@pytest.fixture
def recorded(origin, start_proxy, tmp_path):
    """Real traffic recorded with -w, the proxy stopped with SIGTERM; (path, proxy, dead)."""
    path = str(tmp_path / "rec.flows")
    proxy = start_proxy("-w", path)
    for method, route, body, status in TRAFFIC:
        got, _ = request(proxy, method, origin.url(route), body,
                         {"Content-Type": "application/x-www-form-urlencoded"} if body else None)
        assert got == status
    dead = free_port()  # nothing listens there: a flow that ends in an error
    assert request(proxy, "GET", f"http://127.0.0.1:{dead}/x")[0] == 502
    assert proxy.stop() == 0
    return path, proxy, dead


def test_every_flow_recorded_and_read_back_field_by_field(recorded, origin):
    path, _, dead = recorded
    flows, error = read_flows(path)
    assert error is None
    assert [(f.request.method, f.request.path) for f in flows] == \
        [(m, r) for m, r, _, _ in TRAFFIC] + [("GET", "/x")]
    by_path = {f.request.path: f for f in flows}
    f = by_path["/bytes/1000"]
    assert (f.request.host, f.request.port, f.request.scheme) == ("127.0.0.1", origin.port, "http")
    assert f.response.status_code == 200 and f.response.raw_content == payload(1000)
    assert f.response.headers["content-length"] == "1000"
    assert f.client_conn.peername[0] == "127.0.0.1"
    assert f.server_conn.address == ("127.0.0.1", origin.port)
    assert f.request.timestamp_start <= f.response.timestamp_start <= f.response.timestamp_end
    echo = by_path["/echo"]
    assert echo.request.raw_content == b"a=1&b=2" and echo.response.raw_content == b"a=1&b=2"
    assert by_path["/chunked/5000"].response.raw_content == payload(5000)
    assert by_path["/gzip"].response.text == "hello gzip " * 10
    assert by_path["/status/404"].response.status_code == 404
    failed = by_path["/x"]
    assert failed.response is None and "cannot connect" in failed.error.msg
    assert failed.server_conn.address in (None, ("127.0.0.1", dead))


def test_mitmproxy_reads_the_recording_field_by_field(recorded):
    path, _, _ = recorded
    theirs = tnetstring.loads(run_mitmproxy(MITM_READ, path))
    ours, _ = read_flows(path)
    assert len(theirs) == len(ours) == len(TRAFFIC) + 1
    for mine, seen in zip(ours, theirs):
        # every field, as mitmproxy understood it (compared in tnetstring's types)
        assert seen["state"] == tnetstring.loads(tnetstring.dumps(mine.get_state()))
        assert seen["url"] == mine.request.url and seen["method"] == mine.request.method
    assert theirs[1]["form"] == [["a", "1"], ["b", "2"]]
    assert theirs[3]["text"] == "hello gzip " * 10


MITM_RECORD = """
    import sys, time
    from mitmproxy import io
    from mitmproxy.test import tflow
    with open(sys.argv[1], "wb") as fo:
        w = io.FlowWriter(fo)
        for i in range(3):
            f = tflow.tflow(resp=True)
            f.request.path = f"/mitm/{i}"
            w.add(f)
        w.add(tflow.tflow(err=True))
"""


def test_fastproxy_read_lists_mitmproxys_recording(tmp_path):
    path = str(tmp_path / "mitm.flows")
    run_mitmproxy(MITM_RECORD, path)
    out = fastproxy("read", path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("GET http://address:22/mitm/") == 3
    assert "<< error: error" in out.stdout


def test_read_lists_as_the_console_printed_and_filters(recorded):
    path, proxy, _ = recorded
    out = fastproxy("read", path)
    assert out.returncode == 0 and out.stderr == ""
    console = [line for line in proxy.stdout.splitlines()
               if ": GET http" in line or ": POST http" in line or line.startswith(" << ")]
    listed = out.stdout.splitlines()
    assert len(listed) == 2 * (len(TRAFFIC) + 1)
    assert listed == console  # the same module formats both
    only_404 = fastproxy("read", path, "~c 404").stdout.splitlines()
    assert len(only_404) == 2 and only_404[1].startswith(" << 404")
    posts = fastproxy("read", path, "~m POST & ~bq a=1").stdout
    assert "POST" in posts and "/bytes" not in posts
    assert fastproxy("read", path, "~bogus").returncode == 2


def test_har_export_is_valid_har_1_2(recorded, tmp_path):
    path, _, _ = recorded
    out_path = tmp_path / "out.har"
    out = fastproxy("read", path, "--har", str(out_path))
    assert out.returncode == 0, out.stderr
    har = json.loads(out_path.read_text())
    jsonschema.validate(har, HAR_SCHEMA)
    entries = har["log"]["entries"]
    assert len(entries) == len(TRAFFIC) + 1
    assert entries[1]["request"]["postData"]["text"] == "a=1&b=2"
    parser = haralyzer.HarParser(har)
    assert sum(len(page.entries) for page in parser.pages) == len(TRAFFIC) + 1
    assert [e.response.status for page in parser.pages for e in page.entries][:5] == \
        [s for *_, s in TRAFFIC]


def test_replay_reports_status_differences(recorded, origin):
    path, _, _ = recorded
    out = fastproxy("replay", path, "~c 200 | ~c 404")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 requests replayed, 0 differ" in out.stdout
    other = Origin()  # the same routes elsewhere: --mode reverse sends everything there
    try:
        out = fastproxy("replay", path, "--mode", f"reverse:http://127.0.0.1:{other.port}")
        assert out.returncode == 1  # the failed flow had no response; now it gets a 200
        assert "6 requests replayed, 1 differ" in out.stdout
        assert "! GET" in out.stdout and "recorded no response, now 200" in out.stdout
        assert len(other.requests) == 6
    finally:
        other.stop()
    origin.stop()  # the recorded server is gone: every request differs now
    out = fastproxy("replay", path, "--timeout", "2")
    assert out.returncode == 1 and "6 requests replayed, 6 differ" in out.stdout


def test_set_option_and_plus_appends(origin, start_proxy, tmp_path):
    path = str(tmp_path / "set.flows")
    for expected in (1, 2):
        proxy = start_proxy("-q", "--set", f"save_stream_file=+{path}")
        request(proxy, "GET", origin.url("/a"))
        proxy.stop()
        assert len(read_flows(path)[0]) == expected
    proxy = start_proxy("-q", "--set", f"save_stream_file={path}")  # no +: start afresh
    request(proxy, "GET", origin.url("/b"))
    proxy.stop()
    assert [f.request.path for f in read_flows(path)[0]] == ["/b"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_flushes_every_completed_flow(origin, start_proxy, tmp_path, sig):
    path = str(tmp_path / "sig.flows")
    proxy = start_proxy("-q", "-w", path)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    for i in range(100):
        conn.request("GET", origin.url(f"/n{i}"))
        conn.getresponse().read()
    conn.close()
    assert proxy.stop(sig) == 0
    flows, error = read_flows(path)
    assert error is None and [f.request.path for f in flows] == [f"/n{i}" for i in range(100)]


def load(proxy, origin, stop: threading.Event, done: list) -> None:
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
            conn.request("GET", origin.url(f"/k{len(done)}"))
            conn.getresponse().read()
            done.append(1)
            conn.close()
        except (OSError, http.client.HTTPException):  # the proxy was killed
            return


def test_kill_9_leaves_a_readable_recording(origin, start_proxy, tmp_path):
    path = str(tmp_path / "k.flows")
    proxy = start_proxy("-q", "-w", path)
    stop, done = threading.Event(), []
    thread = threading.Thread(target=load, args=(proxy, origin, stop, done))
    thread.start()
    wait_recorded(path, 50)
    proxy.send_signal(signal.SIGKILL)
    stop.set()
    thread.join()
    proxy.proc.wait()
    time.sleep(0.5)  # the writer drains what it was handed, then exits
    flows, error = read_flows(path)
    assert error is None  # the writer outlives the proxy: it ends after a complete flow
    assert len(flows) >= len(done) - 1  # a flow answered just before the kill may be lost


def test_torn_tail_is_skipped_with_a_warning_and_cut_on_append(origin, start_proxy, tmp_path):
    path = str(tmp_path / "t.flows")
    proxy = start_proxy("-q", "-w", path)
    for i in range(3):
        request(proxy, "GET", origin.url(f"/t{i}"))
    proxy.stop()
    with open(path, "ab") as fo:  # as if the writer died in the middle of a write
        fo.write(open(path, "rb").read()[:100])
    with pytest.warns(FlowFileWarning, match="incomplete or invalid record"):
        flows, error = read_flows(path)
    assert len(flows) == 3 and error
    out = fastproxy("read", path)
    assert out.returncode == 0 and out.stdout.count(" << 200") == 3
    assert "incomplete or invalid record" in out.stderr
    proxy = start_proxy("-q", "-w", "+" + path)
    request(proxy, "GET", origin.url("/t3"))
    proxy.stop()
    flows, error = read_flows(path)
    assert error is None and [f.request.path for f in flows] == ["/t0", "/t1", "/t2", "/t3"]


def test_unwritable_path_is_a_clear_error_at_start(tmp_path):
    path = tmp_path / "no-such-dir" / "x.flows"
    out = fastproxy("run", "-p", str(free_port()), "-w", str(path), timeout=30)
    assert out.returncode == 2
    assert f"cannot record flows to {path}: No such file or directory" in out.stderr


def test_disk_full_is_logged_and_the_proxy_keeps_serving(origin, start_proxy):
    proxy = start_proxy("-q", "-w", "/dev/full")
    for i in range(3):
        assert request(proxy, "GET", origin.url(f"/full{i}"))[0] == 200
        time.sleep(0.2)
    assert proxy.stop() == 0
    assert "cannot write flows: No space left on device" in proxy.stderr


STREAM_ADDON = """
def responseheaders(flow):
    flow.response.stream = True
"""


@pytest.mark.parametrize("stream", [False, True])
def test_bodies_over_the_limit_are_truncated_and_marked(origin, start_proxy, tmp_path, stream):
    path = str(tmp_path / "limit.flows")
    args = ["-q", "-w", path, "--set", "save_body_limit=3000"]
    if stream:
        script = tmp_path / "stream.py"
        script.write_text(STREAM_ADDON)
        args += ["-s", str(script)]
    proxy = start_proxy(*args)
    for route in ("/bytes/2000", "/bytes/10000", "/chunked/2500", "/chunked/9000"):
        status, body = request(proxy, "GET", origin.url(route))
        assert status == 200 and body == payload(int(route.split("/")[2]))  # served whole
    proxy.stop()
    flows = {f.request.path: f for f in read_flows(path)[0]}
    assert flows["/bytes/2000"].response.raw_content == payload(2000)
    assert TRUNCATED_KEY not in flows["/bytes/2000"].metadata
    assert flows["/chunked/2500"].response.raw_content == payload(2500)
    big = flows["/bytes/10000"]
    assert big.response.raw_content == payload(3000)
    assert big.metadata[TRUNCATED_KEY] == {"response": 10000}
    assert "truncated to 3000 of 10000 bytes" in big.comment
    chunked = flows["/chunked/9000"]
    assert TRUNCATED_KEY in chunked.metadata
    assert payload(9000).startswith(chunked.response.raw_content)
    assert len(chunked.response.raw_content) >= 2000


def test_workers_each_record_their_own_file(origin, start_proxy, tmp_path):
    path = str(tmp_path / "w.flows")
    proxy = start_proxy("-q", "--workers", "2", "-w", path)
    for i in range(40):
        assert request(proxy, "GET", origin.url(f"/w{i}"))[0] == 200
    assert proxy.stop() == 0
    assert not os.path.exists(path)
    paths = [path + ".w0", path + ".w1"]
    counts = [len(read_flows(p)[0]) for p in paths]  # each reads cleanly on its own
    assert sum(counts) == 40
    out = fastproxy("read", path)
    assert out.returncode == 0 and out.stdout.count(" << 200") == 40
    assert sorted(line.split("/w")[1] for line in out.stdout.splitlines() if "/w" in line) == \
        sorted(str(i) for i in range(40))


def test_body_tee_and_dechunk():
    chunked = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert dechunk(chunked) == b"hello world"
    assert dechunk(chunked[:12]) == b"hello"  # cut inside the second chunk's size line
    assert dechunk(chunked[:22]) == b"hello wo"  # cut inside a chunk: the part kept


MITM_TCP = """
    import sys
    from mitmproxy import io
    from mitmproxy.io import tnetstring
    with open(sys.argv[1], "rb") as fo:
        flows = list(io.FlowReader(fo).stream())
    out = [{"type": f.type, "state": f.get_state(), "error": f.error and f.error.msg,
            "messages": [[m.from_client, m.content] for m in getattr(f, "messages", [])]}
           for f in flows]
    sys.stdout.buffer.write(tnetstring.dumps(out))
"""


def test_tcp_flows_recorded_including_errors(start_proxy, tmp_path):
    import socket
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo():  # start_proxy's readiness probe is a connection (and a flow) too
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data.upper())

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    path = str(tmp_path / "tcp.flows")
    proxy = start_proxy("-q", "-w", path, "--mode", f"reverse:tcp://127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"\x00raw bytes")
        assert sock.recv(100) == b"\x00RAW BYTES"
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(100):
            pass
    server.shutdown(socket.SHUT_RDWR)  # wakes the accept; nothing listens now, so the
    server.close()                     # next connection is a tcp_error
    thread.join(5)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        while sock.recv(100):
            pass
    wait_recorded(path, 3)
    proxy.stop()
    flows, error = read_flows(path)
    assert error is None and {f.type for f in flows} == {"tcp"}
    path_flows = flows
    ok = next(f for f in flows if f.messages)
    failed = flows[-1]
    assert [(m.from_client, m.content) for m in ok.messages] == \
        [(True, b"\x00raw bytes"), (False, b"\x00RAW BYTES")]
    assert ok.error is None and failed.error is not None
    theirs = tnetstring.loads(run_mitmproxy(MITM_TCP, path))
    assert len(theirs) == len(path_flows) and {t["type"] for t in theirs} == {"tcp"}
    for mine, seen in zip(path_flows, theirs):
        assert seen["state"] == tnetstring.loads(tnetstring.dumps(mine.get_state()))
    seen_ok = theirs[path_flows.index(ok)]
    assert seen_ok["messages"] == [[True, b"\x00raw bytes"], [False, b"\x00RAW BYTES"]]
    assert theirs[-1]["error"] == failed.error.msg
