"""CA certificates for firmware: load, check, normalise, and fetch a server's root.

A device validates its server against a CA certificate compiled into the
firmware. This module reads what people have at hand (a PEM file, a DER file,
a PEM bundle, or the saved output of ``openssl s_client -showcerts``), picks
the certificate to embed (the last one of a chain, the root; or the whole
bundle), checks it, and writes it back as a normalised PEM so that whitespace
edits never change the firmware.

Checks (errors raise :class:`EspSecureError`, warnings are returned):

* it parses; a private key where a certificate is expected is refused;
* each embedded certificate is a CA (basicConstraints CA:TRUE);
* a certificate that names itself as issuer (a root) really is self-signed;
  one that does not is embedded with a warning (the chain stopped short of the root);
* not yet valid or expired: error; expiring within the horizon (the device's
  service life, default 10 years): warning naming the date;
* a chain (not a bundle of roots): each certificate is signed by the next.

:func:`fetch_chain` connects with TLS without trusting anything and returns
the chain the server presents. The standard library cannot give the
unverified chain before Python 3.13, so it uses pyOpenSSL (imported only there).
:func:`fetch_ca` then decides whether to trust it, because whoever answers
(a TLS-intercepting proxy, a captive portal) is not necessarily the server: the
leaf must be valid for the host name and each certificate signed by the next;
a chain ending in a CA the system trust store knows is accepted (its root taken
from the store when the server did not send it); any other CA (a private CA is
normal for IoT servers) is written only when its fingerprint was checked out of
band (``expect_fingerprint``) or the user says to trust it on first use.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import os
import re
import select
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from .errors import EspSecureError
from .fileio import PathLike, read_bytes, write_atomic

DEFAULT_HORIZON_YEARS = 10.0
# A device's service life: anything longer is a typo (and past what a date can hold).
MAX_HORIZON_YEARS = 100.0
DEFAULT_PORT = 443
DEFAULT_TIMEOUT = 10.0

# PEM armour lines; whitespace around them is tolerated (s_client output, hand edits).
_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_END = re.compile(r"-----END ([A-Z0-9 ]+)-----")
_CERT_LABELS = ("CERTIFICATE", "X509 CERTIFICATE")


@dataclass(frozen=True)
class PemBlock:
    """One ``-----BEGIN label-----`` ... ``-----END label-----`` block of a text file."""

    label: str
    body: str  # base64 text, whitespace removed
    line: int  # 1-based line of the BEGIN line


@dataclass(frozen=True)
class CertSummary:
    """What the build summary shows about one embedded certificate."""

    subject: str  # RFC 4514
    sha256: str  # lowercase hex of the SHA-256 of the DER
    not_after: datetime  # UTC

    @property
    def fingerprint(self) -> str:
        """SHA-256 as ``AB:CD:...``, the way openssl and browsers print it."""
        return ":".join(self.sha256[i : i + 2] for i in range(0, len(self.sha256), 2)).upper()

    def as_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "sha256": self.fingerprint, "not_after": _fmt_date(self.not_after)}


@dataclass(frozen=True)
class CertCheck:
    """Result of checking a certificate input: what to embed and what was noticed."""

    source: str
    chain: tuple[x509.Certificate, ...]  # everything read, in input order
    certificates: tuple[x509.Certificate, ...]  # what gets embedded
    warnings: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())  # how a fetched chain was trusted

    @property
    def pem(self) -> bytes:
        """Normalised PEM of the embedded certificates."""
        return normalized_pem(self.certificates)

    @property
    def summaries(self) -> tuple[CertSummary, ...]:
        return tuple(summarize(c) for c in self.certificates)


# --------------------------------------------------------------------------- parsing


def pem_blocks(text: str, source: str | None = None) -> list[PemBlock]:
    """All PEM blocks of ``text``; text around them (s_client output) is ignored.

    Line ends may be LF or CRLF and the last END line needs no newline.
    """
    blocks: list[PemBlock] = []
    label: str | None = None
    start = 0
    body: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if label is None:
            m = _BEGIN.fullmatch(line)
            if m:
                label, start, body = m.group(1), number, []
            continue
        if _BEGIN.fullmatch(line):
            raise EspSecureError(f"line {number}: BEGIN line inside the block that starts at line {start}", source)
        m = _END.fullmatch(line)
        if m:
            if m.group(1) != label:
                raise EspSecureError(f"line {number}: END {m.group(1)} closes BEGIN {label} of line {start}", source)
            blocks.append(PemBlock(label, "".join(body), start))
            label = None
        elif ":" in line and not body:
            # RFC 1421 headers (Proc-Type, DEK-Info) only occur in encrypted keys.
            continue
        else:
            body.append("".join(line.split()))
    if label is not None:
        raise EspSecureError(f"line {start}: BEGIN {label} has no END line", source)
    return blocks


def parse_certificates(data: bytes, source: PathLike | None = None) -> list[x509.Certificate]:
    """Certificates in a PEM text (one or many blocks, text around allowed) or a DER file."""
    where = os.fspath(source) if source is not None else None
    if not data.strip():
        raise EspSecureError("no certificate found: the input is empty", where)
    if b"-----BEGIN" in data:
        return _parse_pem(data.decode("utf-8", errors="replace"), where)
    if data[:1] == b"\x30":
        return [_parse_der(data, where)]
    raise EspSecureError("no certificate found (expected PEM '-----BEGIN CERTIFICATE-----' blocks or DER)", where)


def load_certificates(path: PathLike) -> list[x509.Certificate]:
    """Read a PEM, DER, PEM bundle or saved ``s_client -showcerts`` output."""
    return parse_certificates(read_bytes(path, "certificate file"), path)


def _parse_pem(text: str, where: str | None) -> list[x509.Certificate]:
    blocks = pem_blocks(text, where)
    for block in blocks:
        if "PRIVATE KEY" in block.label:
            # Never echo any of it: name the block only.
            raise EspSecureError(
                f"line {block.line}: a private key ({block.label}) where a certificate is expected", where
            )
    certs: list[x509.Certificate] = []
    for block in blocks:
        if block.label not in _CERT_LABELS:
            continue
        n = len(certs) + 1
        try:
            der = base64.b64decode(block.body, validate=True)
        except (binascii.Error, ValueError):
            raise EspSecureError(f"certificate {n} (line {block.line}): broken base64 body", where) from None
        try:
            certs.append(_load_der(der))
        except ValueError:
            raise EspSecureError(f"certificate {n} (line {block.line}): not a valid X.509 certificate", where) from None
    if not certs:
        others = sorted({b.label for b in blocks})
        found = f" (found {', '.join(others)})" if others else ""
        raise EspSecureError(f"no certificate found{found}", where)
    return certs


def _parse_der(data: bytes, where: str | None) -> x509.Certificate:
    try:
        return _load_der(data)
    except ValueError:
        pass
    if _is_der_private_key(data):
        raise EspSecureError("a private key (DER) where a certificate is expected", where)
    raise EspSecureError("not a valid X.509 certificate (DER)", where)


def _load_der(der: bytes) -> x509.Certificate:
    """A DER certificate; ValueError also for a broken name or date."""
    cert = x509.load_der_x509_certificate(der)
    # cryptography parses names and dates on first use: a broken one would be a
    # ValueError deep in a later check, so touch them while a parse error is expected.
    _ = cert.subject, cert.issuer, not_before(cert), not_after(cert)
    return cert


def _is_der_private_key(data: bytes) -> bool:
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:
        return True  # an encrypted key: still a key
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


# --------------------------------------------------------------------------- checks


def summarize(cert: x509.Certificate) -> CertSummary:
    """Subject, SHA-256 fingerprint and expiry of one certificate."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertSummary(_subject(cert), hashlib.sha256(der).hexdigest(), not_after(cert))


