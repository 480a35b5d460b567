"""mitmproxy's current hook names beside the spec's, with mitmproxy's arguments, from the
real proxy process over real sockets; and `configure` called with the declared arity."""

from __future__ import annotations

import json
import ssl
import time

import httpx
import pytest

from fastproxy.addonmanager import AddonManager
from fastproxy.hooks import ALIASES, HOOKS
from fastproxy.options import Options

MODERN = r'''
import json, os
from fastproxy.connection import Client, Server
from fastproxy.proxy.server_hooks import ServerConnectionHookData
from fastproxy.tls import ClientHelloData, TlsData

LOG = os.environ["HOOK_LOG"]

def log(*entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")

class Modern:
    def load(self, loader):
        loader.add_option("modern_flag", bool, False, "a test option")
        log("load")
    def configure(self, updated):
        log("configure", "modern_flag" in updated)
    def running(self):
        log("running")
    def client_connected(self, client):
        assert isinstance(client, Client)
        log("client_connected", list(client.peername))
    def client_disconnected(self, client):
        log("client_disconnected", list(client.peername))
    def server_connect(self, data):
        assert isinstance(data, ServerConnectionHookData)
        log("server_connect", list(data.server.address),
            data.client and list(data.client.peername))
    def server_connected(self, data):
        log("server_connected", list(data.server.address), list(data.server.peername),
            data.client and list(data.client.peername))
    def server_connect_error(self, data):
        log("server_connect_error", list(data.server.address), data.server.error)
    def server_disconnected(self, data):
        log("server_disconnected", list(data.server.address))
    def tls_clienthello(self, data):
        assert isinstance(data, ClientHelloData)
        log("tls_clienthello", data.client_hello.sni, data.context.client_conn.sni)
    def tls_start_client(self, data):
        assert isinstance(data, TlsData) and isinstance(data.conn, Client)
        log("tls_start_client")
    def tls_established_client(self, data):
        log("tls_established_client", data.conn.tls_established)
    def tls_failed_client(self, data):
        log("tls_failed_client", bool(data.conn.error))
    def tls_start_server(self, data):
        assert isinstance(data.conn, Server)
        log("tls_start_server", data.conn.sni)
    def tls_established_server(self, data):
        log("tls_established_server", data.conn.tls_version)
    def tls_failed_server(self, data):
        log("tls_failed_server", data.conn.error)

class Spec:
    def configure(self, options, updated):
        log("spec_configure", options.modern_flag)
    def clientconnect(self, root_layer):
        log("clientconnect", list(root_layer.client_conn.peername))
    def serverconnect(self, server_conn):
        log("serverconnect", list(server_conn.address))

addons = [Modern(), Spec()]
'''


