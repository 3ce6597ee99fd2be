"""NVS page and entry layout: the writer that packs items into 4096-byte pages, and a checker.

Byte layout and page-filling rules follow esp-idf-nvs-partition-gen 0.3.0, so a
partition written here is byte-identical with the one it writes for the same
items. Values arrive already converted (ints, bytes); the CSV layer in
:mod:`.generate` does parsing and error reporting with line numbers.
"""

from __future__ import annotations

import struct
import zlib

from ..errors import EspSecureError

PAGE_SIZE = 4096
ENTRY_SIZE = 32
ENTRIES_PER_PAGE = 126
FIRST_ENTRY_OFFSET = 64
KEY_MAX_LEN = 15

STATE_ACTIVE = 0xFFFFFFFE
STATE_FULL = 0xFFFFFFFC
VERSION_BYTE = {1: 0xFF, 2: 0xFE}
# Largest string / V1 blob payload the reference accepts, per version.
MAX_VARLEN = {1: 1984, 2: 4000}
# A partition smaller than this is "read-only": no reserved page, no padding.
MIN_RW_SIZE = 0x3000

CHUNK_ANY = 0xFF
TYPE_SZ = 0x21
TYPE_BLOB = 0x41
TYPE_BLOB_DATA = 0x42
TYPE_BLOB_IDX = 0x48

