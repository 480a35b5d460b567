"""Flow files: ours read by mitmproxy 11.0.2's io.FlowReader and theirs read by ours.

mitmproxy runs in a subprocess, with the interpreter named by $FASTPROXY_MITMPROXY_PYTHON
or else this one; the test fails (it does not skip) if that interpreter lacks mitmproxy.
"""

import io
import os
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from fastproxy.connection import Client, Server
from fastproxy.flow import Error
from fastproxy.http import Headers, HTTPFlow, Request, Response
from fastproxy.io import flowfile, tnetstring
from fastproxy.io.flowfile import FlowFileWarning, FlowReader, FlowWriter


def make_flow(*, response=True, error=None, body=b"hello", path=b"/path?a=1") -> HTTPFlow:
    now = time.time()
    client = Client(peername=("127.0.0.1", 50000), sockname=("127.0.0.1", 8080),
                    timestamp_start=now - 1)
    server = Server(address=("example.com", 80), peername=("93.184.216.34", 80),
                    timestamp_start=now - 0.9, timestamp_tcp_setup=now - 0.8)
    flow = HTTPFlow(client, server)
    flow.request = Request(
        "example.com", 80, b"POST", b"http", b"", path, b"HTTP/1.1",
        Headers([(b"host", b"example.com"), (b"content-type", b"application/x-www-form-urlencoded"),
                 (b"cookie", b"a=b; c=d"), (b"content-length", b"7")]),
        b"x=1&y=2", None, now - 0.5, now - 0.4)
    if response:
        flow.response = Response(
            b"HTTP/1.1", 200, b"OK",
            Headers([(b"content-type", b"text/plain"), (b"set-cookie", b"s=1; Path=/; HttpOnly")]),
            body, None, now - 0.3, now - 0.2)
    if error:
        flow.error = Error(error, now)
    flow.metadata["note"] = "kept"
    flow.comment = "a comment"
    return flow


def write_flows(flows) -> bytes:
    fo = io.BytesIO()
    writer = FlowWriter(fo)
    for f in flows:
        writer.add(f)
    return fo.getvalue()