def normalized_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """One block per certificate, 64-column base64, LF line ends, trailing newline."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def not_before(cert: x509.Certificate) -> datetime:
    value = getattr(cert, "not_valid_before_utc", None)  # cryptography >= 42
    return value if value is not None else cert.not_valid_before.replace(tzinfo=timezone.utc)


def not_after(cert: x509.Certificate) -> datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=timezone.utc)


def is_self_issued(cert: x509.Certificate) -> bool:
    """Issuer name equals subject name: the certificate presents itself as a root."""
    return cert.issuer == cert.subject


def is_issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer``'s name and key signed ``child``."""
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, InvalidSignature):
        return False
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise EspSecureError(f"cannot check the signature of {_subject(child)!r}: {exc}") from None
    return True


def check_horizon(years: float, what: str = "horizon") -> float:
    """A service-life horizon in years: 0 to MAX_HORIZON_YEARS."""
    if not 0 <= years <= MAX_HORIZON_YEARS:  # also refuses NaN
        raise EspSecureError(f"{what} of {years:g} years is out of range (0 to {MAX_HORIZON_YEARS:g})")
    return years


def horizon_date(now: datetime, years: float) -> datetime:
    """``now`` plus ``years`` (calendar years, then the fraction in days)."""
    check_horizon(years)
    whole = int(years)
    try:
        date = now.replace(year=now.year + whole)
    except ValueError:  # 29 February
        date = now.replace(year=now.year + whole, day=28)
    return date + timedelta(days=(years - whole) * 365.2425)


