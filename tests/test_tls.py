"""TLS interception with real clients on 127.0.0.1: curl and Python's ssl through the proxy,
an HTTPS origin with its own test CA, the proxy trusting that CA."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fastproxy.proxy.layers.tls import NotTLS, parse_client_hello
from tests.support import flowlog
from tests.support.origin import payload
from tests.support.tls_origin import TestCA


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                          timeout=30)


def wait_records(log: Path, event: str, count: int = 1) -> list[dict]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records = [r for r in flowlog.read(str(log)) if r["event"] == event]
        if len(records) >= count:
            return records
        time.sleep(0.05)
    raise AssertionError(f"no {event} records in {flowlog.read(str(log))}")


def tls_through_proxy(proxy_port: int, host: str, port: int, cafile: Path | None,
                      server_hostname: str | None = None) -> ssl.SSLObject:
    """CONNECT, then a TLS handshake; returns the SSL socket (caller closes)."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1024)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    context.set_alpn_protocols(["http/1.1"])
    return context.wrap_socket(sock, server_hostname=server_hostname or host)


def chain_of(tls_sock) -> list[x509.Certificate]:
    chain = tls_sock._sslobj.get_verified_chain()
    return [x509.load_der_x509_certificate(c.public_bytes(ssl._ssl.ENCODING_DER)) for c in chain]


# -- the ClientHello parser -------------------------------------------------------------

def client_hello_bytes(sni: str | None, alpn: list[str]) -> bytes:
    """A real ClientHello, as Python's ssl writes it into a MemoryBIO."""
    context = ssl.create_default_context()
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    if sni is None:
        context.check_hostname = False
    obj = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_client_hello_sni_and_alpn_at_every_split():
    data = client_hello_bytes("example.com", ["h2", "http/1.1"])
    for cut in range(len(data)):
        assert parse_client_hello(data[:cut]) is None
    hello = parse_client_hello(data)
    assert hello.sni == "example.com"
    assert hello.alpn_offers == [b"h2", b"http/1.1"]


def test_client_hello_without_sni_or_alpn():
    hello = parse_client_hello(client_hello_bytes(None, []))
    assert hello.sni is None and hello.alpn_offers == []


def test_client_hello_spread_over_records():
    data = client_hello_bytes("example.com", ["http/1.1"])
    body = data[5:]
    records = b"".join(b"\x16\x03\x01" + len(body[i:i + 50]).to_bytes(2, "big") + body[i:i + 50]
                       for i in range(0, len(body), 50))
    assert parse_client_hello(records).sni == "example.com"


def test_not_tls_is_refused():
    with pytest.raises(NotTLS):
        parse_client_hello(b"GET / HTTP/1.1\r\n\r\n")


# -- interception --------------------------------------------------------------------------

