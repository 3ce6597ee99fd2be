"""Certificate loading, checks and normalised output (esp_secure_build.certs, check-cert)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import VECTORS, assert_one_line_error, run_cli
from cryptography import x509
from test_certs_pki import NOW, der, key_pem, make_cert, make_chain, new_key, pem, write

from esp_secure_build import certs
from esp_secure_build.errors import EspSecureError

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
VECTOR_CERTS = sorted((VECTORS / "crt-bundle").glob("*/input/*"))


@pytest.fixture(scope="module")
def chain() -> list[x509.Certificate]:
    return make_chain()[0]


def _openssl(*args: str, data: bytes) -> bytes:
    return subprocess.run([OPENSSL, *args], input=data, capture_output=True, check=True, timeout=30).stdout


# --------------------------------------------------------------------------- parsing and normal form


@needs_openssl
@pytest.mark.parametrize("path", VECTOR_CERTS, ids=lambda p: p.name)
def test_normalized_pem_matches_openssl(path: Path) -> None:
    """Our normal form is what `openssl x509` writes, one block per certificate, for PEM and DER input."""
    inform = "DER" if path.suffix == ".der" else "PEM"
    parsed = certs.load_certificates(path)
    if inform == "PEM":
        expected = _openssl("crl2pkcs7", "-nocrl", "-certfile", "/dev/stdin", data=path.read_bytes())
        expected = b"".join(
            line + b"\n" for line in _openssl("pkcs7", "-print_certs", data=expected).splitlines()
            if line.strip() and not line.startswith((b"subject=", b"issuer="))
        )  # fmt: skip
    else:
        expected = _openssl("x509", "-inform", "DER", "-outform", "PEM", data=path.read_bytes())
    assert certs.normalized_pem(parsed) == expected
    assert len(parsed) == expected.count(b"-----BEGIN CERTIFICATE-----")


@needs_openssl
@pytest.mark.parametrize("path", VECTOR_CERTS[:3], ids=lambda p: p.name)
def test_summary_matches_openssl(path: Path) -> None:
    cert = certs.load_certificates(path)[0]
    summary = certs.summarize(cert)
    data = der(cert)
    out = _openssl("x509", "-inform", "DER", "-noout", "-fingerprint", "-sha256", "-enddate", data=data).decode()
    fields = dict(line.split("=", 1) for line in out.splitlines())
    fingerprint = next(v for k, v in fields.items() if "Fingerprint" in k)
    assert summary.fingerprint == fingerprint
    assert summary.sha256 == hashlib.sha256(data).hexdigest()
    end = summary.not_after
    assert f"{end:%b} {end.day:2d} {end:%H:%M:%S %Y} GMT" == fields["notAfter"]
    assert summary.subject == cert.subject.rfc4514_string()


def test_whitespace_edits_do_not_change_output(chain: list[x509.Certificate]) -> None:
    reference = pem(*chain)
    mangled = (
        b"  " + reference.replace(b"\n", b"  \r\n").replace(b"-----\r\nMI", b"-----\r\n\r\n   MI").rstrip()
    )  # CRLF, indentation, trailing blanks, blank lines, no final newline
    assert certs.normalized_pem(certs.parse_certificates(mangled)) == reference
    # Re-wrapped base64 (76 columns) too.
    body = [line for line in reference.decode().splitlines()[1:] if not line.startswith("-----")]
    first = "".join(body[: body.index(next(b for b in body if len(b) < 64)) + 1])
    rewrapped = "-----BEGIN CERTIFICATE-----\n" + "\n".join(first[i : i + 76] for i in range(0, len(first), 76))
    rewrapped += "\n-----END CERTIFICATE-----"
    assert certs.normalized_pem(certs.parse_certificates(rewrapped.encode())) == pem(chain[0])


def test_der_and_text_around_blocks(chain: list[x509.Certificate]) -> None:
    assert certs.parse_certificates(der(chain[2])) == [chain[2]]
    noisy = b"CONNECTED(00000003)\n---\nCertificate chain\n 0 s:CN = localhost\n" + pem(chain[0])
    noisy += b" 1 s:CN = x\n   i:CN = y\n" + pem(chain[1]) + b"---\nServer certificate\nsubject=CN = localhost\n"
    assert certs.parse_certificates(noisy) == chain[:2]


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"", "input is empty"),
        (b"hello\nworld\n", "no certificate found"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "no certificate found (found PUBLIC KEY)"),
        (b"-----BEGIN CERTIFICATE-----\nMII$$notbase64\n-----END CERTIFICATE-----\n", "broken base64 body"),
        (b"-----BEGIN CERTIFICATE-----\nMIIBIjAN\nQ\n-----END CERTIFICATE-----\n", "broken base64 body"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a valid X.509 certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n", "has no END line"),
        (b"\x30\x03\x02\x01\x01", "not a valid X.509 certificate (DER)"),
    ],
)
def test_parse_errors(data: bytes, needle: str) -> None:
    with pytest.raises(EspSecureError, match=None) as info:
        certs.parse_certificates(data, "in.pem")
    assert needle in str(info.value) and str(info.value).startswith("in.pem: ")


@pytest.mark.parametrize("fmt", ["PKCS8", "TraditionalOpenSSL"])
def test_private_key_refused_and_not_echoed(fmt: str, chain: list[x509.Certificate]) -> None:
    from cryptography.hazmat.primitives import serialization

    key = new_key()
    data = key_pem(key, getattr(serialization.PrivateFormat, fmt))
    for blob in (data, data + pem(chain[2]), pem(chain[2]) + data):
        with pytest.raises(EspSecureError, match="private key") as info:
            certs.parse_certificates(blob, "k.pem")
        body = data.decode().splitlines()[1]
        assert body[:16] not in str(info.value)
    der_key = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(EspSecureError, match="private key"):
        certs.parse_certificates(der_key, "k.der")


# --------------------------------------------------------------------------- checks


def test_chain_picks_root(chain: list[x509.Certificate]) -> None:
    result = certs.check_certificates(chain, source="chain.pem")
    assert result.certificates == (chain[2],)
    assert result.warnings == ()
    assert result.pem == pem(chain[2])
    assert result.summaries[0].subject == "O=Test,CN=Test Root CA"


def test_keep_bundle_of_cas_and_of_roots(chain: list[x509.Certificate]) -> None:
    result = certs.check_certificates(chain[1:], keep_bundle=True)
    assert result.certificates == tuple(chain[1:]) and result.pem == pem(*chain[1:])
    other_root = make_cert("Other Root", new_key())
    roots = certs.check_certificates([chain[2], other_root], keep_bundle=True)  # roots: no order
    assert roots.certificates == (chain[2], other_root) and roots.warnings == ()
    with pytest.raises(EspSecureError, match=r"certificate 1 of 3 \(O=Test,CN=localhost\) is not a CA"):
        certs.check_certificates(chain, keep_bundle=True)


def test_chain_without_root_warns(chain: list[x509.Certificate]) -> None:
    result = certs.check_certificates(chain[:2], source="x.pem")
    assert result.certificates == (chain[1],)
    (warning,) = result.warnings
    assert "not self-signed (issued by O=Test,CN=Test Root CA)" in warning and warning.startswith("x.pem: ")


@pytest.mark.parametrize("order", [(0, 2, 1), (2, 1, 0), (1, 0, 2)])
def test_chain_out_of_order(chain: list[x509.Certificate], order: tuple[int, ...]) -> None:
    with pytest.raises(EspSecureError, match="chain out of order: certificate 1"):
        certs.check_certificates([chain[i] for i in order], source="c.pem")


def test_leaf_alone_is_not_a_ca(chain: list[x509.Certificate]) -> None:
    with pytest.raises(EspSecureError, match=r"certificate \(O=Test,CN=localhost\) is not a CA"):
        certs.check_certificates([chain[0]])
    no_bc = make_cert("No Constraints", new_key(), basic_constraints=False)
    with pytest.raises(EspSecureError, match="is not a CA"):
        certs.check_certificates([no_bc])


def test_forged_self_signature() -> None:
    forged = make_cert("Forged", new_key(), issuer_key=new_key())  # names itself, signed by another key
    assert forged.issuer == forged.subject
    with pytest.raises(EspSecureError, match="self-signature does not verify"):
        certs.check_certificates([forged])


def test_validity_and_horizon() -> None:
    key = new_key()
    expired = make_cert("Old", key, not_before=NOW - timedelta(days=800), not_after=NOW - timedelta(days=2))
    with pytest.raises(EspSecureError, match=r"expired on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"):
        certs.check_certificates([expired])
    future = make_cert("Future", key, not_before=NOW + timedelta(days=3))
    start = (NOW + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    with pytest.raises(EspSecureError, match=f"not yet valid \\(valid from {start} UTC\\)"):
        certs.check_certificates([future])
    end = NOW + timedelta(days=5 * 365)
    short = make_cert("Short", key, not_after=end)
    (warning,) = certs.check_certificates([short]).warnings
    assert f"expires on {end:%Y-%m-%d %H:%M:%S} UTC, within the 10-year horizon" in warning
    assert certs.check_certificates([short], horizon_years=4).warnings == ()
    assert "6-year horizon" in certs.check_certificates([short], horizon_years=6).warnings[0]
    # The horizon and validity are judged at `now`, not at import time.
    assert certs.check_certificates([expired], now=NOW - timedelta(days=400), horizon_years=0).warnings == ()


# --------------------------------------------------------------------------- CLI


def test_cli_check_cert_writes_normalized(tmp_path: Path, chain: list[x509.Certificate]) -> None:
    src = write(tmp_path / "chain.txt", b"noise\r\n" + pem(*chain).replace(b"\n", b"\r\n"))
    out = tmp_path / "ca.pem"
    proc = run_cli("check-cert", src, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == pem(chain[2])
    assert certs.summarize(chain[2]).fingerprint in proc.stdout
    assert proc.stderr == ""


def _bad_inputs(chain: list[x509.Certificate]) -> dict[str, tuple[bytes, str]]:
    key = new_key()
    expired = make_cert("Old", key, not_before=NOW - timedelta(days=800), not_after=NOW - timedelta(days=2))
    future = make_cert("Future", key, not_before=NOW + timedelta(days=3))
    return {
        "no-cert": (b"just some text\n", "no certificate found"),
        "private-key": (key_pem(key), "a private key (PRIVATE KEY) where a certificate is expected"),
        "broken-base64": (pem(chain[2]).replace(b"MI", b"M*", 1), "broken base64 body"),
        "expired": (pem(expired), "expired on"),
        "not-yet-valid": (pem(future), "is not yet valid"),
        "leaf-not-ca": (pem(chain[0]), "is not a CA"),
        "out-of-order": (pem(chain[0], chain[2], chain[1]), "chain out of order"),
    }


def test_cli_bad_inputs(tmp_path: Path, chain: list[x509.Certificate]) -> None:
    for name, (data, needle) in _bad_inputs(chain).items():
        src = write(tmp_path / f"{name}.pem", data)
        out = tmp_path / f"{name}.out.pem"
        proc = run_cli("check-cert", src, "-o", out)
        assert_one_line_error(proc, needle, str(src))
        assert not out.exists(), name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_warning_does_not_fail(tmp_path: Path) -> None:
    short = make_cert("Short", new_key(), not_after=NOW + timedelta(days=400))
    src = write(tmp_path / "s.pem", pem(short))
    proc = run_cli("check-cert", src, "--horizon-years", "2")
    assert proc.returncode == 0
    assert "warning:" in proc.stderr and "2-year horizon" in proc.stderr
