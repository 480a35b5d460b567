"""Modes at start (unknown ones refused, exit 2), several listeners in one process, proxy
authentication for HTTP clients, reverse mode taking TLS and plain clients on one port,
and block_global / block_private."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastproxy.options import Options
from fastproxy.proxy.server import blocked
from tests.support import connlog
from tests.support.origin import payload
from tests.support.proxyproc import free_port

CONNLOG_SCRIPT = str(Path(connlog.__file__))


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                          timeout=30, check=False)


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastproxy.cli", "run", "-p", "0",
                           "--set", f"confdir={tmp_path / 'confdir'}", *args],
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("mode, message", [
    ("bogus", "unknown mode 'bogus'"),
    ("socks4", "unknown mode 'socks4'"),
    ("socks5:extra", "socks5 takes no argument"),
    ("upstream:ftp://proxy.example", "scheme 'ftp' is not one of"),
    ("upstream:tcp://proxy.example:8", "upstream proxy scheme must be http or https"),
    ("upstream", "upstream needs a URL"),
    ("reverse:dns://1.1.1.1", "UDP modes are not supported"),
    ("regular@99999", "bad listen port"),
])
def test_unknown_or_bad_modes_are_refused_at_start(tmp_path, mode, message):
    out = run_cli("-m", mode, tmp_path=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "listening" not in out.stdout + out.stderr


def test_bad_proxyauth_is_refused_at_start(tmp_path):
    out = run_cli("--proxyauth", "@/nonexistent/htpasswd", tmp_path=tmp_path)
    assert out.returncode == 2 and "cannot read htpasswd file" in out.stderr
    out = run_cli("--proxyauth", "nocolon", tmp_path=tmp_path)
    assert out.returncode == 2 and "expected user:pass" in out.stderr


def wait_output(proc: subprocess.Popen, path: Path, needle: str, count: int) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if text.count(needle) >= count:
            return text
        assert proc.poll() is None, text
        time.sleep(0.05)
    raise AssertionError(path.read_text())


def test_several_listeners_in_one_process(tmp_path, origin):
    regular, socks, reverse = free_port(), free_port(), free_port()
    out, log = tmp_path / "out.txt", tmp_path / "conn.jsonl"
    cmd = [sys.executable, "-m", "fastproxy.cli", "run", "-q", "--set", "termlog_verbosity=info",
           "--set", f"confdir={tmp_path / 'confdir'}", "-s", CONNLOG_SCRIPT,
           "--mode", f"regular@{regular}", "--mode", f"socks5@127.0.0.1:{socks}",
           "--mode", f"reverse:http://127.0.0.1:{origin.port}@{reverse}"]
    proc = subprocess.Popen(cmd, stdout=open(out, "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "CONNLOG": str(log)}, start_new_session=True)
    try:
        text = wait_output(proc, out, "listening at", 3)
        assert f"HTTP(S) proxy listening at 127.0.0.1:{regular} (regular@{regular} mode)" in text
        assert f"SOCKS v5 proxy listening at 127.0.0.1:{socks}" in text
        assert f"Reverse proxy listening at 127.0.0.1:{reverse}" in text
        url = f"http://127.0.0.1:{origin.port}/bytes/1000"
        assert curl("-x", f"http://127.0.0.1:{regular}", url).stdout == payload(1000)
        assert curl("--socks5-hostname", f"127.0.0.1:{socks}", url).stdout == payload(1000)
        assert curl(f"http://127.0.0.1:{reverse}/bytes/1000").stdout == payload(1000)
        deadline = time.monotonic() + 5
        while len([r for r in connlog.read(str(log)) if r["event"] == "clientconnect"]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        modes = {(r["type"], r["sockname"][1]) for r in connlog.read(str(log))
                 if r["event"] == "clientconnect"}
        assert modes == {("regular", regular), ("socks5", socks), ("reverse", reverse)}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_http_proxyauth(start_proxy, origin, https_origin, test_ca, tmp_path):
    proxy = start_proxy("--proxyauth", "alice:s3cret")
    url = f"http://127.0.0.1:{origin.port}/bytes/100"
    ok = curl("-x", proxy.url, "--proxy-user", "alice:s3cret", url)
    assert ok.returncode == 0 and ok.stdout == payload(100)
    assert "Proxy-Authorization" not in origin.server.requests[-1][2]  # ours, not theirs
    for extra in (["--proxy-user", "alice:wrong"], []):
        denied = curl("-x", proxy.url, *extra, "-i", url)
        assert denied.stdout.startswith(b"HTTP/1.1 407"), denied.stdout
        assert b'Proxy-Authenticate: Basic realm="fastproxy"' in denied.stdout
    # CONNECT needs it too.
    out = curl("-p", "-x", proxy.url, "--proxy-user", "alice:wrong", "-o", "/dev/null",
               "-w", "%{http_connect}", url)
    assert out.stdout == b"407"
    out = curl("-p", "-x", proxy.url, "--proxy-user", "alice:s3cret", url)
    assert out.stdout == payload(100)
    deadline = time.monotonic() + 5
    while "proxy authentication failed (http, user 'alice')" not in proxy.stdout + proxy.stderr:
        assert time.monotonic() < deadline, proxy.stdout + proxy.stderr
        time.sleep(0.05)
    assert "proxy authentication failed (http, no credentials)" in proxy.stdout + proxy.stderr


def test_proxyauth_htpasswd_bcrypt_and_sha1(start_proxy, origin, tmp_path):
    bcrypt = pytest.importorskip("bcrypt")
    htpasswd = tmp_path / "htpasswd"
    sha = base64.b64encode(hashlib.sha1(b"sha-pass").digest()).decode()
    hashed = bcrypt.hashpw(b"bc-pass", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")
    htpasswd.write_text(f"# users\nbc:{hashed}\nsh:{{SHA}}{sha}\n")
    proxy = start_proxy("-q", "--proxyauth", f"@{htpasswd}")
    url = f"http://127.0.0.1:{origin.port}/bytes/10"
    for user, good in (("bc:bc-pass", True), ("sh:sha-pass", True), ("bc:sha-pass", False),
                       ("sh:bc-pass", False), ("nobody:x", False)):
        out = curl("-x", proxy.url, "--proxy-user", user, "-o", "/dev/null", "-w",
                   "%{http_code}", url)
        assert out.stdout == (b"200" if good else b"407"), user


def test_reverse_http_accepts_tls_and_plain_clients(start_proxy, origin):
    proxy = start_proxy("-q", "-m", f"reverse:http://127.0.0.1:{origin.port}")
    plain = curl(f"http://127.0.0.1:{proxy.port}/bytes/500")
    assert plain.returncode == 0 and plain.stdout == payload(500)
    tls = curl("-k", f"https://127.0.0.1:{proxy.port}/bytes/500")
    assert tls.returncode == 0, tls.stderr
    assert tls.stdout == payload(500)


def test_block_rules():
    options = Options()
    assert blocked("127.0.0.1", options) is None
    assert blocked("::1", options) is None
    assert blocked("8.8.8.8", options) == "block_global"
    assert blocked("::ffff:8.8.8.8", options) == "block_global"
    assert blocked("2001:4860::8888", options) == "block_global"
    assert blocked("10.1.2.3", options) is None
    options.update(block_private=True, block_global=False)
    assert blocked("10.1.2.3", options) == "block_private"
    assert blocked("8.8.8.8", options) is None
    assert blocked("127.0.0.1", options) is None  # loopback is never refused


def _own_private_address() -> str | None:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.77", 9))  # no packet is sent: picks the outgoing address
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_block_private_refuses_a_real_client(start_proxy, origin, tmp_path):
    address = _own_private_address()
    if address is None or blocked(address, _private_only()) is None:
        pytest.skip("this machine has no private non-loopback IPv4 address to connect from")
    port = free_port()
    out = tmp_path / "out.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastproxy.cli", "run", "--listen-host", "0.0.0.0", "-p",
         str(port), "--set", "block_private=true", "--set", f"confdir={tmp_path / 'c'}"],
        stdout=open(out, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_output(proc, out, "listening at", 1)
        url = f"http://127.0.0.1:{origin.port}/bytes/10"
        assert curl("-x", f"http://127.0.0.1:{port}", url).stdout == payload(10)
        refused = curl("-x", f"http://{address}:{port}", url)
        assert refused.returncode != 0
        text = wait_output(proc, out, "refused by the block_private option", 1)
        assert address in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def _private_only() -> Options:
    options = Options()
    options.update(block_private=True)
    return options