def check_ca_certificate(
    cert: x509.Certificate,
    *,
    label: str = "certificate",
    source: PathLike | None = None,
    horizon_years: float = DEFAULT_HORIZON_YEARS,
    now: datetime | None = None,
) -> list[str]:
    """Checks for one certificate a device will trust; returns the warnings.

    ``label`` names it in messages (e.g. "certificate 3 of 3").
    """
    where = os.fspath(source) if source is not None else None
    now = now or datetime.now(timezone.utc)
    name = f"{label} ({_subject(cert)})"
    prefix = f"{where}: " if where else ""
    warnings: list[str] = []
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bc.ca
    except x509.ExtensionNotFound:
        is_ca = False
    except ValueError:  # a malformed extension
        raise EspSecureError(f"{name}: malformed extensions", where) from None
    if not is_ca:
        raise EspSecureError(
            f"{name} is not a CA (no basicConstraints CA:TRUE): a server's own certificate cannot be a trust anchor",
            where,
        )
    if is_self_issued(cert):
        if not is_issued_by(cert, cert):
            raise EspSecureError(f"{name} names itself as issuer but its self-signature does not verify", where)
    else:
        warnings.append(
            f"{prefix}{name} is not self-signed (issued by {_name(cert.issuer)}): not the root of its chain"
        )
    start, end = not_before(cert), not_after(cert)
    if now < start:
        raise EspSecureError(f"{name} is not yet valid (valid from {_fmt_date(start)})", where)
    if now > end:
        raise EspSecureError(f"{name} expired on {_fmt_date(end)}", where)
    if end < horizon_date(now, horizon_years):
        warnings.append(f"{prefix}{name} expires on {_fmt_date(end)}, within the {horizon_years:g}-year horizon")
    return warnings


def check_chain_order(certs: Sequence[x509.Certificate], source: PathLike | None = None) -> bool:
    """For a chain, each certificate must be signed by the next; returns True when it is a chain.

    A list where every certificate is self-issued is a bundle of roots, not a
    chain, and has no order (returns False).
    """
    if len(certs) < 2 or all(is_self_issued(c) for c in certs):
        return False
    where = os.fspath(source) if source is not None else None
    for i in range(len(certs) - 1):
        if not is_issued_by(certs[i], certs[i + 1]):
            if certs[i].issuer == certs[i + 1].subject:
                raise EspSecureError(
                    f"broken chain: certificate {i + 1} ({_subject(certs[i])}) names certificate {i + 2} "
                    f"({_subject(certs[i + 1])}) as issuer but its signature does not verify with that key",
                    where,
                )
            raise EspSecureError(
                f"chain out of order: certificate {i + 1} ({_subject(certs[i])}) is not signed by "
                f"certificate {i + 2} ({_subject(certs[i + 1])})",
                where,
            )
    return True


def check_certificates(
    certs: Sequence[x509.Certificate],
    *,
    source: PathLike | None = None,
    keep_bundle: bool = False,
    horizon_years: float = DEFAULT_HORIZON_YEARS,
    now: datetime | None = None,
) -> CertCheck:
    """Pick what to embed (the last certificate, or all with ``keep_bundle``) and check it."""
    where = os.fspath(source) if source is not None else "<input>"
    if not certs:
        raise EspSecureError("no certificate found", where)
    check_chain_order(certs, source)
    chosen = list(certs) if keep_bundle else [certs[-1]]
    total = len(certs)
    warnings: list[str] = []
    for cert in chosen:
        index = next(i for i, c in enumerate(certs) if c is cert) + 1
        label = "certificate" if total == 1 else f"certificate {index} of {total}"
        warnings += check_ca_certificate(cert, label=label, source=source, horizon_years=horizon_years, now=now)
    return CertCheck(where, tuple(certs), tuple(chosen), tuple(warnings))


def check_file(
    path: PathLike,
    *,
    keep_bundle: bool = False,
    horizon_years: float = DEFAULT_HORIZON_YEARS,
    now: datetime | None = None,
) -> CertCheck:
    """Load and check a certificate file (see :func:`check_certificates`)."""
    certs = load_certificates(path)
    return check_certificates(certs, source=path, keep_bundle=keep_bundle, horizon_years=horizon_years, now=now)


