"""ESP-IDF ``esp_crt_bundle`` files: several trusted CAs in one compact binary.

Same input handling and bytes as ESP-IDF's ``gen_crt_bundle.py``:

* inputs are files or folders; a folder contributes its ``*.pem`` and ``*.der`` files;
* ``--filter CSV`` keeps, from an input file named exactly ``cacrt_all.pem`` (blocks
  of ``name`` / a line of ``=`` / the PEM), the names listed in the CSV's second
  column (its first line is a header);
* only each certificate's subject Name and SubjectPublicKeyInfo are kept, in DER,
  sorted by the subject's DER bytes (a stable sort: equal subjects keep input
  order; duplicates are kept).

Formats:

* current: ``N`` uint32 LE offsets from the start of the file (the first is ``4*N``),
  then per certificate uint16 LE subject length, uint16 LE key length, subject, key;
* legacy (ESP-IDF releases before the offset table): uint16 BE count, then per
  certificate uint16 BE subject length, uint16 BE key length, subject, key.

Where ours differs on purpose: a last certificate whose END line has no newline is
kept (the script drops it silently); PEM armour lines with surrounding whitespace
or CRLF are accepted; a file given by name is read as PEM or DER by its content,
whatever its extension (the script ignores other extensions silently); a PEM with
no certificate, an empty selection, or too many certificates is a one-line error.
"""

from __future__ import annotations

import csv
import io
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import certs as certmod
from .errors import EspSecureError
from .fileio import PathLike, read_bytes, read_text, write_atomic

DEFAULT_MAX_CERTS = 200  # gen_crt_bundle.py's default (CONFIG_MBEDTLS_CERTIFICATE_BUNDLE_MAX_CERTS)
LEGACY_MAX_CERTS = 0xFFFF  # the legacy count field is 16 bits
FILTERED_NAME = "cacrt_all.pem"  # the only file --filter applies to, as in ESP-IDF
BUNDLE_FILE_NAME = "x509_crt_bundle"  # what ESP-IDF calls the output


@dataclass(frozen=True)
class BundleEntry:
    """One certificate going into a bundle and where it came from."""

    certificate: x509.Certificate
    source: str

    @property
    def subject_der(self) -> bytes:
        return self.certificate.subject.public_bytes()

    @property
    def public_key_der(self) -> bytes:
        try:
            key = self.certificate.public_key()
        except (ValueError, TypeError) as exc:
            raise EspSecureError(f"unsupported public key: {exc}", self.source) from None
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class BundleResult:
    """A built bundle, its entries in bundle (sorted) order, and check warnings."""

    data: bytes
    entries: tuple[BundleEntry, ...]
    legacy: bool
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- reading inputs


def read_inputs(paths: Iterable[PathLike], filter_csv: PathLike | None = None) -> list[BundleEntry]:
    """Certificates from files and folders, in the order gen_crt_bundle.py reads them.

    Folder contents are taken in name order (the script uses the file system's
    order; only certificates with equal subjects can tell the difference).
    """
    names = read_filter(filter_csv) if filter_csv is not None else None
    entries: list[BundleEntry] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            try:
                files = sorted(f for f in p.iterdir() if f.name.endswith((".pem", ".der")) and f.is_file())
            except OSError as exc:
                raise EspSecureError(f"cannot list folder: {exc.strerror}", p) from None
            if not files:
                raise EspSecureError("no .pem or .der certificate files in folder", p)
            for f in files:
                entries += _read_file(f, names)
        elif p.is_file():
            entries += _read_file(p, names)
        else:
            raise EspSecureError("input is neither a file nor a folder", p)
    return entries


def read_filter(path: PathLike) -> set[str]:
    """Names in the second column of a filter CSV (first line is a header)."""
    rows = list(csv.reader(io.StringIO(read_text(path, "filter CSV"))))
    names = {row[1] for row in rows[1:] if len(row) >= 2}
    if not names:
        raise EspSecureError("filter CSV lists no certificate names (second column, after the header)", path)
    return names


def _read_file(path: Path, names: set[str] | None) -> list[BundleEntry]:
    data = read_bytes(path, "certificate file")
    if names is not None and path.name == FILTERED_NAME:
        return [BundleEntry(c, str(path)) for c in filter_cacrt_all(data, names, path)]
    return [BundleEntry(c, str(path)) for c in certmod.parse_certificates(data, path)]


def filter_cacrt_all(data: bytes, names: set[str], source: PathLike | None = None) -> list[x509.Certificate]:
    """Certificates of a ``cacrt_all.pem`` whose title line is in ``names``.

    Each entry is a title line, a line of ``=``, then the PEM block; as in
    ESP-IDF, the first certificate after a title belongs to it.
    """
    where = os.fspath(source) if source is not None else None
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    titles = [(i + 2, lines[i]) for i in range(len(lines) - 1) if lines[i] and _is_rule(lines[i + 1])]
    blocks = [b for b in certmod.pem_blocks(text, where) if b.label in ("CERTIFICATE", "X509 CERTIFICATE")]
    chosen: list[certmod.PemBlock] = []
    for k, (rule_line, title) in enumerate(titles):
        next_title = titles[k + 1][0] - 1 if k + 1 < len(titles) else len(lines) + 1
        block = next((b for b in blocks if rule_line < b.line < next_title), None)
        if block is not None and title in names:
            chosen.append(block)
    if not chosen:
        raise EspSecureError("the filter selected no certificate", where)
    pem = "".join(f"-----BEGIN {b.label}-----\n{b.body}\n-----END {b.label}-----\n" for b in chosen)
    return certmod.parse_certificates(pem.encode(), where)


