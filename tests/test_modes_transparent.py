"""Transparent mode end to end in network namespaces this test creates: a client namespace
and a proxy namespace joined by a veth pair, an nftables REDIRECT rule in the proxy's
namespace, the original destination read with SO_ORIGINAL_DST (IPv4) and
IP6T_SO_ORIGINAL_DST (IPv6), and TLS intercepted by the SNI. The same namespaces check
block_global with a client at a public address.

Needs root, `ip netns` and `nft`; skipped, saying which is missing, where they are not."""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import origin as origin_module
from tests.support.origin import Origin, payload
from tests.support.socks import EchoServer
from tests.support.tls_origin import HttpsOrigin

CLONE_NEWNET = 0x40000000
PROXY_PORT = 8080


def _sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "transparent mode needs Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if shutil.which("nft") is None:
        return "nftables (`nft`) is not installed (apt-get install nftables)"
    name = f"fpcheck{random.getrandbits(24)}"
    made = _sh("ip", "netns", "add", name)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    _sh("ip", "netns", "del", name)
    return None


@contextmanager
def netns(name: str):
    """Run the calling thread in namespace `name` (sockets made now stay in it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        yield
    finally:
        libc.setns(original, CLONE_NEWNET)
        os.close(original)
        os.close(target)


@contextmanager
def any_address():
    """Origins bound to every address instead of 127.0.0.1 (they serve the client's
    original destination)."""
    real = origin_module._Server

    class Server(real):
        def __init__(self, address, handler):
            super().__init__(("0.0.0.0", 0), handler)
    origin_module._Server = Server
    try:
        yield
    finally:
        origin_module._Server = real


@pytest.fixture(scope="module")
def namespaces():
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    tag = random.getrandbits(20)
    client, proxy = f"fpc{tag}", f"fpp{tag}"
    net = 200 + tag % 50
    steps = [
        ["ip", "netns", "add", client], ["ip", "netns", "add", proxy],
        ["ip", "link", "add", f"vc{tag}", "netns", client, "type", "veth",
         "peer", "name", f"vp{tag}", "netns", proxy],
    ]
    for ns, dev, v4, v6, extra in ((client, f"vc{tag}", f"10.{net}.0.2/24", "fd31::2/64",
                                    "11.0.0.2/24"),
                                   (proxy, f"vp{tag}", f"10.{net}.0.1/24", "fd31::1/64",
                                    "11.0.0.1/24")):
        steps += [["ip", "-n", ns, "link", "set", "lo", "up"],
                  ["ip", "-n", ns, "addr", "add", v4, "dev", dev],
                  ["ip", "-n", ns, "addr", "add", extra, "dev", dev],
                  ["ip", "-n", ns, "-6", "addr", "add", v6, "dev", dev, "nodad"],
                  ["ip", "-n", ns, "link", "set", dev, "up"]]
    try:
        for step in steps:
            done = _sh(*step)
            if done.returncode != 0:
                pytest.skip(f"cannot set up the namespaces ({' '.join(step)}): {done.stderr}")
        yield {"client": client, "proxy": proxy, "proxy_v4": f"10.{net}.0.1",
               "client_v4": f"10.{net}.0.2"}
    finally:
        _sh("ip", "netns", "del", client)
        _sh("ip", "netns", "del", proxy)


def redirect(ns: str, ports: list[int]) -> None:
    """nftables: TCP to these ports, arriving from outside, goes to the proxy's port."""
    ruleset = "\n".join(
        f"table {family} fastproxy_test {{\n  chain pre {{\n"
        f"    type nat hook prerouting priority -100;\n"
        + "".join(f"    tcp dport {p} redirect to :{PROXY_PORT}\n" for p in ports)
        + "  }\n}" for family in ("ip", "ip6"))
    done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset,
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot load the nftables REDIRECT rule: {done.stderr.strip()}")


@contextmanager
def proxy_in(ns: str, tmp_path: Path, *args: str):
    out = tmp_path / f"proxy-{random.getrandbits(32)}.out"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "fastproxy.cli", "run",
         "--listen-host", "", "-p", str(PROXY_PORT), "--set", f"confdir={tmp_path / 'conf'}",
         *args], stdout=open(out, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
        cwd=str(Path(__file__).resolve().parent.parent))
    try:
        deadline = time.monotonic() + 15
        while "listening at" not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        yield out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def curl_in(ns: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "15", *args],
                          capture_output=True, timeout=30, check=False)


def test_transparent_http_tls_and_ipv6(namespaces, tmp_path, test_ca):
    ns = namespaces
    with netns(ns["proxy"]), any_address():
        http = Origin()
        https = HttpsOrigin(test_ca)
        echo6 = EchoServer("::")
    try:
        redirect(ns["proxy"], [http.port, https.port, echo6.port])
        with proxy_in(ns["proxy"], tmp_path, "-m", "transparent",
                      "--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}") as out:
            ip = ns["proxy_v4"]
            plain = curl_in(ns["client"], f"http://{ip}:{http.port}/bytes/3000")
            assert plain.returncode == 0, (plain.stderr, out.read_text())
            assert plain.stdout == payload(3000)
            assert f"GET http://{ip}:{http.port}/bytes/3000" in out.read_text()
            # TLS: the ClientHello's SNI names the host; the proxy mints for it.
            cacert = tmp_path / "conf" / "fastproxy-ca-cert.pem"
            tls = curl_in(ns["client"], "--cacert", str(cacert), "--resolve",
                          f"origin.test:{https.port}:{ip}",
                          f"https://origin.test:{https.port}/bytes/2000")
            assert tls.returncode == 0, (tls.stderr, out.read_text())
            assert tls.stdout == payload(2000)
            # IPv6: IP6T_SO_ORIGINAL_DST, relayed as TCP.
            six = subprocess.run(
                ["ip", "netns", "exec", ns["client"], sys.executable, "-c",
                 ("import socket,sys; s=socket.create_connection(('fd31::1', int(sys.argv[1])),"
                  " timeout=10); s.sendall(b'\\x00six\\xff'); print(s.recv(100))"),
                 str(echo6.port)], capture_output=True, text=True, timeout=30, check=False)
            assert six.stdout.strip() == repr(b"\x00six\xff"), (six.stderr, out.read_text())
            # The echo server's client is the proxy (fd31::1), not the client (fd31::2).
            assert echo6.peers and echo6.peers[-1][0] == "fd31::1"
    finally:
        http.stop()
        https.stop()
        echo6.stop()


def test_block_global_refuses_a_public_client(namespaces, tmp_path):
    ns = namespaces
    with netns(ns["proxy"]), any_address():
        http = Origin()
    try:
        with proxy_in(ns["proxy"], tmp_path) as out:
            url = f"http://{ns['proxy_v4']}:{http.port}/bytes/10"
            private = curl_in(ns["client"], "-x", f"http://{ns['proxy_v4']}:{PROXY_PORT}", url)
            assert private.stdout == payload(10), private.stderr
            public = curl_in(ns["client"], "--interface", "11.0.0.2", "-x",
                             f"http://11.0.0.1:{PROXY_PORT}", url)
            assert public.returncode != 0
            deadline = time.monotonic() + 5
            while "11.0.0.2 refused by the block_global option" not in out.read_text():
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.05)
    finally:
        http.stop()