def test_curl_https_through_connect_is_decrypted(tls_proxy, https_origin):
    proxy, cacert, log = tls_proxy()
    out = curl("--proxy", proxy.url, "--cacert", str(cacert), "--http1.1",
               https_origin.url("/bytes/200000"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == payload(200000)
    flow = wait_records(log, "response")[0]
    assert flow["url"] == https_origin.url("/bytes/200000")
    assert flow["response_size"] == 200000
    client, server = flow["client"], flow["server"]
    assert client["tls"] and client["tls_established"]
    assert client["sni"] is None  # curl sends no SNI for an IP address
    assert client["alpn"] == "http/1.1" and client["alpn_offers"] == ["http/1.1"]
    assert client["tls_version"] == "TLSv1.3" and client["cipher"] and client["cipher_list"] > 0
    assert client["timestamp_tls_setup"]
    # The minted certificate: the host and the upstream certificate's names.
    cn, altnames = client["mitmcert"]
    assert cn == "127.0.0.1"
    assert {"127.0.0.1", "origin.test", "localhost"} <= set(altnames)
    assert server["tls_established"] and server["alpn"] == "http/1.1"
    assert server["sni"] == "127.0.0.1" and server["tls_version"] == "TLSv1.3"
    # The upstream's chain, end-entity first.
    assert [c[0] for c in server["certificate_list"]] == ["origin.test",
                                                          "fastproxy test origin CA"]


def test_minted_certificate_chain_and_sans(tls_proxy, https_origin):
    proxy, cacert, _ = tls_proxy()
    with tls_through_proxy(proxy.port, "localhost", https_origin.port, cacert) as tls:
        chain = chain_of(tls)
        tls.sendall(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"hello")
    leaf, ca = chain
    assert ca == x509.load_pem_x509_certificate(cacert.read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value == \
        "Origin Test Org"
    assert leaf.not_valid_after_utc > leaf.not_valid_before_utc


def test_untrusted_upstream_is_a_502_and_an_error(tls_proxy, https_origin):
    proxy, cacert, log = tls_proxy(trust=False)
    out = curl("-i", "--proxy", proxy.url, "--cacert", str(cacert), https_origin.url("/x"))
    assert out.returncode == 0, out.stderr
    assert b"\r\n\r\nHTTP/1.1 502 Bad Gateway" in out.stdout
    assert b"certificate verify failed" in out.stdout
    flow = wait_records(log, "error")[0]
    assert "certificate verify failed" in flow["error"]
    assert not https_origin.requests


def test_ssl_insecure_skips_verification(tls_proxy, https_origin):
    proxy, cacert, log = tls_proxy("-k", trust=False)
    out = curl("--proxy", proxy.url, "--cacert", str(cacert), https_origin.url("/x"))
    assert out.stdout == b"hello", out.stderr


def test_ssl_cert_file_is_honoured(tls_proxy, https_origin, test_ca):
    proxy, cacert, log = tls_proxy()
    proxy.stop()
    # The system store is ssl.create_default_context(): SSL_CERT_FILE replaces it.
    proxy2, cacert, log = tls_proxy(trust=False)
    proxy2.stop()
    from tests.support.proxyproc import ProxyProcess
    tmp = cacert.parent.parent
    proxy3 = ProxyProcess("-q", tmp_path=tmp, env={"SSL_CERT_FILE": str(test_ca.ca_pem)})
    try:
        out = curl("--proxy", proxy3.url, "--cacert", str(cacert), https_origin.url("/x"))
        assert out.stdout == b"hello", out.stderr
    finally:
        proxy3.stop()


def test_ignored_host_passes_through_with_the_origins_certificate(tls_proxy, https_origin,
                                                                   test_ca):
    proxy, cacert, log = tls_proxy("--ignore-hosts", r"^127\.0\.0\.1:")
    with tls_through_proxy(proxy.port, "127.0.0.1", https_origin.port, test_ca.ca_pem) as tls:
        leaf = chain_of(tls)[0]
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 200")
    assert leaf == test_ca.leaf
    out = curl("--proxy", proxy.url, "--cacert", str(test_ca.ca_pem), https_origin.url("/y"))
    assert out.stdout == b"hello", out.stderr
    time.sleep(0.2)
    assert flowlog.read(str(log)) == []  # not decrypted: no flows


def test_allow_hosts_intercepts_only_matching(tls_proxy, https_origin, test_ca):
    proxy, cacert, log = tls_proxy("--allow-hosts", r"^example\.com:")
    out = curl("--proxy", proxy.url, "--cacert", str(test_ca.ca_pem), https_origin.url("/y"))
    assert out.stdout == b"hello", out.stderr


def test_client_rejecting_our_certificate_ends_only_that_connection(tls_proxy, https_origin):
    proxy, cacert, log = tls_proxy()
    out = curl("--proxy", proxy.url, https_origin.url("/x"))  # without --cacert
    assert out.returncode != 0
    out = curl("--proxy", proxy.url, "--cacert", str(cacert), https_origin.url("/x"))
    assert out.stdout == b"hello", out.stderr
    proxy.stop()
    assert "TLS handshake with the client for 127.0.0.1 failed" in proxy.stdout + proxy.stderr


def test_garbage_after_a_tls_record_header_is_logged(tls_proxy, https_origin):
    proxy, cacert, log = tls_proxy()
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(f"CONNECT 127.0.0.1:{https_origin.port} HTTP/1.1\r\n\r\n".encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    sock.sendall(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00")  # a ServerHello type
    assert sock.recv(1024) == b""
    sock.close()
    out = curl("--proxy", proxy.url, "--cacert", str(cacert), https_origin.url("/x"))
    assert out.stdout == b"hello"
    proxy.stop()
    assert "not a ClientHello" in proxy.stdout + proxy.stderr


def test_reverse_mode_https_target_with_tls_and_plain_clients(tls_proxy, https_origin):
    proxy, cacert, log = tls_proxy("--mode", f"reverse:https://127.0.0.1:{https_origin.port}")
    url = f"https://127.0.0.1:{proxy.port}/bytes/5000"
    out = curl("--cacert", str(cacert), url)
    assert out.stdout == payload(5000), out.stderr
    out = curl(f"http://127.0.0.1:{proxy.port}/hello")
    assert out.stdout == b"hello", out.stderr
    flows = wait_records(log, "response", 2)
    assert flows[0]["url"].startswith("https://127.0.0.1:%d/" % https_origin.port)
    assert flows[0]["client"]["tls"] and not flows[1]["client"]["tls"]


def test_user_certificate_is_served(tls_proxy, https_origin, tmp_path):
    user_ca = TestCA(tmp_path / "user", cn="user CA")
    pem = tmp_path / "user.pem"
    pem.write_bytes(user_ca.leaf_pem.read_bytes())
    proxy, cacert, log = tls_proxy("--certs", f"*.test={pem}", "--certs", f"localhost={pem}")
    with tls_through_proxy(proxy.port, "localhost", https_origin.port, user_ca.ca_pem) as tls:
        assert chain_of(tls)[0] == user_ca.leaf


def test_http2_off_offers_only_http1(tls_proxy, https_origin):
    proxy, cacert, log = tls_proxy("--set", "http2=false")
    out = curl("-v", "--http2", "--proxy", proxy.url, "--cacert", str(cacert),
               https_origin.url("/x"))
    assert out.stdout == b"hello"
    assert b"ALPN: server accepted http/1.1" in out.stderr
    server = wait_records(log, "response")[0]["server"]
    assert server["alpn_offers"] == ["http/1.1"]


def test_many_keep_alive_requests_over_one_tls_connection(tls_proxy, https_origin):
    proxy, cacert, log = tls_proxy("-q")
    urls = [https_origin.url(f"/bytes/{n}") for n in (1, 1000, 100000, 0, 70000)]
    out = curl("--proxy", proxy.url, "--cacert", str(cacert), *urls)
    assert out.stdout == b"".join(payload(n) for n in (1, 1000, 100000, 0, 70000)), out.stderr
    assert cacert.read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    assert serialization  # (imported for the PEM helpers above)


def test_idle_timeout_holds_on_decrypted_connections(tls_proxy, https_origin):
    proxy, ca_pem, _ = tls_proxy("--set", "idle_timeout=1")
    tls = tls_through_proxy(proxy.port, "127.0.0.1", https_origin.port, ca_pem)
    tls.settimeout(8)
    started = time.monotonic()
    assert tls.recv(1) == b""  # the proxy closes the silent decrypted connection
    assert time.monotonic() - started < 6
    tls.close()
