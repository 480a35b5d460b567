"""TLS certificates: `Cert`, the CA kept in the confdir, leaf certificates minted per host.

`Cert` wraps a `cryptography.x509.Certificate` with the accessors mitmproxy's Cert has.

`CertStore` owns the CA. On first use it is created in the confdir: the key (with the
certificate) in `fastproxy-ca.pem`, mode 0600, and the certificate alone as PEM, DER
(`.cer`) and PKCS#12 (`.p12`) for the clients that must trust it. Leaf certificates are
minted per set of names (SNI and the upstream certificate's names), signed by the CA,
all with one EC P-256 key made per process (as mitmproxy does: only the CA key is secret
across runs), and kept in a bounded LRU so a hot host costs no signature.
"""

from __future__ import annotations

import datetime
import fnmatch
import ipaddress
import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fastproxy.serializable import Serializable


class Cert(Serializable):
    """An X.509 certificate. Equal certificates have equal SHA-256 fingerprints.

    Its state is the PEM encoding as bytes, which is what mitmproxy writes in flow files.
    """

    def __init__(self, cert: x509.Certificate) -> None:
        if not isinstance(cert, x509.Certificate):
            raise TypeError(f"expected a cryptography x509.Certificate, got {type(cert).__name__}")
        self._cert = cert

    @classmethod
    def from_pem(cls, data: bytes) -> Self:
        """Load the first certificate in PEM `data`; ValueError if there is none."""
        return cls(x509.load_pem_x509_certificate(data))

    def to_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def to_cryptography(self) -> x509.Certificate:
        return self._cert

    def fingerprint(self) -> bytes:
        """The SHA-256 digest of the DER encoding."""
        return self._cert.fingerprint(hashes.SHA256())

    def public_key(self) -> CertificatePublicKeyTypes:
        return self._cert.public_key()

    @property
    def issuer(self) -> list[tuple[str, str]]:
        """The issuer's name as (attribute, value) pairs, e.g. [("CN", "example CA")]."""
        return _name_to_pairs(self._cert.issuer)

    @property
    def subject(self) -> list[tuple[str, str]]:
        """The subject's name as (attribute, value) pairs, e.g. [("CN", "example.com")]."""
        return _name_to_pairs(self._cert.subject)

    @property
    def notbefore(self) -> datetime.datetime:
        """Start of the validity period, as an aware UTC datetime."""
        return self._cert.not_valid_before_utc

    @property
    def notafter(self) -> datetime.datetime:
        """End of the validity period, as an aware UTC datetime."""
        return self._cert.not_valid_after_utc

    def has_expired(self) -> bool:
        return datetime.datetime.now(datetime.UTC) > self.notafter

    @property
    def serial(self) -> int:
        return self._cert.serial_number

    @property
    def cn(self) -> str | None:
        """The subject's first common name, if it has one."""
        return self._subject_attribute(x509.NameOID.COMMON_NAME)

    @property
    def organization(self) -> str | None:
        """The subject's first organization name, if it has one."""
        return self._subject_attribute(x509.NameOID.ORGANIZATION_NAME)

    @property
    def altnames(self) -> list[str]:
        """DNS names and IP addresses (as strings) of the subjectAltName extension."""
        try:
            san = self._cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return []
        dns = san.value.get_values_for_type(x509.DNSName)
        ips = san.value.get_values_for_type(x509.IPAddress)
        return dns + [str(ip) for ip in ips]

    @property
    def keyinfo(self) -> tuple[str, int]:
        """The public key's algorithm and size in bits, e.g. ("EC (secp256r1)", 256)."""
        key = self._cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            return "RSA", key.key_size
        if isinstance(key, dsa.DSAPublicKey):
            return "DSA", key.key_size
        if isinstance(key, ec.EllipticCurvePublicKey):
            return f"EC ({key.curve.name})", key.key_size
        if isinstance(key, ed25519.Ed25519PublicKey):
            return "Ed25519", 256
        if isinstance(key, ed448.Ed448PublicKey):
            return "Ed448", 456
        return type(key).__name__.removesuffix("PublicKey"), -1

    def _subject_attribute(self, oid: x509.ObjectIdentifier) -> str | None:
        attrs = self._cert.subject.get_attributes_for_oid(oid)
        return str(attrs[0].value) if attrs else None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Cert):
            return self.fingerprint() == other.fingerprint()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return f"<Cert(cn={self.cn!r}, altnames={self.altnames!r})>"

    def get_state(self) -> bytes:
        return self.to_pem()

    def set_state(self, state: bytes | str) -> None:
        self._cert = x509.load_pem_x509_certificate(_pem_bytes(state))

    @classmethod
    def from_state(cls, state: bytes | str) -> Self:
        return cls.from_pem(_pem_bytes(state))


def _pem_bytes(state: bytes | str) -> bytes:
    return state.encode("ascii") if isinstance(state, str) else state


def _name_to_pairs(name: x509.Name) -> list[tuple[str, str]]:
    # rfc4514_string() gives "CN=value"; its key is the short name, or the dotted OID.
    return [(attr.rfc4514_string().partition("=")[0], str(attr.value)) for attr in name]


# -- the CA and leaf certificates ------------------------------------------------------