def write_checked_pem(
    source: PathLike,
    target: PathLike,
    *,
    keep_bundle: bool = False,
    horizon_years: float = DEFAULT_HORIZON_YEARS,
    now: datetime | None = None,
) -> CertCheck:
    """Check ``source`` and write the normalised PEM to ``target`` (atomically; nothing on error)."""
    result = check_file(source, keep_bundle=keep_bundle, horizon_years=horizon_years, now=now)
    write_atomic(target, result.pem)
    return result


# --------------------------------------------------------------------------- fetching


def parse_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    host, port_text = text, ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or (close + 1 < len(text) and text[close + 1] != ":"):
            raise EspSecureError(f"bad address {text!r}: expected [IPv6]:PORT")
        host, port_text = text[1:close], text[close + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise EspSecureError(f"bad address {text!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise EspSecureError(f"bad port {port_text!r} in {text!r}")
    return host, int(port_text)


def fetch_chain(
    host: str, port: int = DEFAULT_PORT, *, timeout: float = DEFAULT_TIMEOUT, server_name: str | None = None
) -> list[x509.Certificate]:
    """The certificate chain a TLS server presents, in the order it sends it (leaf first).

    Nothing is verified here: the chain is what we want to inspect, not trust.
    ``server_name`` is the SNI name (default: ``host`` unless it is an IP address).
    """
    try:
        from OpenSSL import SSL
    except ImportError:
        raise EspSecureError("fetching a certificate needs pyOpenSSL (pip install pyopenssl)") from None
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        raise EspSecureError(f"cannot resolve host: {exc.strerror}", where) from None
    except TimeoutError:
        raise EspSecureError(f"no connection within {timeout:g} s", where) from None
    except OSError as exc:
        raise EspSecureError(f"cannot connect: {exc.strerror or exc}", where) from None
    with sock:
        sock.setblocking(False)
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)
        conn = SSL.Connection(ctx, sock)
        sni = server_name if server_name is not None else (None if _is_ip(host) else host)
        if sni:
            conn.set_tlsext_host_name(sni.encode("idna"))
        conn.set_connect_state()
        while True:
            try:
                conn.do_handshake()
                break
            except (SSL.WantReadError, SSL.WantWriteError) as want:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EspSecureError(f"TLS handshake not done within {timeout:g} s", where) from None
                reading = isinstance(want, SSL.WantReadError)
                select.select([sock] if reading else [], [] if reading else [sock], [], left)
            except SSL.SysCallError as exc:
                raise EspSecureError(f"TLS handshake failed: connection closed ({exc.args[-1]})", where) from None
            except SSL.Error as exc:
                raise EspSecureError(f"TLS handshake failed: {_ssl_reason(exc)}", where) from None
        try:
            chain = conn.get_peer_cert_chain(as_cryptography=True)  # pyOpenSSL >= 24.3
        except TypeError:
            chain = [c.to_cryptography() for c in conn.get_peer_cert_chain() or []]
        with contextlib.suppress(SSL.Error):
            conn.shutdown()  # courtesy only: the chain is all we came for
    if not chain:
        raise EspSecureError("the server presented no certificate", where)
    return list(chain)


def fetch_ca(
    address: str,
    target: PathLike,
    *,
    keep_bundle: bool = False,
    horizon_years: float = DEFAULT_HORIZON_YEARS,
    timeout: float = DEFAULT_TIMEOUT,
    server_name: str | None = None,
    now: datetime | None = None,
    expect_fingerprint: str | None = None,
    trust_on_first_use: bool = False,
    trust_store: Sequence[x509.Certificate] | None = None,
) -> CertCheck:
    """``openssl s_client -showcerts`` done right: fetch, verify, pick the root, check, write.

    ``trust_store`` defaults to the system's (:func:`system_trust_store`); the
    result's ``notes`` say how the chain was trusted.
    """
    host, port = parse_host_port(address)
    where = f"{host}:{port}"
    chain = fetch_chain(host, port, timeout=timeout, server_name=server_name)
    check_chain_order(chain, where)
    name = server_name or host
    if not certificate_matches_host(chain[0], name):
        raise EspSecureError(
            f"the certificate presented ({_subject(chain[0])}) is not valid for {name} "
            f"(it names {', '.join(_host_names(chain[0])) or 'no host'}): not the server asked for",
            where,
        )
    store = system_trust_store() if trust_store is None else list(trust_store)
    anchor, in_store = _trust_anchor(chain, store)
    full = list(chain) if anchor is chain[-1] else [*chain, anchor]
    result = check_certificates(full, source=where, keep_bundle=keep_bundle, horizon_years=horizon_years, now=now)
    fingerprint = summarize(anchor).fingerprint
    if expect_fingerprint is not None:
        if _normal_fingerprint(expect_fingerprint) != fingerprint.replace(":", ""):
            raise EspSecureError(
                f"the chain ends in {_subject(anchor)} (SHA-256 {fingerprint}), not the expected "
                f"{expect_fingerprint}: someone else answered (a TLS-intercepting proxy?)",
                where,
            )
        notes = [f"CA fingerprint matches --expect-fingerprint ({_subject(anchor)})"]
    elif in_store:
        notes = [f"the chain ends in {_subject(anchor)}, which the system trust store knows"]
        if anchor is not chain[-1]:
            notes.append("the server did not send its root: taken from the system trust store")
    elif trust_on_first_use:
        notes = [f"trusted on first use: {_subject(anchor)}, SHA-256 {fingerprint}; check it out of band"]
    else:
        raise EspSecureError(
            f"the chain ends in {_subject(anchor)} (SHA-256 {fingerprint}), which the system trust store "
            "does not know (a private CA, or a TLS-intercepting proxy): check the fingerprint out of band, "
            "then rerun with --expect-fingerprint FINGERPRINT (or --trust-on-first-use)",
            where,
        )
    result = CertCheck(result.source, result.chain, result.certificates, result.warnings, tuple(notes))
    write_atomic(target, result.pem)
    return result


def certificate_matches_host(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 matching on the subjectAltName (no common-name fallback, as browsers do)."""
    if _is_ip(host):
        address = ipaddress.ip_address(host)
        return any(isinstance(n, x509.IPAddress) and n.value == address for n in _san(cert))
    wanted = host.rstrip(".").lower().split(".")
    for pattern in _host_names(cert):
        labels = pattern.rstrip(".").lower().split(".")
        if len(labels) != len(wanted):
            continue
        # A wildcard only as the whole left-most label, and never directly under a top-level name.
        if labels[0] == "*" and len(labels) > 2 and labels[1:] == wanted[1:]:
            return True
        if labels == wanted:
            return True
    return False


def system_trust_store() -> list[x509.Certificate]:
    """The CA certificates OpenSSL trusts on this machine (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured)."""
    import ssl

    paths = ssl.get_default_verify_paths()
    files: list[str] = []
    if paths.cafile:
        files.append(paths.cafile)
    elif paths.capath and os.path.isdir(paths.capath):
        files += sorted(os.path.join(paths.capath, n) for n in os.listdir(paths.capath) if n.endswith(".0"))
    import warnings

    found: list[x509.Certificate] = []
    for name in files:
        try:
            with open(name, "rb") as handle, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # old roots with odd serials: not ours to report
                found += x509.load_pem_x509_certificates(handle.read())
        except (OSError, ValueError):
            continue  # the store is a hint, not an input: an odd file only means "not known"
    return found


def _trust_anchor(
    chain: Sequence[x509.Certificate], store: Sequence[x509.Certificate]
) -> tuple[x509.Certificate, bool]:
    """The root of ``chain`` (from ``store`` when the server omitted it) and whether ``store`` knows it."""
    known = {c.fingerprint(hashes.SHA256()) for c in store}
    last = chain[-1]
    if any(c.fingerprint(hashes.SHA256()) in known for c in chain[1:] or chain):
        return last, True
    if not is_self_issued(last):
        for candidate in store:
            if candidate.subject == last.issuer and is_issued_by(last, candidate):
                return candidate, True
    return last, False


def _san(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except (x509.ExtensionNotFound, ValueError):
        return []


def _host_names(cert: x509.Certificate) -> list[str]:
    names = _san(cert)
    return [n.value for n in names if isinstance(n, x509.DNSName)] + [
        str(n.value) for n in names if isinstance(n, x509.IPAddress)
    ]


def _normal_fingerprint(text: str) -> str:
    return re.sub(r"[\s:]", "", text).upper()


# --------------------------------------------------------------------------- helpers


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ssl_reason(exc: Exception) -> str:
    # pyOpenSSL errors carry a list of (lib, func, reason) tuples.
    try:
        reasons = [str(item[-1]) for item in exc.args[0] if item]
    except (IndexError, TypeError):
        reasons = []
    return "; ".join(reasons) or str(exc) or type(exc).__name__


def _name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string() or "empty name"
    except ValueError:
        return "unprintable name"


def _subject(cert: x509.Certificate) -> str:
    return _name(cert.subject)


def _fmt_date(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
