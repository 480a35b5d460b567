import datetime
import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from fastproxy.certs import Cert

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def make_cert(
    cn: str | None = "example.com",
    org: str | None = "Example Org",
    sans: list[x509.GeneralName] | None = None,
    key=None,
    not_before: datetime.datetime = NOW - datetime.timedelta(days=1),
    not_after: datetime.datetime = NOW + datetime.timedelta(days=30),
    serial: int = 4242,
) -> x509.Certificate:
    """A self-signed certificate (EC P-256 unless `key` is given)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    if org is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


SANS = [
    x509.DNSName("example.com"),
    x509.DNSName("*.example.com"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
    x509.UniformResourceIdentifier("https://example.com/"),
]


@pytest.fixture(scope="module")
def x509_cert() -> x509.Certificate:
    return make_cert(sans=SANS)


@pytest.fixture
def cert(x509_cert) -> Cert:
    return Cert(x509_cert)


def test_pem_round_trip(cert, x509_cert):
    pem = cert.to_pem()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert pem == x509_cert.public_bytes(serialization.Encoding.PEM)
    assert Cert.from_pem(pem).to_cryptography() == x509_cert


def test_to_cryptography_is_the_wrapped_certificate(cert, x509_cert):
    assert cert.to_cryptography() is x509_cert


def test_fingerprint_is_sha256_of_der(cert, x509_cert):
    der = x509_cert.public_bytes(serialization.Encoding.DER)
    assert cert.fingerprint() == hashlib.sha256(der).digest()


def test_public_key(cert, x509_cert):
    assert cert.public_key() == x509_cert.public_key()


def test_names(cert):
    expected = [("C", "DE"), ("CN", "example.com"), ("O", "Example Org")]
    assert cert.subject == expected
    assert cert.issuer == expected  # self-signed
    assert cert.cn == "example.com"
    assert cert.organization == "Example Org"


def test_missing_names_are_none():
    cert = Cert(make_cert(cn=None, org=None))
    assert cert.cn is None
    assert cert.organization is None
    assert cert.subject == [("C", "DE")]


def test_unknown_name_attribute_keeps_dotted_oid():
    key = ec.generate_private_key(ec.SECP256R1())
    oid = x509.ObjectIdentifier("1.2.3.4")
    name = x509.Name([x509.NameAttribute(oid, "custom")])
    raw = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert Cert(raw).subject == [("1.2.3.4", "custom")]


def test_validity_period(cert):
    assert cert.notbefore == NOW - datetime.timedelta(days=1)
    assert cert.notafter == NOW + datetime.timedelta(days=30)
    assert cert.notbefore.tzinfo is not None
    assert cert.notafter.utcoffset() == datetime.timedelta(0)
    assert not cert.has_expired()


def test_has_expired():
    old = make_cert(
        not_before=NOW - datetime.timedelta(days=10), not_after=NOW - datetime.timedelta(days=1)
    )
    assert Cert(old).has_expired()


def test_serial(cert):
    assert cert.serial == 4242


def test_altnames_are_dns_names_then_ips(cert):
    assert cert.altnames == ["example.com", "*.example.com", "127.0.0.1", "::1"]


def test_altnames_without_extension():
    assert Cert(make_cert()).altnames == []


@pytest.mark.parametrize(
    "key, expected",
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), ("EC (secp256r1)", 256)),
        (lambda: ec.generate_private_key(ec.SECP384R1()), ("EC (secp384r1)", 384)),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), ("RSA", 1024)),
        (ed25519.Ed25519PrivateKey.generate, ("Ed25519", 256)),
    ],
)
def test_keyinfo(key, expected):
    assert Cert(make_cert(key=key())).keyinfo == expected


def test_eq_and_hash_by_fingerprint(cert, x509_cert):
    same = Cert.from_pem(cert.to_pem())
    other = Cert(make_cert())
    assert same == cert and same is not cert
    assert hash(same) == hash(cert)
    assert other != cert
    assert len({cert, same, other}) == 2
    assert cert != cert.to_pem()


def test_repr(cert):
    assert repr(cert) == (
        "<Cert(cn='example.com', altnames=['example.com', '*.example.com', '127.0.0.1', '::1'])>"
    )


def test_state_is_pem_bytes(cert):
    assert cert.get_state() == cert.to_pem()
    assert isinstance(cert.get_state(), bytes)


@pytest.mark.parametrize("as_str", [False, True])
def test_from_state(cert, as_str):
    state = cert.get_state()
    restored = Cert.from_state(state.decode() if as_str else state)
    assert restored == cert and restored is not cert
    assert restored.get_state() == cert.get_state()


def test_set_state_replaces_certificate(cert):
    other = Cert(make_cert(cn="other.example"))
    cert.set_state(other.get_state())
    assert cert.cn == "other.example"
    assert cert == other


def test_copy(cert):
    dup = cert.copy()
    assert dup == cert and dup is not cert


def test_rejects_non_certificates():
    with pytest.raises(TypeError, match="x509.Certificate"):
        Cert(b"not a cert")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Cert.from_pem(b"-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n")
