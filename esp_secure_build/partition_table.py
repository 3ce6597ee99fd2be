"""ESP-IDF partition tables: CSV <-> binary, validation, and what flash encryption covers.

Byte-identical with ESP-IDF's ``gen_esp32part.py`` 1.5 for every table it
accepts, including its CSV quirks (``$VAR`` expansion, ``int(x, 0)`` numbers
with ``K``/``M`` suffixes, case-insensitive keywords, names cut to 16 bytes).
Where it dies with a traceback we raise :class:`EspSecureError` instead.

Binary layout: 32-byte entries ``AA 50, type, subtype, u32 offset, u32 size,
name[16], u32 flags`` (bit 0 encrypted, bit 1 readonly), then unless disabled
an MD5 entry ``EB EB FF*14`` + MD5 of the entries, then 0xFF up to 0xC00 bytes.

Beyond gen_esp32part, :func:`verify` also refuses more than one factory app
and an ``nvs_keys`` partition that is not marked ``encrypted`` (the device
would otherwise keep the NVS keys in plaintext flash).
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import EspSecureError

PathLike = str | os.PathLike[str] | None

MAX_TABLE_LENGTH = 0xC00  # bytes of entries + MD5 entry + 0xFF fill
TABLE_SECTOR_SIZE = 0x1000  # flash the table occupies
MAX_TABLE_INPUT = 1024 * 1024  # a CSV of at most 95 entries, comments included, is far smaller
DEFAULT_TABLE_OFFSET = 0x8000
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
ENTRY = struct.Struct("<2sBBLL16sL")
NVS_RW_MIN_SIZE = 0x3000
FLASH_SIZES_MB = (1, 2, 4, 8, 16, 32, 64, 128)

APP, DATA, BOOTLOADER, PARTITION_TABLE = 0x00, 0x01, 0x02, 0x03
TYPES: dict[str, int] = {"bootloader": BOOTLOADER, "partition_table": PARTITION_TABLE, "app": APP, "data": DATA}
FLAGS: dict[str, int] = {"encrypted": 0, "readonly": 1}

# Subtype keywords per type, in gen_esp32part's order (the first match names a value in CSV output).
_BASE_SUBTYPES: dict[int, dict[str, int]] = {
    BOOTLOADER: {"primary": 0x00, "ota": 0x01, "recovery": 0x02},
    PARTITION_TABLE: {"primary": 0x00, "ota": 0x01},
    APP: {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}, "tee_0": 0x30, "tee_1": 0x31},
    DATA: {
        "ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04, "efuse": 0x05,
        "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83, "tee_ota": 0x90,
    },
}  # fmt: skip
SUBTYPE_OTA, SUBTYPE_NVS, SUBTYPE_COREDUMP, SUBTYPE_NVS_KEYS, SUBTYPE_TEE_OTA = 0x00, 0x02, 0x03, 0x04, 0x90
SUBTYPE_FACTORY = 0x00
# Offset alignment by type (others: 4 KiB); app sizes need 4 KiB, 64 KiB with Secure Boot V1.
_OFFSET_ALIGN = {APP: 0x10000}


def subtypes_with_extra(extra: Iterable[str] = ()) -> dict[int, dict[str, int]]:
    """The subtype keyword table plus ``--extra-partition-subtypes`` entries (``type,name,hexvalue``)."""
    table = {t: dict(names) for t, names in _BASE_SUBTYPES.items()}
    for spec in extra:
        fields = [f.strip() for f in spec.split(",")]
        if len(fields) < 3:
            raise EspSecureError(f"extra partition subtype {spec!r} is not TYPE,NAME,VALUE")
        type_name, name, value_text = fields[:3]
        if type_name not in TYPES:
            raise EspSecureError(f"extra partition subtype {spec!r}: invalid partition type {type_name!r}")
        try:
            value = int(value_text, 16)
        except ValueError:
            raise EspSecureError(f"extra partition subtype {spec!r}: {value_text!r} is not a hex number") from None
        if not 0 <= value <= 0xFF:
            raise EspSecureError(f"extra partition subtype {spec!r}: value {value:#x} does not fit a byte")
        names = table[TYPES[type_name]]
        if value in names.values():
            raise EspSecureError(
                f"extra partition subtype {spec!r}: {type_name} already has a subtype with value {value:#x}"
            )
        names[name] = value
    return table


@dataclass
class Partition:
    """One row of the table."""

    name: str
    type: int
    subtype: int
    offset: int
    size: int
    encrypted: bool = False
    readonly: bool = False
    line: int | None = None  # CSV line, for messages

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def is_nvs(self) -> bool:
        return self.type == DATA and self.subtype == SUBTYPE_NVS

    @property
    def flash_encrypted(self) -> bool:
        """Whether the device encrypts this partition's flash when flash encryption is on.

        App partitions, otadata, nvs_keys and anything flagged ``encrypted``,
        plus bootloader and partition-table entries; never an NVS data
        partition (the device ignores the flag there: NVS has its own encryption).
        """
        if self.is_nvs:
            return False
        if self.type in (APP, BOOTLOADER, PARTITION_TABLE):
            return True
        if self.type == DATA and self.subtype in (SUBTYPE_OTA, SUBTYPE_NVS_KEYS):
            return True
        return self.encrypted

    def flags_value(self) -> int:
        return (1 << FLAGS["encrypted"] if self.encrypted else 0) | (1 << FLAGS["readonly"] if self.readonly else 0)

    def to_binary(self, path: PathLike = None) -> bytes:
        for what, value, limit in (("type", self.type, 0xFF), ("subtype", self.subtype, 0xFF),
                                   ("offset", self.offset, 0xFFFFFFFF), ("size", self.size, 0xFFFFFFFF)):  # fmt: skip
            if not 0 <= value <= limit:
                raise EspSecureError(
                    f"partition {self.name!r}: {what} {value:#x} is out of range (0 to {limit:#x})", path
                )
        # struct's "16s" pads with NULs or cuts to 16 bytes, as gen_esp32part does.
        return ENTRY.pack(
            MAGIC, self.type, self.subtype, self.offset, self.size, self.name.encode(), self.flags_value()
        )

    def check_image_fits(self, size: int, path: PathLike = None) -> None:
        """Refuse an image (already signed and padded) larger than this partition."""
        if size > self.size:
            raise EspSecureError(
                f"image of {size:#x} bytes does not fit partition {self.name!r} "
                f"({self.size:#x} bytes at {self.offset:#x})",
                path,
            )


@dataclass
class PartitionTable:
    """A parsed table; ``offset`` is where the table itself lives in flash."""

    partitions: list[Partition]
    offset: int = DEFAULT_TABLE_OFFSET
    md5: bool = True
    subtypes: dict[int, dict[str, int]] = field(default_factory=subtypes_with_extra)
    warnings: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.partitions)

    def __len__(self) -> int:
        return len(self.partitions)

    def find(self, name: str) -> Partition:
        """The partition called ``name``; EspSecureError when there is none."""
        for p in self.partitions:
            if p.name == name:
                return p
        raise EspSecureError(f"no partition named {name!r} in the partition table")

    def find_type(self, ptype: int, subtype: int | None = None) -> list[Partition]:
        return [p for p in self.partitions if p.type == ptype and (subtype is None or p.subtype == subtype)]

    def encrypted_partitions(self) -> list[Partition]:
        """Partitions whose contents flash encryption covers (see :attr:`Partition.flash_encrypted`)."""
        return [p for p in self.partitions if p.flash_encrypted]

    def encrypted_regions(self, bootloader_offset: int) -> list[tuple[str, int, int]]:
        """(name, offset, size) of every flash region flash encryption covers, in address order.

        The bootloader (from ``bootloader_offset``, the chip's, up to the
        table), the table's own sector, then :meth:`encrypted_partitions`
        (bootloader/partition-table rows of the CSV are not repeated). The
        table is encrypted but never signed: a signature would grow it to a
        full sector and beyond.
        """
        regions = [("bootloader", bootloader_offset, self.offset - bootloader_offset),
                   ("partition-table", self.offset, TABLE_SECTOR_SIZE)]  # fmt: skip
        regions += [(p.name, p.offset, p.size) for p in self.encrypted_partitions()
                    if p.type not in (BOOTLOADER, PARTITION_TABLE) or p.subtype != 0]  # fmt: skip
        return sorted(regions, key=lambda r: r[1])

    def flash_size(self) -> int:
        """End of the partition with the highest offset, as gen_esp32part measures the table."""
        if not self.partitions:
            return 0
        last = max(self.partitions, key=lambda p: p.offset)  # first of equal offsets, like a stable reverse sort
        return last.end

    def to_binary(self, path: PathLike = None) -> bytes:
        """The 0xC00-byte binary table; ``path`` names the source in errors."""
        data = b"".join(p.to_binary(path) for p in self.partitions)
        if self.md5:
            data += MD5_MAGIC + hashlib.md5(data).digest()
        if len(data) >= MAX_TABLE_LENGTH:
            raise EspSecureError(
                f"binary partition table length ({len(data)}) longer than max: "
                f"{len(self.partitions)} partitions, at most {(MAX_TABLE_LENGTH - 1) // 32 - (1 if self.md5 else 0)}",
                path,
            )
        return data + b"\xff" * (MAX_TABLE_LENGTH - len(data))

    def to_csv(self) -> str:
        rows = ["# ESP-IDF Partition Table", "# Name, Type, SubType, Offset, Size, Flags"]
        for p in self.partitions:
            names = self.subtypes.get(p.type, {})
            rows.append(",".join([
                p.name, _keyword(p.type, TYPES), _keyword(p.subtype, names), f"{p.offset:#x}", _size_text(p.size),
                ":".join(f for f in FLAGS if getattr(p, f)),
            ]))  # fmt: skip
        return "\n".join(rows) + "\n"


def _keyword(value: int, keywords: Mapping[str, int]) -> str:
    for name, v in keywords.items():
        if v == value:
            return name
    return str(value)


def _size_text(size: int) -> str:
    for unit, suffix in ((0x100000, "M"), (0x400, "K")):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return f"{size:#x}"


# --- CSV --------------------------------------------------------------------------------

_VAR = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)
_VAR_AT_START = re.compile(r"(?<!\\)\$([A-Za-z_][A-Za-z0-9_]*)")


def _expand_vars(text: str, env: Mapping[str, str]) -> str:
    """``$NAME`` / ``${NAME}`` expansion as ``os.path.expandvars`` does it (unknown names stay)."""
    i = 0
    while True:
        m = _VAR.search(text, i)
        if not m:
            return text
        name = m.group(1)
        if name.startswith("{") and name.endswith("}"):
            name = name[1:-1]
        if name in env:
            value = env[name]
            text = text[: m.start()] + value + text[m.end() :]
            i = m.start() + len(value)
        else:
            i = m.end()


class _FieldError(Exception):
    """A field problem inside one CSV line (gets the line number added)."""


def _parse_int(text: str, keywords: Mapping[str, int] | None = None) -> int:
    """``int(x, 0)`` with K/M suffixes (also after hex) and case-insensitive keywords."""
    for letter, factor in (("k", 1024), ("m", 1024 * 1024)):
        if text.lower().endswith(letter):
            return _parse_int(text[:-1], keywords) * factor
    try:
        return int(text, 0)
    except ValueError:
        if not keywords:
            raise _FieldError(f"Invalid field value {text}") from None
        try:
            return keywords[text.lower()]
        except KeyError:
            raise _FieldError(f"Value '{text}' is not valid. Known keywords: {', '.join(keywords)}") from None


class _Options(NamedTuple):
    offset: int
    primary_bootloader_offset: int | None
    recovery_bootloader_offset: int | None
    subtypes: dict[int, dict[str, int]]


def _parse_row(line: str, number: int, opts: _Options) -> tuple[Partition, int | None, int]:
    """One CSV row: the partition with offset possibly None (returned apart) and size possibly negative."""
    fields = [f.strip() for f in (line + ",,,,").split(",")]
    name = fields[0]
    if fields[1] == "":
        raise _FieldError("Field 'type' can't be left empty.")
    ptype = _parse_int(fields[1], TYPES)
    if fields[2] == "":
        if ptype == APP:
            raise _FieldError("App partition cannot have an empty subtype")
        subtype = _BASE_SUBTYPES[DATA]["undefined"]
    else:
        subtype = _parse_int(fields[2], opts.subtypes.get(ptype, {}))

    offset: int | None
    if ptype == BOOTLOADER and subtype == 0x00:
        offset = _need(opts.primary_bootloader_offset, "Primary", "primary")
    elif ptype == BOOTLOADER and subtype == 0x02:
        offset = _need(opts.recovery_bootloader_offset, "Recovery", "recovery")
    elif ptype == PARTITION_TABLE and subtype == 0x00:
        offset = opts.offset
    else:
        offset = _parse_int(fields[3]) if fields[3] else None

    size: int | None
    if ptype == BOOTLOADER:
        size = opts.offset - _need(opts.primary_bootloader_offset, "Primary", "primary")
    elif ptype == PARTITION_TABLE:
        size = TABLE_SECTOR_SIZE
    else:
        size = _parse_int(fields[4]) if fields[4] else None
    if size is None:
        raise _FieldError("Size field can't be empty")

    flags = {"encrypted": False, "readonly": False}
    for flag in fields[5].split(":"):
        if flag in flags:
            flags[flag] = True
        elif flag:
            raise _FieldError(f"CSV flag column contains unknown flag '{flag}'")
    return Partition(name, ptype, subtype, 0, size, line=number, **flags), offset, size


def _need(value: int | None, title: str, option: str) -> int:
    if value is None:
        raise _FieldError(f"{title} bootloader offset is not defined. Please use --{option}-bootloader-offset")
    return value


def parse_csv(
    text: str,
    path: PathLike = None,
    *,
    offset: int = DEFAULT_TABLE_OFFSET,
    primary_bootloader_offset: int | None = None,
    recovery_bootloader_offset: int | None = None,
    extra_subtypes: Iterable[str] = (),
    md5: bool = True,
    env: Mapping[str, str] | None = None,
) -> PartitionTable:
    """Parse ESP-IDF partition CSV text and fill in empty offsets and negative sizes.

    ``offset`` is the table's own flash offset; ``env`` the variables ``$NAME``
    refers to (default: the process environment). Does not validate: call
    :func:`verify`.
    """
    env = os.environ if env is None else env
    subtypes = subtypes_with_extra(extra_subtypes)
    check_bootloader_offset(offset, primary_bootloader_offset)
    opts = _Options(offset, primary_bootloader_offset, recovery_bootloader_offset, subtypes)
    rows: list[tuple[Partition, int | None, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _expand_vars(raw, env)
        m = _VAR_AT_START.match(line)
        if m:
            raise EspSecureError(f"line {number}: unknown variable '{m.group(1)}'", path)
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append(_parse_row(line, number, opts))
        except _FieldError as exc:
            raise EspSecureError(f"Error at line {number}: {exc}", path) from None

    # Fill in offsets in CSV order, as gen_esp32part does: explicit offsets may not go backwards.
    last_end = offset + TABLE_SECTOR_SIZE
    first = rows[0] if rows else None
    for row in rows:
        part, explicit, size = row
        if (part.type, part.subtype) in ((BOOTLOADER, 0), (PARTITION_TABLE, 0)):
            part.offset = explicit if explicit is not None else 0
            continue
        if explicit is not None and explicit < last_end:
            if first is not None and _same_row(row, first):
                raise EspSecureError(
                    f"CSV Error at line {part.line}: Partitions overlap. Partition sets offset {explicit:#x}. "
                    f"But partition table occupies the whole sector {offset:#x}. Use a free offset {last_end:#x} or higher.",
                    path,
                )
            raise EspSecureError(
                f"CSV Error at line {part.line}: Partitions overlap. Partition sets offset {explicit:#x}. "
                f"Previous partition ends {last_end:#x}",
                path,
            )
        if explicit is None:
            align = _OFFSET_ALIGN.get(part.type, 0x1000)
            part.offset = -(-last_end // align) * align
        else:
            part.offset = explicit
        if size < 0:  # "up to this absolute address"
            part.size = -size - part.offset
        last_end = part.offset + part.size
    for part, _, _ in rows:
        if part.size < 0:
            raise EspSecureError(f"partition {part.name!r} (line {part.line}) ends before it starts", path)
    return PartitionTable([r[0] for r in rows], offset=offset, md5=md5, subtypes=subtypes)


def _same_row(a: tuple[Partition, int | None, int], b: tuple[Partition, int | None, int]) -> bool:
    # gen_esp32part compares with the first row by value (name, type, subtype, offset, size).
    pa, pb = a[0], b[0]
    return (pa.name, pa.type, pa.subtype, a[1], pa.size) == (pb.name, pb.type, pb.subtype, b[1], pb.size)


def check_bootloader_offset(offset: int, primary: int | None) -> None:
    """The primary bootloader must sit below the partition table."""
    if primary is not None and primary >= offset:
        raise EspSecureError(
            "Unsupported configuration. Primary bootloader must be below partition table. "
            f"Check --primary-bootloader-offset={primary:#x} and --offset={offset:#x}"
        )


# --- binary -----------------------------------------------------------------------------


def parse_binary(
    data: bytes, path: PathLike = None, *, md5: bool = True, offset: int = DEFAULT_TABLE_OFFSET,
    extra_subtypes: Iterable[str] = (),
) -> PartitionTable:  # fmt: skip
    """Parse a binary table (up to its 0xFF end marker), checking the MD5 entry when ``md5``."""
    table = PartitionTable([], offset=offset, md5=md5, subtypes=subtypes_with_extra(extra_subtypes))
    digest = hashlib.md5()
    for pos in range(0, len(data), 32):
        entry = data[pos : pos + 32]
        if len(entry) != 32:
            raise EspSecureError("partition table length must be a multiple of 32 bytes", path)
        if entry == b"\xff" * 32:
            return table
        if md5 and entry[:2] == MD5_MAGIC[:2]:
            if entry[16:] != digest.digest():
                raise EspSecureError(
                    f"MD5 checksums don't match! (computed: 0x{digest.hexdigest()}, parsed: 0x{entry[16:].hex()})", path
                )
            continue
        digest.update(entry)
        magic, ptype, subtype, poffset, size, raw_name, flags = ENTRY.unpack(entry)
        if magic != MAGIC:
            raise EspSecureError(f"invalid magic bytes {magic.hex()} in partition entry at {pos:#x}", path)
        raw_name = raw_name.split(b"\0", 1)[0]
        try:
            name = raw_name.decode()
        except UnicodeDecodeError:
            raise EspSecureError(f"partition name at {pos:#x} is not UTF-8", path) from None
        part = Partition(name, ptype, subtype, poffset, size, bool(flags & 1), bool(flags & 2))
        if flags & ~3:
            table.warnings.append(
                f"WARNING: Partition definition had unknown flag(s) 0x{flags & ~3:08x}. Newer binary format?"
            )
        table.partitions.append(part)
    raise EspSecureError("partition table is missing an end-of-table marker", path)


def load(
    data: bytes, path: PathLike = None, *, env: Mapping[str, str] | None = None, **options: object
) -> tuple[PartitionTable, bool]:
    """Parse a table file's bytes; returns (table, input_was_binary).

    Binary when it starts with the entry magic ``AA 50``, CSV otherwise (a
    UTF-8/16/32 byte-order mark selects the encoding). ``options`` go to
    :func:`parse_csv` / :func:`parse_binary`.
    """
    if data[:2] == MAGIC:
        keys = ("md5", "offset", "extra_subtypes")
        return parse_binary(data, path, **{k: v for k, v in options.items() if k in keys}), True  # type: ignore[arg-type]
    encoding = "utf-8"
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                      (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if data.startswith(bom):
            encoding = name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise EspSecureError(f"partition CSV is not {encoding} text (byte {exc.start})", path) from None
    return parse_csv(text, path, env=env, **options), False  # type: ignore[arg-type]


# --- validation ---------------------------------------------------------------------------


def verify(table: PartitionTable, path: PathLike = None, *, secure: str | None = None) -> list[str]:
    """Check the table as gen_esp32part does, plus our own checks; returns warnings.

    ``secure`` is None, ``"v1"`` (app sizes on 64 KiB) or ``"v2"``. Raises
    EspSecureError on the first problem.
    """
    warnings = list(table.warnings)
    all_subtype_names = [n for names in table.subtypes.values() for n in names]
    for p in table:
        align = _OFFSET_ALIGN.get(p.type, 0x1000)
        if p.offset % align:
            raise EspSecureError(f"Partition {p.name} invalid: Offset {p.offset:#x} is not aligned to {align:#x}", path)
        if p.type == APP:
            size_align = 0x10000 if secure == "v1" else 0x1000
            if p.size % size_align:
                raise EspSecureError(
                    f"Partition {p.name} invalid: Size {p.size:#x} is not aligned to {size_align:#x}", path
                )
        if p.name in TYPES and TYPES[p.name] != p.type:
            warnings.append(
                f"WARNING: Partition has name '{p.name}' which is a partition type, but does not match this "
                f"partition's type ({p.type:#x}). Mistake in partition table?"
            )
        if p.name in all_subtype_names and table.subtypes.get(p.type, {}).get(p.name) != p.subtype:
            warnings.append(
                f"WARNING: Partition has name '{p.name}' which is a partition subtype, but this partition has "
                f"non-matching type {p.type:#x} and subtype {p.subtype:#x}. Mistake in partition table?"
            )
        if p.type == DATA and p.subtype in (SUBTYPE_OTA, SUBTYPE_COREDUMP) and p.readonly:
            raise EspSecureError(
                f"Partition {p.name} invalid: '{p.name}' partition of type {p.type} and subtype {p.subtype} "
                "is always read-write and cannot be read-only",
                path,
            )
        if p.is_nvs and p.size < NVS_RW_MIN_SIZE and not p.readonly:
            raise EspSecureError(
                f"Partition {p.name} invalid: '{p.name}' partition of type {p.type} and subtype {p.subtype} of this "
                f"size ({p.size:#x}) must be flagged as 'readonly' (the size of read/write NVS has to be at least "
                f"{NVS_RW_MIN_SIZE:#x})",
                path,
            )

    names = [p.name for p in table]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EspSecureError(f"Partition names must be unique: {', '.join(duplicates)} used more than once", path)

    floor = table.offset + TABLE_SECTOR_SIZE
    last: Partition | None = None
    for p in sorted(table, key=lambda q: q.offset):
        if p.offset < floor and (p.type, p.subtype) not in ((BOOTLOADER, 0), (PARTITION_TABLE, 0)):
            raise EspSecureError(
                f"Partition {p.name}: offset {p.offset:#x} is below {floor:#x}, the end of the partition table", path
            )
        if last is not None and p.offset < last.end:
            raise EspSecureError(
                f"Partition {p.name} at {p.offset:#x} overlaps {last.name} at {last.offset:#x}-{last.end - 1:#x}", path
            )
        last = p

    for subtype, what in ((SUBTYPE_OTA, "otadata"), (SUBTYPE_TEE_OTA, "TEE otadata")):
        found = table.find_type(DATA, subtype)
        if len(found) > 1:
            raise EspSecureError(
                f"Found multiple {what} partitions ({', '.join(p.name for p in found)}); "
                f"only one partition can have type data and subtype {subtype:#x}",
                path,
            )
        if found and found[0].size != 0x2000:
            raise EspSecureError(
                f"{what} partition must have size = 0x2000 ({found[0].name} is {found[0].size:#x})", path
            )

    # Our own checks (not in gen_esp32part).
    factories = table.find_type(APP, SUBTYPE_FACTORY)
    if len(factories) > 1:
        raise EspSecureError(f"more than one factory app partition: {', '.join(p.name for p in factories)}", path)
    for p in table.find_type(DATA, SUBTYPE_NVS_KEYS):
        if not p.encrypted:
            # ESP-IDF accepts it, and the device encrypts nvs_keys whenever flash encryption
            # is on (flash_encrypted says so): a valid ESP-IDF table must build.
            warnings.append(
                f"WARNING: Partition {p.name}: nvs_keys partition not flagged 'encrypted'; it is flash-encrypted "
                "anyway when flash encryption is on (flag it to say so)"
            )
    return warnings


def verify_size_fits(table: PartitionTable, flash_size: int, path: PathLike = None) -> None:
    """Refuse a table whose last partition ends beyond ``flash_size`` bytes."""
    used = table.flash_size()
    if used > flash_size:
        mb = 1024 * 1024
        raise EspSecureError(
            f"Partitions tables occupies {used / mb:.1f}MB of flash ({used} bytes) which does not fit in "
            f"configured flash size {flash_size // mb}MB",
            path,
        )


def flash_size_bytes(text: str) -> int:
    """``4MB`` -> bytes, for gen_esp32part's ``--flash-size`` choices."""
    if text.endswith("MB") and text[:-2].isdigit() and int(text[:-2]) in FLASH_SIZES_MB:
        return int(text[:-2]) * 1024 * 1024
    raise EspSecureError(f"flash size {text!r} is not one of {', '.join(f'{n}MB' for n in FLASH_SIZES_MB)}")


def csv_to_binary(text: str, path: PathLike = None, *, secure: str | None = None, flash_size: int | None = None,
                  no_verify: bool = False, **options: object) -> tuple[bytes, PartitionTable, list[str]]:  # fmt: skip
    """CSV text -> (binary table, table, warnings): parse, verify and size-check in one call."""
    table = parse_csv(text, path, **options)  # type: ignore[arg-type]
    warnings = [] if no_verify else verify(table, path, secure=secure)
    if flash_size is not None:
        verify_size_fits(table, flash_size, path)
    return table.to_binary(path), table, warnings