def _is_rule(line: str) -> bool:
    return bool(line) and set(line) == {"="}


# --------------------------------------------------------------------------- the format


def build_bundle(entries: Sequence[BundleEntry], *, legacy: bool = False) -> tuple[bytes, list[BundleEntry]]:
    """The bundle bytes and the entries in the order they were written."""
    parts = [(e, e.subject_der, e.public_key_der) for e in entries]
    # sorted() is stable, like the script's: equal subjects keep their input order.
    parts.sort(key=lambda p: p[1])
    for entry, name, key in parts:
        if len(name) > 0xFFFF or len(key) > 0xFFFF:
            raise EspSecureError("subject or public key longer than 65535 bytes", entry.source)
    if legacy:
        if len(parts) > LEGACY_MAX_CERTS:
            raise EspSecureError(f"{len(parts)} certificates: the legacy format holds at most {LEGACY_MAX_CERTS}")
        out = bytearray(struct.pack(">H", len(parts)))
        for _, name, key in parts:
            out += struct.pack(">HH", len(name), len(key)) + name + key
        return bytes(out), [p[0] for p in parts]
    body = bytearray()
    offsets: list[int] = []
    table = 4 * len(parts)
    for _, name, key in parts:
        offsets.append(table + len(body))
        body += struct.pack("<HH", len(name), len(key)) + name + key
    return struct.pack(f"<{len(offsets)}L", *offsets) + bytes(body), [p[0] for p in parts]


def parse_bundle(data: bytes, *, legacy: bool = False) -> list[tuple[bytes, bytes]]:
    """(subject DER, public key DER) of each entry of a bundle file."""
    entries: list[tuple[bytes, bytes]] = []
    if legacy:
        if len(data) < 2:
            raise EspSecureError("legacy bundle shorter than its count field")
        (count,) = struct.unpack_from(">H", data)
        pos = 2
        for _ in range(count):
            pos = _parse_entry(data, pos, ">HH", entries)
        if pos != len(data):
            raise EspSecureError(f"legacy bundle has {len(data) - pos} bytes after its {count} entries")
        return entries
    if not data:
        return entries
    if len(data) < 4:
        raise EspSecureError("bundle shorter than its offset table")
    (first,) = struct.unpack_from("<L", data)
    if first % 4 or not 4 <= first <= len(data):
        raise EspSecureError(f"bad first offset {first} in bundle")
    offsets = struct.unpack_from(f"<{first // 4}L", data)
    for n, offset in enumerate(offsets):
        end = _parse_entry(data, offset, "<HH", entries)
        if n + 1 < len(offsets) and offsets[n + 1] != end:
            raise EspSecureError(f"bundle entry {n + 1} does not end at the next offset")
    return entries


def _parse_entry(data: bytes, pos: int, fmt: str, out: list[tuple[bytes, bytes]]) -> int:
    if pos + 4 > len(data):
        raise EspSecureError(f"bundle entry at offset {pos} is cut short")
    name_len, key_len = struct.unpack_from(fmt, data, pos)
    pos += 4
    if pos + name_len + key_len > len(data):
        raise EspSecureError(f"bundle entry at offset {pos - 4} is cut short")
    out.append((data[pos : pos + name_len], data[pos + name_len : pos + name_len + key_len]))
    return pos + name_len + key_len


# --------------------------------------------------------------------------- all together


def make_bundle(
    inputs: Iterable[PathLike],
    *,
    filter_csv: PathLike | None = None,
    max_certs: int | None = None,
    legacy: bool = False,
    check: bool = True,
    horizon_years: float = certmod.DEFAULT_HORIZON_YEARS,
    now: datetime | None = None,
) -> BundleResult:
    """Read, check and pack certificates into a bundle (nothing is written).

    ``max_certs`` defaults to 200 (the script's default) for the current format
    and to the 16-bit count limit for the legacy one (its script has no limit).
    ``check`` runs the CA checks of :mod:`esp_secure_build.certs` on each
    certificate; switch it off to pack whatever parses, as the script does.
    """
    entries = read_inputs(inputs, filter_csv)
    if not entries:
        raise EspSecureError("no certificates to put in the bundle")
    limit = max_certs if max_certs is not None else (LEGACY_MAX_CERTS if legacy else DEFAULT_MAX_CERTS)
    if len(entries) > limit:
        raise EspSecureError(f"{len(entries)} certificates exceed the maximum of {limit} (--max-certs)")
    warnings: list[str] = []
    if check:
        for entry in entries:
            warnings += certmod.check_ca_certificate(
                entry.certificate, source=entry.source, horizon_years=horizon_years, now=now
            )
    data, ordered = build_bundle(entries, legacy=legacy)
    return BundleResult(data, tuple(ordered), legacy, tuple(warnings))


def write_bundle(
    target: PathLike,
    inputs: Iterable[PathLike],
    *,
    filter_csv: PathLike | None = None,
    max_certs: int | None = None,
    legacy: bool = False,
    check: bool = True,
    horizon_years: float = certmod.DEFAULT_HORIZON_YEARS,
    now: datetime | None = None,
) -> BundleResult:
    """:func:`make_bundle`, then write the result atomically to ``target``."""
    result = make_bundle(
        inputs, filter_csv=filter_csv, max_certs=max_certs, legacy=legacy, check=check,
        horizon_years=horizon_years, now=now,
    )  # fmt: skip
    write_atomic(target, result.data)
    return result
