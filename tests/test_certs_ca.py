"""The CA in the confdir, leaf certificates minted from it, user certificates, `fastproxy ca`."""

import datetime
import ipaddress
import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import verification

from fastproxy.certs import CertStore, create_ca


@pytest.fixture
def store(tmp_path):
    return CertStore.from_confdir(tmp_path / "conf")


def verify_leaf(store: CertStore, leaf_pem: bytes, name: x509.GeneralName) -> None:
    """Raises unless the leaf chains to the CA and is valid for `name` (a web PKI check)."""
    leaf = x509.load_pem_x509_certificates(leaf_pem)[0]
    trust = verification.Store([store.ca.to_cryptography()])
    verifier = verification.PolicyBuilder().store(trust).build_server_verifier(name)
    verifier.verify(leaf, [])


def test_ca_files_created_with_private_key_0600(tmp_path, store):
    conf = tmp_path / "conf"
    names = sorted(os.listdir(conf))
    assert names == ["fastproxy-ca-cert.cer", "fastproxy-ca-cert.p12", "fastproxy-ca-cert.pem",
                     "fastproxy-ca.pem"]
    assert stat.S_IMODE(os.stat(store.files.key).st_mode) == 0o600
    key_file = store.files.key.read_bytes()
    assert b"PRIVATE KEY" in key_file and b"CERTIFICATE" in key_file
    assert b"PRIVATE KEY" not in store.files.pem.read_bytes()


def test_ca_forms_are_the_same_certificate(store):
    ca = store.ca.to_cryptography()
    assert x509.load_pem_x509_certificate(store.files.pem.read_bytes()) == ca
    assert x509.load_der_x509_certificate(store.files.cer.read_bytes()) == ca
    key, cert, extra = pkcs12.load_key_and_certificates(store.files.p12.read_bytes(), None)
    assert key is None and ca in [cert, *extra]
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca


def test_ca_is_reused_on_next_start(tmp_path, store):
    again = CertStore.from_confdir(tmp_path / "conf")
    assert again.ca == store.ca


def test_leaf_has_sans_and_chains_to_ca(store):
    leaf = store.get_leaf(["example.com", "www.example.com", "127.0.0.1"], "Example Org")
    cert = leaf.cert
    assert cert.cn == "example.com"
    assert cert.organization == "Example Org"
    assert cert.altnames == ["example.com", "www.example.com", "127.0.0.1"]
    san = cert.to_cryptography().extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert cert.issuer == store.ca.subject
    # The chain PEM is leaf then CA: what load_cert_chain sends to clients.
    chain = x509.load_pem_x509_certificates(leaf.chain_pem)
    assert chain[1] == store.ca.to_cryptography()
    verify_leaf(store, leaf.chain_pem, x509.DNSName("www.example.com"))
    verify_leaf(store, leaf.chain_pem, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


def test_leaf_validity_is_sensible(store):
    cert = store.get_leaf(["example.com"]).cert
    now = datetime.datetime.now(datetime.UTC)
    assert cert.notbefore < now - datetime.timedelta(hours=1)
    assert datetime.timedelta(days=300) < cert.notafter - now < datetime.timedelta(days=398)
    key = serialization.load_pem_private_key(store.get_leaf(["example.com"]).key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_leaf_cache_hits_and_is_bounded(tmp_path):
    store = CertStore.from_confdir(tmp_path, )
    store.cache_size = 3
    first = store.get_leaf(["a.test"])
    assert store.get_leaf(["A.test"]) is first  # names are case-insensitive
    assert store.minted == 1
    for name in ("b.test", "c.test", "d.test"):
        store.get_leaf([name])
    assert store.minted == 4
    assert len(store._cache) == 3
    assert store.get_leaf(["a.test"]) is not first  # evicted, minted again
    assert store.minted == 5


def test_user_certificate_wins(store, tmp_path):
    key, cert = create_ca("user.example.com", "User")
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    store.add_user_cert("*.example.com", pem)
    assert store.get_leaf(["api.example.com"]).cert.cn == "user.example.com"
    assert store.get_leaf(["example.org"]).cert.cn == "example.org"


def test_ca_command_prints_paths_fingerprint_and_how_to_trust(tmp_path):
    conf = tmp_path / "c"
    out = subprocess.run([sys.executable, "-m", "fastproxy.cli", "ca", "--set", f"confdir={conf}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    store = CertStore.from_confdir(conf)
    fingerprint = ":".join(f"{b:02X}" for b in store.ca.fingerprint())
    assert fingerprint in out.stdout
    for path in (store.files.pem, store.files.cer, store.files.p12, store.files.key):
        assert str(path) in out.stdout
    assert "--cacert" in out.stdout and "SSL_CERT_FILE" in out.stdout
    assert "REQUESTS_CA_BUNDLE" in out.stdout and "Firefox" in out.stdout