# encoding -> (type code, struct format, min, max)
PRIMITIVES: dict[str, tuple[int, str, int, int]] = {
    "u8": (0x01, "<B", 0, 0xFF),
    "i8": (0x11, "<b", -0x80, 0x7F),
    "u16": (0x02, "<H", 0, 0xFFFF),
    "i16": (0x12, "<h", -0x8000, 0x7FFF),
    "u32": (0x04, "<I", 0, 0xFFFFFFFF),
    "i32": (0x14, "<i", -0x80000000, 0x7FFFFFFF),
    "u64": (0x08, "<Q", 0, 0xFFFFFFFFFFFFFFFF),
    "i64": (0x18, "<q", -0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
}


def crc32_nvs(data: bytes) -> int:
    """The CRC NVS uses everywhere: zlib's CRC-32 started from 0xFFFFFFFF."""
    return zlib.crc32(data, 0xFFFFFFFF) & 0xFFFFFFFF


class NoRoom(Exception):
    """The partition has no page left for the next item (caller adds context)."""


def _entry(ns: int, type_code: int, span: int, chunk: int, key: bytes, data: bytes) -> bytes:
    """One 32-byte entry with its header CRC (over all bytes but the CRC field)."""
    body = bytes((ns, type_code, span, chunk))
    tail = key.ljust(16, b"\x00") + data
    return body + struct.pack("<I", crc32_nvs(body + tail)) + tail


class NvsWriter:
    """Packs namespaces and items into pages the way the reference generator does.

    ``size`` is the partition size (a multiple of 4096, at least 4096); below
    0x3000 the partition is read-only: every page may hold data, and
    :meth:`finish` returns only the pages used, as the reference does.
    """

    def __init__(self, size: int, version: int = 2):
        if version not in VERSION_BYTE:
            raise ValueError(f"NVS version must be 1 or 2, not {version}")
        if size % PAGE_SIZE or size < PAGE_SIZE:
            raise ValueError(f"NVS partition size {size:#x} is not a non-zero multiple of 4096")
        self.size = size
        self.version = version
        self.read_only = size < MIN_RW_SIZE
        # Read/write partitions keep their last page free for the device's garbage collection.
        self._page_budget = size // PAGE_SIZE if self.read_only else size // PAGE_SIZE - 1
        self._pages: list[bytearray] = []
        self._used = 0  # entries written in the current page
        self._new_page()

    # -- pages -------------------------------------------------------------
    def _new_page(self) -> None:
        if self._pages:
            # The page being left is full (the last used page stays ACTIVE).
            struct.pack_into("<I", self._pages[-1], 0, STATE_FULL)
        if len(self._pages) >= self._page_budget:
            raise NoRoom()
        page = bytearray(b"\xff" * PAGE_SIZE)
        header = bytearray(b"\xff" * 32)
        struct.pack_into("<II", header, 0, STATE_ACTIVE, len(self._pages))
        header[8] = VERSION_BYTE[self.version]
        struct.pack_into("<I", header, 28, crc32_nvs(bytes(header[4:28])))
        page[0:32] = header
        self._pages.append(page)
        self._used = 0

    def _put(self, data: bytes, count: int) -> None:
        """Write ``count`` entries' worth of ``data`` at the next free slots."""
        page = self._pages[-1]
        start = FIRST_ENTRY_OFFSET + ENTRY_SIZE * self._used
        page[start : start + len(data)] = data
        for n in range(self._used, self._used + count):
            page[32 + n // 4] &= ~(1 << ((2 * n) % 8)) & 0xFF
        self._used += count

    @property
    def pages_used(self) -> int:
        return len(self._pages)

    # -- items -------------------------------------------------------------
    def add_primitive(self, ns: int, key: bytes, encoding: str, value: int) -> None:
        """An integer item (range already checked by the caller)."""
        type_code, fmt, _, _ = PRIMITIVES[encoding]
        if self._used >= ENTRIES_PER_PAGE:
            self._new_page()
        data = struct.pack(fmt, value).ljust(8, b"\xff")
        self._put(_entry(ns, type_code, 1, CHUNK_ANY, key, data), 1)

    def add_single(self, ns: int, key: bytes, type_code: int, payload: bytes) -> None:
        """A string (SZ) or V1 blob: header plus payload, all on one page."""
        span = (len(payload) + 31) // 32 + 1
        if span >= ENTRIES_PER_PAGE:
            raise ValueError("item does not fit in one page")
        # Quirk kept for identical bytes: ">=", so such an item never takes a page's last slot.
        if self._used >= ENTRIES_PER_PAGE or self._used + span >= ENTRIES_PER_PAGE:
            self._new_page()
        data = struct.pack("<HHI", len(payload), 0xFFFF, crc32_nvs(payload))
        self._put(_entry(ns, type_code, span, CHUNK_ANY, key, data), 1)
        self._put(payload, span - 1)

    def add_blob_v2(self, ns: int, key: bytes, payload: bytes) -> None:
        """A V2 blob: BLOB_DATA chunks across pages, then the BLOB_IDX entry."""
        if self._used >= ENTRIES_PER_PAGE:
            self._new_page()
        offset = 0
        chunk_index = 0
        remaining = len(payload)
        while True:
            if chunk_index >= 0xFF:
                raise ValueError("blob needs more than 255 chunks")
            room = (ENTRIES_PER_PAGE - self._used - 1) * ENTRY_SIZE
            size = min(room, remaining)
            remaining -= size
            chunk = payload[offset : offset + size]
            count = (size + 31) // 32
            # With exactly one free slot this writes a zero-length chunk, as the reference does.
            data = struct.pack("<HHI", size, 0xFFFF, crc32_nvs(chunk))
            self._put(_entry(ns, TYPE_BLOB_DATA, count + 1, chunk_index, key, data), 1)
            self._put(chunk, count)
            chunk_index += 1
            offset += size
            if remaining or room - size < ENTRY_SIZE:
                self._new_page()
            if not remaining:
                break
        data = struct.pack("<IBBH", len(payload), chunk_index, 0, 0xFFFF)
        self._put(_entry(ns, TYPE_BLOB_IDX, 1, CHUNK_ANY, key, data), 1)

    def add_blob(self, ns: int, key: bytes, payload: bytes) -> None:
        """A blob in the format of this writer's version."""
        if self.version == 1:
            self.add_single(ns, key, TYPE_BLOB, payload)
        else:
            self.add_blob_v2(ns, key, payload)

    def finish(self) -> bytes:
        """The partition image: data pages, empty pages, then the reserved page."""
        out = b"".join(self._pages)
        if self.read_only:
            return out  # the reference pads nothing here
        return out + b"\xff" * (self.size - len(out))


def check_partition(data: bytes, path: str | None = None) -> tuple[int, int]:
    """Parse a plaintext (or decrypted) NVS partition; returns (namespaces, items).

    Checks what the device checks when it loads the partition: each used page's
    header CRC and version, each written entry's CRC, and the data CRC of strings
    and blob chunks. Raises EspSecureError naming the page and entry otherwise.
    """
    if not data or len(data) % PAGE_SIZE:
        raise EspSecureError(f"not an NVS partition: {len(data)} bytes is not a non-zero multiple of 4096", path)
    namespaces = items = 0
    for base in range(0, len(data), PAGE_SIZE):
        page = data[base : base + PAGE_SIZE]
        state, _seq = struct.unpack_from("<II", page, 0)
        where = f"NVS page {base // PAGE_SIZE}"
        if state == 0xFFFFFFFF:
            continue  # uninitialised page
        if struct.unpack_from("<I", page, 28)[0] != crc32_nvs(page[4:28]):
            raise EspSecureError(f"{where}: header CRC mismatch (wrong NVS keys, or corrupt)", path)
        if page[8] not in VERSION_BYTE.values():
            raise EspSecureError(f"{where}: unknown format version {page[8]:#04x}", path)
        n = 0
        while n < ENTRIES_PER_PAGE:
            if (page[32 + n // 4] >> ((2 * n) % 8)) & 3 != 2:  # 2 = written
                n += 1
                continue
            entry = page[FIRST_ENTRY_OFFSET + n * ENTRY_SIZE : FIRST_ENTRY_OFFSET + (n + 1) * ENTRY_SIZE]
            ns, type_code, span = entry[0], entry[1], entry[2]
            if struct.unpack_from("<I", entry, 4)[0] != crc32_nvs(entry[:4] + entry[8:]) or not 1 <= span <= ENTRIES_PER_PAGE - n:
                raise EspSecureError(f"{where}, entry {n}: entry CRC mismatch (wrong NVS keys, or corrupt)", path)
            if type_code in (TYPE_SZ, TYPE_BLOB, TYPE_BLOB_DATA):
                size, _, crc = struct.unpack_from("<HHI", entry, 24)
                start = FIRST_ENTRY_OFFSET + (n + 1) * ENTRY_SIZE
                if size > (span - 1) * ENTRY_SIZE or crc32_nvs(page[start : start + size]) != crc:
                    raise EspSecureError(f"{where}, entry {n}: data CRC mismatch", path)
            if ns == 0:
                namespaces += 1
            elif type_code != TYPE_BLOB_DATA:
                items += 1
            n += span
    return namespaces, items
