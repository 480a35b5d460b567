"""TLS certificates.

`Cert` wraps a `cryptography.x509.Certificate` with the accessors mitmproxy's Cert has. The
CA kept on disk and the leaf certificates minted per host belong in this module too.
"""

from __future__ import annotations

import datetime
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

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
