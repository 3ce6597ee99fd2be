"""Test PKI: generated root -> intermediate -> leaf chains and odd certificates (no tests here).

EC P-256 keys keep generation fast. Nothing here is trusted anywhere.
"""

from __future__ import annotations

import ipaddress
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Certificate | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    ca: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    issuer_name: x509.Name | None = None,
    basic_constraints: bool = True,
) -> x509.Certificate:
    """A certificate for ``cn``; self-signed unless ``issuer``/``issuer_key`` are given."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or (issuer.subject if issuer is not None else subject))
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(8), "big") | 1)
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=365 * 20))
    )
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_chain() -> tuple[list[x509.Certificate], ec.EllipticCurvePrivateKey]:
    """[leaf, intermediate, root] and the leaf's key."""
    root_key, int_key, leaf_key = new_key(), new_key(), new_key()
    root = make_cert("Test Root CA", root_key)
    inter = make_cert("Test Intermediate CA", int_key, issuer=root, issuer_key=root_key)
    leaf = make_cert("localhost", leaf_key, issuer=inter, issuer_key=int_key, ca=False)
    return [leaf, inter, root], leaf_key


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def key_pem(
    key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8
) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
