"""Intel HEX: output byte-identical with what ``esptool merge-bin --format hex`` writes, and a strict reader.

esptool writes through the ``intelhex`` package: 16-byte data records starting at
each contiguous run's first address, never crossing a 64 KiB page (a short record
ends a page or a run), an extended linear address record (type 04) before the
first record of every page when any address is above 0xFFFF, upper-case hex,
``\\n`` line ends, and the end-of-file record. ``intelhex`` formats record by
record at about 1.5 MB/s; here each page's records are laid out as binary in a
few slice operations and hex-encoded in one call, so a 16 MiB factory image
takes a fraction of a second. :func:`decode` reads a file back strictly (checksums,
record types, the end record) for ``verify-release``; merge-bin's Intel HEX inputs
go through ``intelhex``, as esptool's do, so that odd files merge as they do there.
"""

from __future__ import annotations

import binascii
import hashlib
import sys
from array import array
from collections.abc import Iterable

from .errors import EspSecureError

_RECORD = 16
_PAGE = 0x10000
# (-x) & 0xFF for every byte value: a record's checksum from its byte sum.
_NEGATE = bytes(-v & 0xFF for v in range(256))
# High and low address byte of the i-th 16-byte record of a page.
_HIGH = b"".join(bytes([h]) * (256 // _RECORD) for h in range(256))
_LOW = bytes(range(0, 256, _RECORD)) * 256
# SHA-256 of the last few outputs of encode() by the SHA-256 of their input.
_WRITTEN: dict[bytes, bytes] = {}


def encode(regions: Iterable[tuple[int, bytes]]) -> bytes:
    """Intel HEX text (ASCII bytes) for non-overlapping ``(address, data)`` regions."""
    runs = _runs(regions)
    text = _encode_runs(runs)
    if len(_WRITTEN) >= 4:
        _WRITTEN.clear()
    _WRITTEN[_runs_digest(runs)] = hashlib.sha256(text).digest()
    return text


def is_encoding(hex_data: bytes, regions: Iterable[tuple[int, bytes]]) -> bool:
    """True when ``hex_data`` is exactly what :func:`encode` gives for ``regions``.

    A file this process has just written (the build's closing verification) is
    compared by SHA-256 with what :func:`encode` made, not formatted again.
    """
    runs = _runs(regions)
    known = _WRITTEN.get(_runs_digest(runs))
    if known is not None:
        return hashlib.sha256(hex_data).digest() == known
    return _encode_runs(runs) == hex_data


def _runs(regions: Iterable[tuple[int, bytes]]) -> list[tuple[int, bytearray]]:
    runs: list[tuple[int, bytearray]] = []
    for address, data in sorted((a, d) for a, d in regions if d):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].extend(data)  # adjacent regions form one run, as intelhex merges them
        else:
            runs.append((address, bytearray(data)))
    return runs


def _runs_digest(runs: list[tuple[int, bytearray]]) -> bytes:
    h = hashlib.sha256()
    for start, data in runs:
        h.update(start.to_bytes(8, "little") + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def _encode_runs(runs: list[tuple[int, bytearray]]) -> bytes:
    if not runs:
        return b":00000001FF\n"
    extended = runs[-1][0] + len(runs[-1][1]) - 1 > 0xFFFF
    parts: list[str] = []
    page_written = -1
    for start, data in runs:
        position, end = start, start + len(data)
        while position < end:
            page = position >> 16
            if extended and page != page_written:
                parts.append(_record(0x04, 0, page.to_bytes(2, "big")))
                page_written = page
            stop = min(end, (page + 1) * _PAGE)
            parts.append(_data_records(position & 0xFFFF, memoryview(data)[position - start : stop - start]))
            position = stop
    parts.append(":00000001FF\n")
    return "".join(parts).encode("ascii")


def _record(kind: int, offset: int, payload: bytes) -> str:
    body = bytes([len(payload), offset >> 8, offset & 0xFF, kind]) + payload
    return ":" + (body + bytes([-sum(body) & 0xFF])).hex().upper() + "\n"


def _data_records(offset: int, data: memoryview) -> str:
    """Data records for ``data`` at ``offset`` within one 64 KiB page."""
    n, tail = divmod(len(data), _RECORD)
    text = ""
    if n:
        width = 5 + _RECORD
        rec = bytearray(width * n)
        if offset % _RECORD == 0:  # the usual case: record addresses from the tables
            first = offset // _RECORD
            high, low = _HIGH[first : first + n], _LOW[first : first + n]
        else:
            addresses = array("H", range(offset, offset + _RECORD * n, _RECORD))
            if sys.byteorder == "little":
                addresses.byteswap()  # big-endian: high byte first, as records hold it
            addr_bytes = addresses.tobytes()
            high, low = addr_bytes[0::2], addr_bytes[1::2]
        # Strided slices of bytes, not of the memoryview: ten times faster.
        flat = bytes(data[: _RECORD * n])
        columns = [flat[k::_RECORD] for k in range(_RECORD)]
        rec[0::width] = bytes([_RECORD]) * n
        rec[1::width] = high
        rec[2::width] = low
        for k, column in enumerate(columns):
            rec[4 + k :: width] = column
        # Checksums of all records at once: each byte column widened to 16-bit
        # lanes of one big integer (no lane can overflow), summed, low bytes kept.
        wide = bytearray(2 * n)
        total = int.from_bytes(bytes([_RECORD, 0]) * n, "little")
        for column in (high, low, *columns):
            wide[0::2] = column
            total += int.from_bytes(wide, "little")
        rec[width - 1 :: width] = total.to_bytes(2 * n, "little")[0::2].translate(_NEGATE)
        text = ":" + rec.hex("\n", width).upper().replace("\n", "\n:") + "\n"
    if tail:
        text += _record(0x00, offset + _RECORD * n, bytes(data[_RECORD * n :]))
    return text


def decode(data: bytes, path: str | None = None) -> dict[int, bytes]:
    """Data records of an Intel HEX file as {address: bytes} (one item per record, merged later).

    Record checksums, types 00-05, and the end record are checked.
    """
    out: dict[int, bytes] = {}
    upper = 0
    ended = False
    for number, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if ended:
            raise EspSecureError(f"Intel HEX line {number}: data after the end record", path)
        try:
            if line[:1] != b":":
                raise ValueError
            record = binascii.unhexlify(line[1:])
        except (ValueError, binascii.Error):
            raise EspSecureError(f"Intel HEX line {number}: not a record", path) from None
        if len(record) < 5 or len(record) != record[0] + 5 or sum(record) & 0xFF:
            raise EspSecureError(f"Intel HEX line {number}: bad length or checksum", path)
        kind, payload = record[3], record[4:-1]
        if kind == 0:
            out[upper + (record[1] << 8 | record[2])] = payload
        elif kind == 1:
            ended = True
        elif kind == 2 and len(payload) == 2:
            upper = int.from_bytes(payload, "big") << 4
        elif kind == 4 and len(payload) == 2:
            upper = int.from_bytes(payload, "big") << 16
        elif kind not in (3, 5):
            raise EspSecureError(f"Intel HEX line {number}: unknown record type {kind:#04x}", path)
    if not ended:
        raise EspSecureError("Intel HEX file has no end record (truncated?)", path)
    return out