def read(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for(path, name, count=1, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = read(path)
        if sum(e[0] == name for e in entries) >= count:
            return entries
        time.sleep(0.05)
    raise AssertionError(f"no {name} in {read(path)}")


@pytest.fixture
def modern(tmp_path, start_proxy):
    script, log = tmp_path / "modern.py", tmp_path / "hooks.jsonl"
    script.write_text(MODERN)

    def start(*args):
        proxy = start_proxy("-q", "-s", str(script), "--set", "modern_flag=true", *args,
                            env={"HOOK_LOG": str(log)})
        wait_for(log, "client_disconnected")  # the fixture's readiness probe
        return proxy
    return start, log


def by_name(entries, name):
    return [e[1:] for e in entries if e[0] == name]


def test_general_and_connection_hooks(modern, origin):
    start, log = modern
    proxy = start()
    startup = read(log)
    assert [e[0] for e in startup[:4]] == ["load", "configure", "spec_configure", "running"]
    assert startup[1] == ["configure", True] and startup[2] == ["spec_configure", True]
    log.write_text("")
    response = httpx.get(origin.url("/a"), proxy=proxy.url, timeout=10)
    assert response.status_code == 200
    entries = wait_for(log, "client_disconnected")
    peer = by_name(entries, "client_connected")[0][0]
    # One underlying event, every name an addon uses called once for it.
    assert by_name(entries, "clientconnect") == [[peer]]
    assert by_name(entries, "client_connected") == [[peer]]
    assert by_name(entries, "serverconnect") == [[["127.0.0.1", origin.port]]]
    assert by_name(entries, "server_connect") == [[["127.0.0.1", origin.port], peer]]
    assert by_name(entries, "client_disconnected") == [[peer]]
    proxy.stop()
    assert by_name(read(log), "server_disconnected") == [[["127.0.0.1", origin.port]]]


def test_server_connected(modern, origin):
    start, log = modern
    proxy = start()
    log.write_text("")
    assert httpx.get(origin.url("/a"), proxy=proxy.url, timeout=10).status_code == 200
    entries = wait_for(log, "client_disconnected")
    peer = by_name(entries, "client_connected")[0][0]
    connected = by_name(entries, "server_connected")
    assert len(connected) == 1 and connected[0][0] == ["127.0.0.1", origin.port]
    assert connected[0][1][1] == origin.port and connected[0][2] == peer


def test_server_connect_error(modern):
    start, log = modern
    proxy = start()
    log.write_text("")
    from tests.support.proxyproc import free_port
    port = free_port()
    response = httpx.get(f"http://127.0.0.1:{port}/", proxy=proxy.url, timeout=10)
    assert response.status_code == 502
    entries = wait_for(log, "server_connect_error", timeout=3)
    (address, error), = by_name(entries, "server_connect_error")
    assert address == ["127.0.0.1", port] and error


def test_tls_hooks(modern, https_origin, test_ca, tmp_path):
    start, log = modern
    proxy = start("--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}")
    log.write_text("")
    cacert = tmp_path / "confdir" / "fastproxy-ca-cert.pem"
    verify = ssl.create_default_context(cafile=str(cacert))
    with httpx.Client(proxy=proxy.url, verify=verify, timeout=10) as client:
        assert client.get(https_origin.url("/x").replace("127.0.0.1", "localhost")).status_code == 200
    entries = wait_for(log, "client_disconnected")
    names = [e[0] for e in entries]
    order = ["tls_clienthello", "tls_start_server", "tls_established_server",
             "tls_start_client", "tls_established_client"]
    assert [n for n in names if n in order] == order
    assert by_name(entries, "tls_clienthello") == [["localhost", "localhost"]]
    assert by_name(entries, "tls_start_server") == [["localhost"]]
    assert by_name(entries, "tls_established_server") == [["TLSv1.3"]]
    assert by_name(entries, "tls_established_client") == [[True]]
    # A client that does not trust the proxy's CA: the client handshake fails.
    log.write_text("")
    with pytest.raises(httpx.ConnectError):
        httpx.get(https_origin.url("/y"), proxy=proxy.url, timeout=10)
    assert by_name(wait_for(log, "tls_failed_client"), "tls_failed_client") == [[True]]


def test_tls_failed_server(modern, https_origin):
    start, log = modern
    proxy = start()  # the origin's CA is not trusted
    log.write_text("")
    response = httpx.get(https_origin.url("/z"), proxy=proxy.url, verify=False, timeout=10)
    assert response.status_code == 502
    failed = by_name(wait_for(log, "tls_failed_server"), "tls_failed_server")
    # one per handshake tried (http/1.1, then h2 to tell "h2 only" from a real failure)
    assert failed and all("certificate" in error.lower() for error, in failed)


def test_the_table_names_every_alias_and_event():
    for alias in ALIASES.values():
        assert alias.event in HOOKS and alias.name not in HOOKS
    for name in ("running", "server_connected", "server_connect_error", "tls_clienthello",
                 "tls_start_client", "tls_start_server", "tls_established_client",
                 "tls_established_server", "tls_failed_client", "tls_failed_server",
                 "http_connect_upstream", "http_connected", "http_connect_error"):
        assert name in HOOKS


def test_configure_arity():
    calls = []

    class Modern:
        def configure(self, updated):
            calls.append(("modern", updated))

    class Spec:
        def configure(self, options, updated):
            calls.append(("spec", type(options).__name__, updated))

    class Flexible:
        def configure(self, *args):
            calls.append(("flex", len(args)))

    manager = AddonManager(Options())
    manager.add(Modern(), Spec(), Flexible())
    manager.configure_all({"listen_port"})
    assert calls == [("modern", {"listen_port"}), ("spec", "Options", {"listen_port"}),
                     ("flex", 2)]
