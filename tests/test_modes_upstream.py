"""upstream:URL mode with a chained pair of fastproxy processes: plain requests in
absolute-form, CONNECT chained (TLS interception inside), upstream_auth, keep-alive."""

from __future__ import annotations

from pathlib import Path

from tests.support import connlog
from tests.support.cli import curl, records
from tests.support.origin import payload
from tests.support.socks import EchoServer

CONNLOG_SCRIPT = str(Path(connlog.__file__))


def chain(start_proxy, tmp_path, *front_args, back_args=()):
    """(front, back, front log, back log): front in upstream mode to back (regular)."""
    back_log, front_log = tmp_path / "back.jsonl", tmp_path / "front.jsonl"
    back = start_proxy("-q", "-s", CONNLOG_SCRIPT, *back_args, env={"CONNLOG": str(back_log)})
    front = start_proxy("-q", "-s", CONNLOG_SCRIPT, "-m", f"upstream:http://127.0.0.1:{back.port}",
                        *front_args, env={"CONNLOG": str(front_log)})
    return front, back, front_log, back_log


def test_plain_requests_go_to_the_upstream_proxy_kept_alive(start_proxy, tmp_path, origin):
    front, back, front_log, back_log = chain(start_proxy, tmp_path)
    url = f"http://127.0.0.1:{origin.port}/bytes/20000"
    out = curl("-x", front.url, url, url, url)  # three requests, one client connection
    assert out.returncode == 0, out.stderr
    assert out.stdout == payload(20000) * 3
    # The back proxy saw absolute-form requests for the origin ...
    assert [r["url"] for r in records(back_log, "response", 3)] == [url] * 3
    # ... over one kept-alive connection from the front proxy (the back proxy's other
    # client is the test harness's check that it listens).
    assert len(records(back_log, "clientconnect")) == 2
    server = records(front_log, "serverconnect")
    assert len(server) == 1
    assert server[0]["address"] == ["127.0.0.1", back.port]
    assert server[0]["via"] == ["http", ["127.0.0.1", back.port]]
    flows = records(front_log, "response", 3)
    assert flows[0]["host"] == "127.0.0.1" and flows[0]["port"] == origin.port
    assert flows[0]["via"] == ["http", ["127.0.0.1", back.port]]
    assert records(front_log, "clientconnect")[0]["type"] == "upstream"
    assert len(origin.server.requests) == 3


def test_connect_is_chained_with_tls_interception_inside(start_proxy, tmp_path, https_origin,
                                                        test_ca):
    front, back, front_log, back_log = chain(
        start_proxy, tmp_path, "--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}",
        back_args=("--ignore-hosts", ".*"))  # the back proxy only relays the tunnel
    cacert = tmp_path / "confdir" / "fastproxy-ca-cert.pem"
    url = f"https://localhost:{https_origin.port}/bytes/30000"
    out = curl("-x", front.url, "--cacert", str(cacert), url)
    assert out.returncode == 0, out.stderr
    assert out.stdout == payload(30000)
    flow = records(front_log, "response")[0]
    assert flow["url"] == url  # decrypted by the front proxy
    server = records(front_log, "serverconnect")[0]
    assert server["address"] == ["localhost", https_origin.port]
    assert server["via"] == ["http", ["127.0.0.1", back.port]]
    assert len(records(back_log, "clientconnect", 2)) == 2  # the tunnel went through back
    assert not records_of(back_log, "response")  # which relayed it undecrypted


def records_of(path: Path, event: str) -> list[dict]:
    return [r for r in connlog.read(str(path)) if r["event"] == event]