def run_mitmproxy(script: str, *args: str) -> bytes:
    python = os.environ.get("FASTPROXY_MITMPROXY_PYTHON", sys.executable)
    proc = subprocess.run([python, "-c", textwrap.dedent(script), *args],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, (
        f"mitmproxy 11.0.2 must be importable by {python} "
        f"(requirements-dev.txt, or set FASTPROXY_MITMPROXY_PYTHON):\n{proc.stderr.decode()}")
    return proc.stdout


# Reads a flow file with mitmproxy and prints, per flow, what mitmproxy made of it.
MITM_READ = """
    import sys
    from mitmproxy import io, version
    from mitmproxy.io import tnetstring
    assert version.VERSION == "11.0.2", version.VERSION
    with open(sys.argv[1], "rb") as fo:
        flows = list(io.FlowReader(fo).stream())
    out = []
    for f in flows:
        d = {"state": f.get_state(), "url": f.request.url, "method": f.request.method,
             "form": list(f.request.urlencoded_form.items(multi=True)),
             "cookies": list(f.request.cookies.items(multi=True))}
        if f.response:
            d["text"] = f.response.text
        out.append(d)
    sys.stdout.buffer.write(tnetstring.dumps(out))
"""


def test_mitmproxy_reads_our_flows(tmp_path):
    ours = [make_flow(), make_flow(response=False, error="Connection refused"),
            make_flow(error="client disconnected", body=bytes(range(256)))]
    path = tmp_path / "ours.flows"
    path.write_bytes(write_flows(ours))

    theirs = tnetstring.loads(run_mitmproxy(MITM_READ, str(path)))

    assert len(theirs) == len(ours)
    for flow, seen in zip(ours, theirs):
        state = seen["state"]
        assert state["version"] == 21 and state["type"] == "http"
        assert state["id"] == flow.id
        assert seen["url"] == flow.request.url
        assert seen["method"] == "POST"
        assert seen["form"] == [["x", "1"], ["y", "2"]]
        assert seen["cookies"] == [["a", "b"], ["c", "d"]]
        assert state["request"]["content"] == flow.request.raw_content
        assert [tuple(h) for h in state["request"]["headers"]] == list(flow.request.headers.fields)
        assert state["client_conn"]["peername"] == ["127.0.0.1", 50000]
        assert state["server_conn"]["address"] == ["example.com", 80]
        assert state["metadata"] == {"note": "kept"}
        assert state["comment"] == "a comment"
        if flow.response:
            assert state["response"]["status_code"] == 200
            assert state["response"]["content"] == flow.response.raw_content
            if flow.response.raw_content == b"hello":  # undecodable text differs by design
                assert seen["text"] == "hello"
        else:
            assert state["response"] is None
        assert (state["error"] or {}).get("msg") == (flow.error.msg if flow.error else None)


def test_our_state_equals_mitmproxys_after_their_roundtrip(tmp_path):
    flow = make_flow()
    path = tmp_path / "one.flows"
    path.write_bytes(write_flows([flow]))
    [seen] = tnetstring.loads(run_mitmproxy(MITM_READ, str(path)))
    # Everything we wrote comes back from mitmproxy's from_state/get_state unchanged.
    assert tnetstring.loads(tnetstring.dumps(flow.get_state())) == seen["state"]


MITM_WRITE = """
    import sys
    from mitmproxy import io
    from mitmproxy.io import tnetstring
    from mitmproxy.test import tflow
    flows = [tflow.tflow(resp=True), tflow.tflow(err=True), tflow.tflow(resp=True, err=True)]
    flows[0].request.path = "/from-mitmproxy"
    with open(sys.argv[1], "wb") as fo:
        w = io.FlowWriter(fo)
        for f in flows:
            w.add(f)
    # A version 20 record (mitmproxy 10), as written before the QUIC rename.
    state = tflow.tflow(resp=True).get_state()
    state["version"] = 20
    state["client_conn"]["tls_version"] = "QUIC"
    with open(sys.argv[1], "ab") as fo:
        fo.write(tnetstring.dumps(state))
"""


def test_we_read_mitmproxys_flows(tmp_path):
    path = tmp_path / "theirs.flows"
    run_mitmproxy(MITM_WRITE, str(path))
    with open(path, "rb") as fo:
        reader = FlowReader(fo)
        flows = list(reader.stream())
    assert reader.error is None and reader.skipped == []
    assert len(flows) == 4
    assert flows[0].request.path == "/from-mitmproxy"
    assert flows[0].response.status_code == 200
    assert flows[1].response is None and flows[1].error.msg == "error"
    assert flows[2].response is not None and flows[2].error is not None
    assert flows[3].client_conn.tls_version == "QUICv1"


def test_roundtrip_in_process():
    flows = [make_flow(), make_flow(response=False, error="boom")]
    read = list(FlowReader(io.BytesIO(write_flows(flows))).stream())
    assert [f.get_state() for f in read] == [f.get_state() for f in flows]


@pytest.mark.parametrize("tail", [b"12", b"1234:abc", b"garbage!", b"\x00" * 10])
def test_torn_or_garbage_tail_is_skipped_with_a_warning(tail):
    data = write_flows([make_flow(), make_flow()])
    reader = FlowReader(io.BytesIO(data + tail))
    with pytest.warns(FlowFileWarning):
        flows = list(reader.stream())
    assert len(flows) == 2
    assert reader.error is not None


def test_cut_anywhere_never_raises():
    data = write_flows([make_flow(), make_flow()])
    first = len(write_flows([make_flow()]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlowFileWarning)
        for cut in range(0, len(data), 97):
            flows = list(FlowReader(io.BytesIO(data[:cut])).stream())
            assert len(flows) == (1 if cut >= first else 0)


def test_unknown_version_and_type_are_reported_not_raised():
    state = make_flow().get_state()
    old = dict(state, version=5)
    odd = dict(state, type="quantum")
    data = tnetstring.dumps(odd) + tnetstring.dumps(state) + tnetstring.dumps(old)
    reader = FlowReader(io.BytesIO(data))
    with pytest.warns(FlowFileWarning):
        flows = list(reader.stream())
    assert len(flows) == 1
    assert len(reader.skipped) == 1 and "quantum" in reader.skipped[0]
    assert "version 5" in reader.error


def test_valid_length_stops_before_a_torn_record():
    data = write_flows([make_flow()])
    assert flowfile.valid_length(io.BytesIO(data + data[:50])) == len(data)
    assert flowfile.valid_length(io.BytesIO(b"")) == 0


def test_recording_paths(tmp_path):
    base = str(tmp_path / "rec")
    assert flowfile.recording_paths(base) == [base]
    for i in (10, 2, 0):
        open(f"{base}.w{i}", "wb").close()
    open(f"{base}.wx", "wb").close()
    assert flowfile.recording_paths(base) == [f"{base}.w0", f"{base}.w2", f"{base}.w10"]
    open(base, "wb").close()
    assert flowfile.recording_paths(base) == [base]