CA_BASENAME = "fastproxy-ca"
CA_VALIDITY = datetime.timedelta(days=10 * 365)
# Leaves: backdated for clients with skewed clocks; under 398 days (Apple's and the CA/B
# Forum's limit for server certificates).
LEAF_BACKDATE = datetime.timedelta(days=2)
LEAF_VALIDITY = datetime.timedelta(days=365)
LEAF_CACHE_SIZE = 1024


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def general_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """SubjectAltName entries: IPAddress for IP literals, DNSName otherwise (RFC 5280 §4.2.1.6)."""
    out: list[x509.GeneralName] = []
    for name in names:
        if _is_ip(name):
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        else:
            out.append(x509.DNSName(name))
    return out


@dataclass(frozen=True, slots=True)
class Leaf:
    """A minted (or user-supplied) certificate with its key, ready for an SSLContext."""

    cert: Cert
    chain_pem: bytes
    """The leaf's PEM followed by the issuer's (what `load_cert_chain` reads)."""
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class CaFiles:
    """Where the CA's files are in the confdir."""

    key: Path
    pem: Path
    cer: Path
    p12: Path


class CertStore:
    """The CA and the leaf certificates it signs (see the module docstring)."""

    def __init__(self, ca_key: CertificateIssuerPrivateKeyTypes, ca_cert: x509.Certificate,
                 files: CaFiles | None = None, cache_size: int = LEAF_CACHE_SIZE) -> None:
        self.ca_key = ca_key
        self.ca = Cert(ca_cert)
        self.files = files
        self.cache_size = cache_size
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._leaf_key_pem = self.leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        self._ca_pem = self.ca.to_pem()
        self._ski = x509.SubjectKeyIdentifier.from_public_key(ca_cert.public_key())
        self._cache: OrderedDict[tuple[str, ...], Leaf] = OrderedDict()
        self.user_certs: list[tuple[str, Leaf]] = []
        """(domain pattern, leaf) pairs from `--certs`, tried in order before minting."""
        self.minted = 0

    # -- the CA on disk -----------------------------------------------------------------

    @classmethod
    def from_confdir(cls, confdir: str | os.PathLike, basename: str = CA_BASENAME) -> Self:
        """Load the CA from `confdir`, creating it (and the directory) on first use."""
        directory = Path(confdir).expanduser()
        files = ca_files(directory, basename)
        if not files.key.exists():
            key, cert = create_ca()
            write_ca(directory, basename, key, cert)
        data = files.key.read_bytes()
        key = serialization.load_pem_private_key(data, None)
        cert = x509.load_pem_x509_certificate(data)
        if not files.pem.exists():  # the public forms are derived; restore any missing
            write_ca(directory, basename, key, cert)
        return cls(key, cert, files)  # type: ignore[arg-type]

    # -- leaves -------------------------------------------------------------------------

    def add_user_cert(self, pattern: str, pem: bytes) -> None:
        """Serve `pem` (certificate(s) and key) for hosts matching `pattern` (`*.a.com`)."""
        cert = x509.load_pem_x509_certificates(pem)
        key = serialization.load_pem_private_key(pem, None)
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in cert)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        self.user_certs.append((pattern.lower(), Leaf(Cert(cert[0]), chain, key_pem)))

    def get_leaf(self, names: Iterable[str], organization: str | None = None) -> Leaf:
        """The certificate for a host known by `names` (the first is the subject's CN).

        A user certificate whose pattern matches the first name wins; otherwise a leaf
        is minted, or taken from the cache when these names were seen before.
        """
        key = tuple(dict.fromkeys(n.lower() for n in names if n))
        if not key:
            raise ValueError("a leaf certificate needs at least one name")
        for pattern, leaf in self.user_certs:
            if fnmatch.fnmatchcase(key[0], pattern) or pattern == key[0]:
                return leaf
        cache = self._cache
        leaf = cache.get(key)
        if leaf is not None:
            cache.move_to_end(key)
            return leaf
        leaf = cache[key] = self._mint(key, organization)
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
        return leaf

    def _mint(self, names: tuple[str, ...], organization: str | None) -> Leaf:
        now = datetime.datetime.now(datetime.UTC)
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]
        if organization:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64]))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.ca.to_cryptography().subject)
            .public_key(self.leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - LEAF_BACKDATE)
            .not_valid_after(now + LEAF_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(general_names(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                self._ski), critical=False)
        )
        cert = builder.sign(self.ca_key, _signature_hash(self.ca_key))
        self.minted += 1
        return Leaf(Cert(cert), cert.public_bytes(serialization.Encoding.PEM) + self._ca_pem,
                    self._leaf_key_pem)


def _signature_hash(key) -> hashes.HashAlgorithm | None:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def ca_files(directory: Path, basename: str = CA_BASENAME) -> CaFiles:
    return CaFiles(key=directory / f"{basename}.pem", pem=directory / f"{basename}-cert.pem",
                   cer=directory / f"{basename}-cert.cer", p12=directory / f"{basename}-cert.p12")


def create_ca(common_name: str = "fastproxy",
              organization: str = "fastproxy") -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A new self-signed CA: RSA 2048 (what every client accepts), valid for ten years."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - LEAF_BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def write_ca(directory: Path, basename: str, key, cert: x509.Certificate) -> CaFiles:
    """Write the CA's key file (0600, created so: never readable by others) and its
    certificate as PEM, DER and PKCS#12."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = ca_files(directory, basename)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem + cert_pem)
    os.chmod(files.key, 0o600)  # in case the file existed with wider permissions
    files.pem.write_bytes(cert_pem)
    files.cer.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    files.p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"fastproxy", None, cert, None, serialization.NoEncryption()))
    return files