def test_connect_tcp_through_the_chain(start_proxy, tmp_path):
    echo = EchoServer()
    try:
        front, _, _, _ = chain(start_proxy, tmp_path)
        import socket
        with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
            sock.sendall(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(1024)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            sock.sendall(b"\x00binary\xff")
            assert sock.recv(100) == b"\x00binary\xff"
    finally:
        echo.stop()


def test_unreachable_upstream_proxy_is_a_502(start_proxy, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    front = start_proxy("-q", "-m", f"upstream:http://127.0.0.1:{closed}")
    out = curl("-x", front.url, "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:1/")
    assert out.stdout == b"502"
    out = curl("-p", "-x", front.url, "-o", "/dev/null", "-w", "%{http_connect}",
               "http://127.0.0.1:1/")
    assert out.stdout == b"502"


def test_upstream_auth(start_proxy, tmp_path, origin, https_origin, test_ca):
    front, back, _, _ = chain(
        start_proxy, tmp_path, "--set", "upstream_auth=bob:pw",
        "--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}",
        back_args=("--proxyauth", "bob:pw"))
    out = curl("-x", front.url, f"http://127.0.0.1:{origin.port}/bytes/10")
    assert out.returncode == 0, out.stderr
    assert out.stdout == payload(10)
    # The credential was for the back proxy: the origin never sees it.
    assert "Proxy-Authorization" not in origin.server.requests[-1][2]
    cacert = tmp_path / "confdir" / "fastproxy-ca-cert.pem"
    out = curl("-x", front.url, "--cacert", str(cacert),
               f"https://localhost:{https_origin.port}/bytes/10")
    assert out.returncode == 0, out.stderr
    # Without upstream_auth the back proxy answers 407, passed on to the client.
    plain = start_proxy("-q", "-m", f"upstream:http://127.0.0.1:{back.port}")
    out = curl("-x", plain.url, "-o", "/dev/null", "-w", "%{http_code}",
               f"http://127.0.0.1:{origin.port}/bytes/10")
    assert out.stdout == b"407"


CONNECT_EVENTS = """
import json, os

def _log(event, flow):
    with open(os.environ["CONNECT_LOG"], "a") as f:
        f.write(json.dumps([event, flow.request.method, flow.request.host, flow.request.port,
                            flow.response.status_code if flow.response else None,
                            flow.error.msg if flow.error else None]) + "\\n")

def http_connect_upstream(flow):
    flow.request.headers["X-Chained-By"] = "front"
    _log("http_connect_upstream", flow)

def http_connected(flow):
    _log("http_connected", flow)

def http_connect_error(flow):
    _log("http_connect_error", flow)
"""


def test_connect_events_to_the_upstream_proxy(start_proxy, tmp_path):
    """mitmproxy's http_connect_upstream (headers changeable), http_connected and
    http_connect_error fire for the CONNECT the front proxy sends to the back one."""
    import json
    echo = EchoServer()
    script, log = tmp_path / "connect_events.py", tmp_path / "connect.jsonl"
    script.write_text(CONNECT_EVENTS)
    back_log = tmp_path / "back.jsonl"
    back = start_proxy("-q", "-s", CONNLOG_SCRIPT, "--proxyauth", "user:pass",
                       env={"CONNLOG": str(back_log)})
    front = start_proxy("-q", "-s", str(script), "-m", f"upstream:http://127.0.0.1:{back.port}",
                        "--set", "upstream_auth=user:pass", "--tcp-hosts", ".*",
                        env={"CONNECT_LOG": str(log)})
    assert _tunnel_echo(front.port, echo.port) == b"ping"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[0] == ["http_connect_upstream", "CONNECT", "127.0.0.1", echo.port, None, None]
    assert events[1][0] == "http_connected" and events[1][4] == 200
    # Refused: the back proxy requires credentials the front one no longer sends.
    log.write_text("")
    front2 = start_proxy("-q", "-s", str(script), "-m",
                         f"upstream:http://127.0.0.1:{back.port}", "--tcp-hosts", ".*",
                         env={"CONNECT_LOG": str(log)})
    assert _tunnel_echo(front2.port, echo.port) is None
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e[0] for e in events] == ["http_connect_upstream", "http_connect_error"]
    assert events[1][4] == 407 and "407" in events[1][5]


def _tunnel_echo(proxy_port: int, echo_port: int) -> bytes | None:
    """What the echo server sends back through a CONNECT tunnel; None if refused."""
    import socket
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
        sock.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                     % (echo_port, echo_port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            head += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            return None
        sock.sendall(b"ping")
        data = b""
        while len(data) < 4:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data or None


class TlsTerminator:
    """Accepts TLS on 127.0.0.1 with the test CA's leaf (localhost) and pipes the plain
    bytes to `target_port`: the back proxy, reached as an https:// upstream proxy."""

    def __init__(self, test_ca, target_port: int) -> None:
        import socket
        import ssl
        import threading
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(test_ca.leaf_pem)
        self.target_port = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                tls = self.context.wrap_socket(raw, server_side=True)
            except OSError:
                raw.close()
                continue
            self.handshakes += 1
            plain = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst in ((tls, plain), (plain, tls)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_https_upstream_proxy(start_proxy, tmp_path, origin, https_origin, test_ca):
    """upstream:https://: the front proxy speaks TLS to the upstream proxy (verified with
    ssl_verify_upstream_trusted_ca), for plain requests and for CONNECT with TLS
    interception inside."""
    back_log, front_log = tmp_path / "back.jsonl", tmp_path / "front.jsonl"
    back = start_proxy("-q", "-s", CONNLOG_SCRIPT, "--ignore-hosts", "localhost",
                       env={"CONNLOG": str(back_log)})  # it relays the CONNECT undecrypted
    terminator = TlsTerminator(test_ca, back.port)
    try:
        front = start_proxy("-q", "-s", CONNLOG_SCRIPT, "-m",
                            f"upstream:https://localhost:{terminator.port}",
                            "--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}",
                            env={"CONNLOG": str(front_log)})
        url = f"http://127.0.0.1:{origin.port}/bytes/1000"
        out = curl("-x", front.url, url)
        assert out.returncode == 0, out.stderr
        assert out.stdout == payload(1000)
        assert [r["url"] for r in records(back_log, "response")] == [url]
        cacert = tmp_path / "confdir" / "fastproxy-ca-cert.pem"
        secure = f"https://localhost:{https_origin.port}/bytes/2000"
        out = curl("-x", front.url, "--cacert", str(cacert), secure)
        assert out.returncode == 0, out.stderr
        assert out.stdout == payload(2000)
        assert terminator.handshakes >= 2
    finally:
        terminator.close()
