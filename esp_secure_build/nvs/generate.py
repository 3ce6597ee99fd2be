"""CSV rows -> NVS partition, byte-identical with esp-idf-nvs-partition-gen 0.3.0.

Everything accepted here is written exactly as the reference writes it. Inputs
on which the reference crashes or writes something the device cannot read as
intended are refused with the CSV file, the line and the problem; the list is
in docs/nvs.md.
"""

from __future__ import annotations

import binascii
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import EspSecureError
from ..fileio import MAX_FLASH_SIZE, MB, PathLike, read_bytes, read_key_bytes
from .csvfile import CsvRow, read_nvs_csv
from .layout import (
    KEY_MAX_LEN,
    MAX_VARLEN,
    PRIMITIVES,
    TYPE_SZ,
    NoRoom,
    NvsWriter,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (CLI start-up)
if TYPE_CHECKING:
    from .crypto import NvsKeys

TYPES = ("namespace", "data", "file")
ENCODINGS = (*PRIMITIVES, "string", "binary", "hex2bin", "base64", "blob_fill(N;0xPP)", "blob_sz_fill(N;0xPP)")
# Namespace index 0 holds the namespace entries and 255 means "any" on the device.
MAX_NAMESPACES = 254
# A string's header plus payload must leave a page's last slot free (see layout.add_single).
MAX_STRING_V2 = 124 * 32
_FILL = re.compile(r"(blob_fill|blob_sz_fill)\((\d+);(0x[0-9a-fA-F]{2})\)")
# Keys for which the reference adds entries of its own (ESP-IDF Wi-Fi driver storage).
_AP_KEYS = ("ap.ssid", "ap.passwd", "ap.authmode")
_STA_KEYS = ("sta.ssid", "sta.pswd")
_STA_EXTRAS = (("sta.apinfo", b"\xff" * 140), ("sta.pmk", b"\x00" * 32), ("sta.apsw", b"\x00\x00"))


def parse_size(text: str | int, what: str = "partition size") -> int:
    """An NVS partition size: a non-zero multiple of 4096 (``int(x, 0)`` syntax)."""
    try:
        size = text if isinstance(text, int) else int(str(text), 0)
    except ValueError:
        raise EspSecureError(f"{what} {text!r} is not a number") from None
    if size < 4096 or size % 4096:
        raise EspSecureError(f"{what} {size:#x} must be a non-zero multiple of 4096 (0x1000)")
    if size > MAX_FLASH_SIZE:
        raise EspSecureError(f"{what} {size:#x} is larger than any flash ({MAX_FLASH_SIZE // MB} MiB)")
    return size


class NvsBuilder:
    """Feeds CSV rows into an :class:`NvsWriter`, keeping the reference's state.

    Namespaces and the Wi-Fi extras carry over between CSV files, as when the
    reference is given several inputs.
    """

    def __init__(self, size: int, version: int = 2, base_dir: PathLike | None = None):
        self.writer = NvsWriter(size, version)
        self.version = version
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self._namespaces: dict[str, int] = {}
        self._names: list[str] = []
        self._sta_extras_done = False
        self._ap: dict[str, str | None] = {"ap.ssid": None, "ap.passwd": None, "ap.authmode": None}

    # -- rows --------------------------------------------------------------
    def add_rows(self, rows: Iterable[CsvRow]) -> None:
        for row in rows:
            self.add_row(row)

    def add_row(self, row: CsvRow) -> None:
        key = row.key
        if key is None or key == "":
            raise row.error("empty key")
        if len(key) > KEY_MAX_LEN:
            raise row.error(f"key {key!r} is longer than {KEY_MAX_LEN} characters")
        if not key.isascii():
            raise row.error(f"key {key!r} is not ASCII")
        if row.type not in TYPES:
            raise row.error(f"key {key!r}: unknown type {row.type!r} (expected namespace, data or file)")
        if row.type == "namespace":
            if key in _AP_KEYS or key in _STA_KEYS:
                raise row.error(f"namespace name {key!r} is a Wi-Fi key the reference tool rewrites; rename it")
            self._namespace(row, key)
            return
        if not self._names:
            raise row.error(f"key {key!r} comes before any namespace row")
        ns = len(self._names)  # entries always go to the newest namespace
        if key in _AP_KEYS or key in _STA_KEYS:
            if row.type == "file":
                raise row.error(f"Wi-Fi key {key!r} must be a data row (the reference writes the file name)")
            if key in _AP_KEYS:
                self._ap_row(row, key, ns)
        self._write(row, key, ns)
        if key in _STA_KEYS and not self._sta_extras_done:
            # The reference follows the first station key with the driver's own entries.
            self._sta_extras_done = True
            for extra_key, payload in _STA_EXTRAS:
                self._store(row, extra_key, ns, lambda k=extra_key, p=payload: self.writer.add_blob(ns, k.encode(), p))

    def _namespace(self, row: CsvRow, name: str) -> None:
        index = self._namespaces.get(name)
        if index is not None:
            if index != len(self._names):
                raise row.error(
                    f"namespace {name!r} re-opened after namespace {self._names[-1]!r}; the reference tool would "
                    f"silently write the following entries into {self._names[-1]!r}: group each namespace's rows"
                )
            return  # re-selecting the current namespace changes nothing
        if len(self._names) >= MAX_NAMESPACES:
            raise row.error(f"too many namespaces: {MAX_NAMESPACES} is the maximum")
        self._names.append(name)
        self._namespaces[name] = len(self._names)
        index = len(self._names)
        self._store(row, name, 0, lambda: self.writer.add_primitive(0, name.encode(), "u8", index))

    def _ap_row(self, row: CsvRow, key: str, ns: int) -> None:
        """Soft-AP keys: once SSID, password and a non-"0" auth mode are known, add ap.pmk_info."""
        value = row.value
        if key != "ap.authmode" or value != "0":
            self._ap[key] = value
        ssid, password = self._ap["ap.ssid"], self._ap["ap.passwd"]
        if ssid and password and self._ap["ap.authmode"]:
            import hashlib

            pmk = hashlib.pbkdf2_hmac("sha1", password.encode(), ssid.encode(), 4096, 32)
            info = b"\x00" * 100 + pmk
            self._store(row, "ap.pmk_info", ns, lambda: self.writer.add_blob(ns, b"ap.pmk_info", info))

    # -- values ------------------------------------------------------------
    def _write(self, row: CsvRow, key: str, ns: int) -> None:
        encoding = row.encoding
        if encoding is None:
            raise row.error(f"key {key!r}: missing encoding")
        if row.value is None:
            raise row.error(f"key {key!r}: missing value")
        value: str | bytes = row.value
        if row.type == "file":
            value = self._read_file(row, key, row.value)
        kb = key.encode()
        lower = encoding.lower()
        if lower in PRIMITIVES:
            number = self._integer(row, key, value, lower)
            self._store(row, key, ns, lambda: self.writer.add_primitive(ns, kb, lower, number))
            return
        payload: bytes
        if encoding == "string":
            try:
                text = value if isinstance(value, str) else value.decode("utf-8")
            except UnicodeDecodeError:
                raise row.error(f"key {key!r}: file {row.value!r} is not UTF-8 text") from None
            payload = (text + "\0").encode("utf-8")
            limit = MAX_VARLEN[self.version] if self.version == 1 else MAX_STRING_V2
            if len(payload) > limit:
                raise row.error(f"key {key!r}: string of {len(payload)} bytes (with its NUL) exceeds {limit} bytes")
            self._store(row, key, ns, lambda: self.writer.add_single(ns, kb, TYPE_SZ, payload))
            return
        if encoding.startswith(("blob_fill", "blob_sz_fill")):
            payload = self._fill(row, key, value, encoding)
        elif encoding == "hex2bin":
            payload = self._hex(row, key, value)
        elif encoding == "base64":
            try:
                payload = binascii.a2b_base64(value)
            except (binascii.Error, ValueError) as exc:
                raise row.error(f"key {key!r}: bad base64: {exc}") from None
        elif lower == "binary":
            if isinstance(value, str):
                if not value.isascii():
                    # The reference counts characters but writes UTF-8 bytes: a corrupt entry.
                    raise row.error(f"key {key!r}: binary data value must be ASCII (use a file row or hex2bin)")
                value = value.encode()
            payload = value
        else:
            raise row.error(f"key {key!r}: unsupported encoding {encoding!r} (expected one of {', '.join(ENCODINGS)})")
        if self.version == 1 and len(payload) > MAX_VARLEN[1]:
            raise row.error(f"key {key!r}: blob of {len(payload)} bytes exceeds {MAX_VARLEN[1]} bytes (version 1)")
        self._store(row, key, ns, lambda: self.writer.add_blob(ns, kb, payload))

    def _read_file(self, row: CsvRow, key: str, name: str) -> bytes:
        if "\0" in name:  # open() raises ValueError, not OSError, for these
            raise row.error(f"key {key!r}: file name {name!r} contains a NUL character")
        path = Path(name)
        if self.base_dir is not None and not path.is_absolute():
            path = self.base_dir / path
        try:
            return read_bytes(path, "file")
        except EspSecureError as exc:
            raise row.error(f"key {key!r}: file {name!r}: {exc.message.removeprefix('file ')}") from None

    @staticmethod
    def _integer(row: CsvRow, key: str, value: str | bytes, encoding: str) -> int:
        try:
            number = int(value)  # decimal only, as the reference parses it
        except ValueError:
            raise row.error(f"key {key!r}: {value!r} is not a decimal integer for {encoding}") from None
        _, _, low, high = PRIMITIVES[encoding]
        if not low <= number <= high:
            raise row.error(f"key {key!r}: {number} is out of range for {encoding} ({low}..{high})")
        return number

    @staticmethod
    def _hex(row: CsvRow, key: str, value: str | bytes) -> bytes:
        value = value.strip()
        if len(value) % 2:
            raise row.error(f"key {key!r}: hex2bin value has an odd number of digits")
        try:
            return binascii.a2b_hex(value)
        except (binascii.Error, ValueError):
            raise row.error(f"key {key!r}: hex2bin value is not hexadecimal") from None

    @staticmethod
    def _fill(row: CsvRow, key: str, value: str | bytes, encoding: str) -> bytes:
        match = _FILL.fullmatch(encoding)
        if not match:
            raise row.error(f"key {key!r}: bad encoding {encoding!r} (expected blob_fill(N;0xPP))")
        if isinstance(value, bytes):
            raise row.error(f"key {key!r}: {match.group(1)} needs a data row, not a file row")
        length, pad = int(match.group(2)), int(match.group(3), 16)
        data = value.encode("utf-8")
        if len(data) > length:
            raise row.error(f"key {key!r}: value of {len(data)} bytes exceeds the fill length {length}")
        filled = data + bytes([pad]) * (length - len(data))
        return filled if match.group(1) == "blob_fill" else struct.pack("<I", len(data)) + filled

    def _store(self, row: CsvRow, key: str, ns: int, write: Callable[[], None]) -> None:
        """Run one writer call, turning its failures into errors naming the row."""
        try:
            write()
        except NoRoom:
            raise row.error(
                f"key {key!r}: partition too small: {self.writer.size:#x} bytes cannot hold the data "
                f"up to this row (give a larger size)"
            ) from None
        except ValueError as exc:
            raise row.error(f"key {key!r}: {exc}") from None

    def finish(self, keys: NvsKeys | None = None) -> bytes:
        """The partition bytes, encrypted with ``keys`` when given."""
        data = self.writer.finish()
        if keys is None:
            return data
        from .crypto import encrypt_partition  # only encryption needs the cryptography package

        return encrypt_partition(data, keys)


def generate_partition(
    csv_paths: PathLike | Sequence[PathLike],
    size: int,
    version: int = 2,
    keys: NvsKeys | None = None,
    base_dir: PathLike | None = None,
) -> bytes:
    """NVS partition bytes from one or more CSV files (``file`` rows relative to ``base_dir`` or CWD)."""
    paths = [csv_paths] if isinstance(csv_paths, (str, os.PathLike)) else list(csv_paths)
    builder = NvsBuilder(parse_size(size), version, base_dir)
    for path in paths:
        builder.add_rows(read_nvs_csv(path))
    return builder.finish(keys)


def generate_from_rows(
    rows: Iterable[CsvRow], size: int, version: int = 2, keys: NvsKeys | None = None, base_dir: PathLike | None = None
) -> bytes:
    """NVS partition bytes from rows already read (used by manufacturing)."""
    builder = NvsBuilder(size, version, base_dir)
    builder.add_rows(rows)
    return builder.finish(keys)


def load_keys(path: PathLike) -> NvsKeys:
    """Keys from an NVS keys partition file (or 64 raw key bytes)."""
    from .crypto import NvsKeys

    return NvsKeys.from_partition(read_key_bytes(path, "NVS keys file"), str(path))


def load_hmac_key(path: PathLike) -> bytes:
    """A 32-byte eFuse HMAC key file."""
    data = read_key_bytes(path, "HMAC key file")
    if len(data) != 32:
        raise EspSecureError(f"HMAC key file must hold 32 bytes (an eFuse HMAC key), not {len(data)}", path)
    return data


def referenced_files(csv_paths: PathLike | Sequence[PathLike], base_dir: PathLike | None = None) -> list[Path]:
    """The files ``file`` rows name, resolved as generation resolves them (for build scanners)."""
    paths = [csv_paths] if isinstance(csv_paths, (str, os.PathLike)) else list(csv_paths)
    found: list[Path] = []
    for path in paths:
        for row in read_nvs_csv(path):
            if row.type == "file" and row.value:
                name = Path(row.value)
                found.append(name if base_dir is None or name.is_absolute() else Path(base_dir) / name)
    return found
