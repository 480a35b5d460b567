import http.server
import io
import json
import threading

import pytest

from fastproxy.addons.dumper_format import format_address, format_flow_line, pretty_size
from fastproxy.readcmd import read_main, replay_main
from tests.test_flowfile import make_flow, write_flows


def test_format_flow_line():
    flow = make_flow()
    assert format_flow_line(flow) == (
        "127.0.0.1:50000: POST http://example.com/path?a=1\n << 200 OK 5b")
    failed = make_flow(response=False, error="connect failed")
    assert format_flow_line(failed).endswith("\n << error: connect failed")


@pytest.mark.parametrize("size, text", [(0, "0b"), (1023, "1023b"), (1024, "1.0k"),
                                        (150 * 1024, "150k"), (5 * 1024 ** 2, "5.0m")])
def test_pretty_size(size, text):
    assert pretty_size(size) == text


@pytest.mark.parametrize("address, text", [
    (("127.0.0.1", 1), "127.0.0.1:1"), (("::1", 2), "[::1]:2"), (("::ffff:1.2.3.4", 3), "1.2.3.4:3"),
    (("0.0.0.0", 4), "*:4"), (("example.com", 5), "example.com:5"), (None, "<no address>"),
])
def test_format_address(address, text):
    assert format_address(address) == text


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "rec.flows"
    ok, missing = make_flow(), make_flow()
    missing.response.status_code = 404
    path.write_bytes(write_flows([ok, missing]) + b"123:torn")
    return str(path)


def test_read_lists_and_filters(recording):
    out, err = io.StringIO(), io.StringIO()
    assert read_main(recording, "~c 404", out=out, err=err) == 0
    assert out.getvalue().count(" << 404 OK") == 1 and " << 200" not in out.getvalue()
    assert "incomplete or invalid record" in err.getvalue()


def test_read_har(recording, tmp_path):
    har_path = str(tmp_path / "out.har")
    assert read_main(recording, None, har_path, err=io.StringIO()) == 0
    with open(har_path) as fo:
        assert len(json.load(fo)["log"]["entries"]) == 2


def test_read_errors(recording, tmp_path):
    err = io.StringIO()
    assert read_main(recording, "~c", err=err) == 2
    assert read_main(str(tmp_path / "missing"), None, err=err) == 2


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200 if self.path.startswith("/path") else 500)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_replay_reports_status_differences(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        same, changed = make_flow(), make_flow(path=b"/gone")
        for f in (same, changed):
            f.request.host, f.request.port = "127.0.0.1", server.server_port
        path = tmp_path / "replay.flows"
        path.write_bytes(write_flows([same, changed]))
        out = io.StringIO()
        assert replay_main(str(path), out=out, err=io.StringIO()) == 1
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("  POST") and lines[0].endswith("recorded 200, now 200")
        assert lines[1].startswith("! POST") and lines[1].endswith("recorded 200, now 500")
        assert lines[2] == "2 requests replayed, 1 differ"
    finally:
        server.shutdown()
        server.server_close()
