"""A site's key material, made in memory: X.509 (CA, leaves, CRL) and Ed25519 command keys.

Pure: nothing here touches files or the clock; ``now`` is a parameter so that tests can make
expired certificates. Certificates are ECDSA P-256 with SHA-256, made with ``cryptography``
(no openssl binary).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.telemetry.commands import KeyRole, public_key_text

CLOCK_SLACK = timedelta(minutes=5)  # not_before in the past: a lane clock slightly behind


def _unencrypted_pem(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # services start unattended; the file mode protects it
    )


@dataclass(frozen=True, slots=True)
class Identity:
    """A private key and the certificate that binds it to a name."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cn(self) -> str:
        return str(self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return _unencrypted_pem(self.key)


@dataclass(frozen=True, slots=True)
class CommandKey:
    """An Ed25519 key that signs commands to the lanes; ``name`` is its file's stem."""

    name: str
    role: KeyRole
    key: Ed25519PrivateKey

    @property
    def kid(self) -> str:
        """The name plus a fingerprint, so a rotated key never reuses a kid."""
        raw = self.key.public_key().public_bytes_raw()
        return f"{self.name}-{hashlib.sha256(raw).hexdigest()[:8]}"

    def public_entry(self) -> dict[str, str]:
        """The entry a lane's ``command_keys.json`` holds (what ``load_command_keys`` reads)."""
        return {"kid": self.kid, "role": self.role.value, "public_key": public_key_text(self.key)}

    def key_pem(self) -> bytes:
        return _unencrypted_pem(self.key)


def make_command_key(name: str, role: KeyRole) -> CommandKey:
    return CommandKey(name, role, Ed25519PrivateKey.generate())


def make_ca(site: str, *, now: datetime, days: int) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gatelane"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"gatelane site {site} CA"),
    ])
    cert = (
        _builder(name, name, key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Identity(key, cert)


def make_leaf(
    ca: Identity,
    cn: str,
    *,
    now: datetime,
    days: int,
    server_names: Sequence[str] = (),
) -> Identity:
    """A client certificate for ``cn``, or a server one when ``server_names`` (SAN) is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gatelane"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])
    not_after = min(now + timedelta(days=days), ca.cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca.cert.subject, key.public_key(), now, days, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in server_names]), critical=False
        )
    return Identity(key, builder.sign(ca.key, hashes.SHA256()))


def make_crl(
    ca: Identity, revoked: Iterable[tuple[int, datetime]], *, now: datetime, days: int, number: int
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - CLOCK_SLACK)
        # OpenSSL refuses every client once a CRL is past next_update: keep it long.
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    days: int,
    not_after: datetime | None = None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SLACK)
        .not_valid_after(not_after or now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
