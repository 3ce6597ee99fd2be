"""``verify-release``: check a release folder the way the chip will see it.

:func:`verify_release` starts from the factory image (what the factory
flashes), not from the intermediate files, and does what the ROM and the
bootloader do: decrypt each flash-encrypted region with the flash key (when
given), read the bootloader at the chip's offset (valid image; Secure Boot V2:
every signature block verifies with an expected key; V1: the digest block at
0x0 matches the bootloader and the V1 key), read the partition table from
flash, check every app partition's image and signatures, recover the NVS keys
from the ``nvs_keys`` partition and parse the NVS partitions with them, check
that otadata is erased. Then the files: the ``.hex`` holds the ``.bin``'s
bytes, every file of the folder is in the manifest with its SHA-256, and the
factory image holds every flashed file at its address.

Each check is one :class:`Check` row of the :class:`Report`; a check that
cannot run (no flash key, no V1 key) is "skipped", never passed. Bad input
(no such folder, a key file of the wrong size) raises :class:`EspSecureError`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .chips import Chip, get_chip
from .errors import EspSecureError
from .fileio import read_bytes

OK, FAIL, SKIP = "ok", "FAIL", "skipped"


class Check(NamedTuple):
    """One row: what was checked, its status (ok, FAIL, skipped) and a short detail."""

    name: str
    status: str
    detail: str


class Report:
    """The rows of one verification, in the order they ran."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.checks: list[Check] = []

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, " ".join(detail.split())))

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def passed(self) -> bool:
        return not self.failures

    def table(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [f"{c.name:<{width}}  {c.status:<7}  {c.detail}".rstrip() for c in self.checks]
        verdict = "VERIFIED" if self.passed else f"NOT VERIFIED: {', '.join(c.name for c in self.failures)}"
        return "\n".join([*lines, f"{self.folder}: {verdict}"]) + "\n"


# --- Intel HEX ---------------------------------------------------------------------------------


def hex_matches_bin(
    hex_data: bytes, raw: bytes, path: str | None = None, regions: Sequence[tuple[int, bytes]] = ()
) -> str | None:
    """None when the HEX file holds exactly ``raw`` (0xFF where it has no data), else the problem.

    ``regions`` (what the image was merged from) allow a fast path: when the file is
    exactly our writer's output for them and they make up ``raw``, no parsing is needed.
    """
    from .ihex import decode, is_encoding

    image = bytearray(b"\xff" * len(raw))
    if regions:
        for address, payload in regions:
            image[address : address + len(payload)] = payload
        if image == raw and is_encoding(hex_data, regions):
            return None
        image = bytearray(b"\xff" * len(raw))
    for address, payload in decode(hex_data, path).items():
        if address + len(payload) > len(raw):
            return f"has data at {address + len(payload) - 1:#x}, beyond the end of the .bin ({len(raw):#x})"
        image[address : address + len(payload)] = payload
    if bytes(image) != raw:
        first = next(i for i in range(len(raw)) if image[i] != raw[i])
        return f"differs from the .bin at {first:#x}"
    return None


# --- the verification ---------------------------------------------------------------------------


class _Flash:
    """The factory image as the chip reads it: raw bytes, decrypted where flash encryption covers them."""

    def __init__(self, raw: bytes, chip: Chip, key: bytes | None, conf: int) -> None:
        self.raw, self.chip, self.key, self.conf = raw, chip, key, conf
        self._plain: dict[int, bytes] = {}  # offset -> plaintext decrypted from there

    def raw_at(self, offset: int, size: int) -> bytes:
        """What is flashed at [offset, offset+size): the factory bytes, erased flash beyond them."""
        data = self.raw[offset : offset + size]
        return data + b"\xff" * (size - len(data))

    def written(self, offset: int, size: int) -> bool:
        """True when the factory image writes anything but 0xFF there."""
        return offset < len(self.raw) and self.raw[offset : offset + size].count(0xFF) != len(self.raw[offset : offset + size])

    def read(self, offset: int, size: int, encrypted: bool) -> bytes:
        """Plaintext at [offset, offset+size) (only the part the factory image covers, 128-byte aligned)."""
        from .flash_encryption import decrypt, scheme_for_chip

        end = min(offset + size, len(self.raw))
        end += -(end - offset) % 128
        data = self.raw_at(offset, max(0, end - offset))
        if not encrypted or self.key is None or not data:
            return data
        # Each 16/32-byte block decrypts on its own (its address is the tweak), so a
        # shorter read at the same offset is a prefix of a longer one: decrypt once.
        known = self._plain.get(offset, b"")
        if len(known) < len(data):
            known = self._plain[offset] = decrypt(data, self.key, offset, scheme_for_chip(self.chip), self.conf)
        return known[: len(data)]


def _image(data: bytes, chip: Chip, what: str, check_digest: bool = True) -> tuple[Any, int]:
    """(ImageInfo, end of image + appended digest) of a valid image for ``chip``; EspSecureError otherwise."""
    from .image import read_image

    info = read_image(data, what)
    if info.chip_id != chip.image_chip_id:
        raise EspSecureError(f"is an image for chip id {info.chip_id}, not {chip.title} ({chip.image_chip_id})", what)
    if not info.checksum_valid:
        raise EspSecureError(f"checksum {info.stored_checksum:#04x} != computed {info.computed_checksum:#04x}", what)
    if check_digest and info.digest_valid is False:
        raise EspSecureError("appended SHA-256 does not match the image", what)
    return info, info.image_length + (32 if info.hash_appended else 0)


def _v2_signed(data: bytes, end: int) -> bytes:
    sig = end + (-end % 4096)
    return data[: sig + 4096]


def _short(digests: Sequence[bytes]) -> str:
    return ", ".join(d.hex()[:16] + "…" for d in digests)


class _Verifier:
    def __init__(self, folder: str, report: Report, manifest: dict[str, Any], chip: Chip) -> None:
        self.folder, self.report, self.manifest, self.chip = folder, report, manifest, chip
        sb = manifest.get("secure_boot") or {}
        self.sb_version = int(sb.get("version") or 0)

    def check(self, name: str, func: Callable[[], str | tuple[str, str]]) -> bool:
        """Run one check; its return value is the detail (or (status, detail)); an error is a FAIL."""
        try:
            result = func()
        except EspSecureError as exc:
            self.report.add(name, FAIL, str(exc))
            return False
        status, detail = result if isinstance(result, tuple) else (OK, result)
        self.report.add(name, status, detail)
        return status != FAIL

    def path(self, rel: str) -> str:
        return os.path.join(self.folder, *rel.split("/"))


def _list_files(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            found.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    return found


def verify_release(
    folder: str,
    *,
    flash_key: bytes | None = None,
    expect_digests: Sequence[bytes] = (),
    v1_key: bytes | None = None,
    efuse_summary: dict[str, Any] | None = None,
    flash_key_path: str | None = None,
) -> Report:
    """Verify the release in ``folder``; see the module docstring. Bad input raises EspSecureError."""
    from . import manifest as manifest_mod

    if not os.path.isdir(folder):
        raise EspSecureError("release folder not found (or not a folder)", folder)
    mpath = os.path.join(folder, manifest_mod.MANIFEST_NAME)
    if not os.path.exists(mpath):
        raise EspSecureError("not a release folder: it has no manifest.json", folder)
    report = Report(folder)
    try:
        manifest = manifest_mod.load(mpath)
        chip = get_chip(str(manifest.get("chip")))
    except EspSecureError as exc:
        report.add("manifest", FAIL, str(exc))
        return report
    v = _Verifier(folder, report, manifest, chip)
    fe = manifest.get("flash_encryption")
    if flash_key is not None and fe:
        from .flash_encryption import check_key_for_chip

        check_key_for_chip(flash_key, chip, flash_key_path)

    # Files against the manifest: hashes, and nothing unlisted.
    def files() -> str:
        listed = {f["file"]: f for f in manifest["files"]}
        on_disk = [f for f in _list_files(folder) if f != manifest_mod.MANIFEST_NAME]
        extra = [f for f in on_disk if f not in listed]
        if extra:
            raise EspSecureError(f"{extra[0]} is not part of this release (not in the manifest); remove it", folder)
        for rel, entry in listed.items():
            p = v.path(rel)
            if not os.path.isfile(p):
                raise EspSecureError("listed in the manifest but missing", p)
            data = read_bytes(p)
            if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                raise EspSecureError("differs from the manifest (size or SHA-256): changed after the build", p)
        return f"{len(listed)} files match the manifest"

    v.check("manifest", files)

    factory_name = "factory-encrypted" if fe else "factory"
    factory_path = v.path(factory_name + ".bin")
    if not os.path.isfile(factory_path):
        report.add("factory image", FAIL, f"{factory_name}.bin is missing")
        return report
    raw = read_bytes(factory_path, "factory image")

    def hex_check() -> str:
        hex_path = v.path(factory_name + ".hex")
        regions = [(int(i["offset"], 16), read_bytes(v.path(i["file"]))) for i in manifest["flash"]]
        problem = hex_matches_bin(read_bytes(hex_path, "factory HEX"), raw, hex_path, regions)
        if problem:
            raise EspSecureError(problem, hex_path)
        return f"{factory_name}.hex holds the same bytes as {factory_name}.bin"

    v.check("factory .hex", hex_check)

    def layout() -> str:
        end = 0
        for item in sorted(manifest["flash"], key=lambda i: int(i["offset"], 16)):
            offset = int(item["offset"], 16)
            data = read_bytes(v.path(item["file"]))
            if raw[offset : offset + len(data)] != data:
                raise EspSecureError(f"does not hold {item['file']} at {offset:#x}", factory_path)
            if raw[end:offset].count(0xFF) != offset - end:
                raise EspSecureError(f"holds data at {end:#x}..{offset:#x} that no release file accounts for", factory_path)
            end = offset + len(data)
        if raw[end:].count(0xFF) != len(raw) - end:
            raise EspSecureError(f"holds data after {end:#x} that no release file accounts for", factory_path)
        return f"{len(manifest['flash'])} regions at their flash addresses"

    v.check("factory layout", layout)

    if fe and flash_key is None:
        report.add("flash view", SKIP, "the release is flash-encrypted: give --flash-key to check what the chip reads")
        _efuse(v, efuse_summary, expect_digests, flash_key)
        return report
    conf = int((fe or {}).get("flash_crypt_conf", 0xF))
    flash = _Flash(raw, chip, flash_key if fe else None, conf)
    expected, source = _expected(v, expect_digests)
    _check_flash(v, flash, expected, source, v1_key)
    _efuse(v, efuse_summary, expect_digests or expected, flash_key)
    return report


def _expected(v: _Verifier, given: Sequence[bytes]) -> tuple[list[bytes], str]:
    if given:
        return list(given), "--expect-digest"
    digests = (v.manifest.get("secure_boot") or {}).get("key_digests") or []
    try:
        return [bytes.fromhex(d) for d in digests], "the manifest"
    except (TypeError, ValueError):
        return [], "the manifest (unreadable)"


def _check_flash(v: _Verifier, flash: _Flash, expected: list[bytes], source: str, v1_key: bytes | None) -> None:
    """The ROM's and the bootloader's view: bootloader, table, apps, otadata, NVS."""
    from .partition_table import APP, DATA, SUBTYPE_NVS_KEYS, SUBTYPE_OTA, parse_binary

    chip, manifest = v.chip, v.manifest
    table_offset = int(manifest.get("partition_table_offset") or "0x8000", 16)
    encrypted = flash.key is not None

    def signatures(data: bytes, end: int, what: str) -> str:
        from .secure_boot import v2

        if v.sb_version != 2:
            return ""
        if not expected:
            raise EspSecureError(f"no expected key digests (none given, none in {source})", what)
        result = v2.verify(_v2_signed(data, end), expect_digests=expected, path=what)
        blocks = [b.key_digest for b in result.blocks]
        return f"; {len(blocks)} signature block(s) verify, keys {_short(blocks)} (expected from {source})"

    def bootloader() -> str | tuple[str, str]:
        from .secure_boot import v1

        if v.sb_version == 1:
            region = flash.read(0, table_offset, encrypted)
            # The V1 ROM reads whole 128-byte blocks and ignores the appended SHA-256: the digest
            # image drops a tail of up to 32 bytes (espsecure's rule), cutting it when the image
            # ends 16 or 32 bytes into a block. The V1 digest below covers what the ROM reads.
            _info, end = _image(region[chip.bootloader_offset :], chip, "bootloader", check_digest=False)
            if v1_key is None:
                return SKIP, f"valid {chip.title} image at {chip.bootloader_offset:#x}; the V1 digest at 0x0 needs --v1-key"
            image = region[chip.bootloader_offset : chip.bootloader_offset + end]
            want = v1.digest_secure_bootloader(image, v1_key, region[: v1.IV_LEN])
            if region[: len(want)] != want:
                raise EspSecureError("Secure Boot V1 digest at 0x0 does not match the bootloader and the V1 key",
                                     "bootloader")  # fmt: skip
            return f"valid {chip.title} image at {chip.bootloader_offset:#x}; Secure Boot V1 digest at 0x0 matches"
        region = flash.read(chip.bootloader_offset, table_offset - chip.bootloader_offset, encrypted)
        _info, end = _image(region, chip, "bootloader")
        return f"valid {chip.title} image at {chip.bootloader_offset:#x}" + signatures(region, end, "bootloader")

    v.check("bootloader", bootloader)

    table_holder: list[Any] = []

    def table() -> str:
        data = flash.read(table_offset, 0xC00, encrypted)[:0xC00]
        try:
            t = parse_binary(data, "partition table", offset=table_offset)
        except EspSecureError as exc:
            hint = " (wrong flash key?)" if encrypted else ""
            raise EspSecureError(f"{exc}{hint}") from None
        for item in manifest["flash"]:
            if item["region"] in {p.name for p in t} and t.find(item["region"]).offset != int(item["offset"], 16):
                raise EspSecureError(f"partition {item['region']!r} is at {t.find(item['region']).offset:#x} in flash, "
                                     f"the release flashes it at {item['offset']}", "partition table")  # fmt: skip
        table_holder.append(t)
        return f"{len(t)} partitions at {table_offset:#x}, MD5 ok"

    if not v.check("partition table", table):
        return
    parts = table_holder[0]

    apps = parts.find_type(APP)
    boot_app = next((p for p in apps if p.subtype == 0x00), None) or next((p for p in apps if p.subtype == 0x10), None)
    for part in apps:

        def app(part: Any = part) -> str:
            if not flash.written(part.offset, part.size):
                if part is boot_app:
                    raise EspSecureError(f"is empty: the bootloader has no app to boot at {part.offset:#x}", f"app {part.name}")
                return "empty (erased)"
            data = flash.read(part.offset, part.size, encrypted)
            what = f"app {part.name}"
            info, end = _image(data, chip, what)
            detail = f"valid image at {part.offset:#x}"
            want = manifest.get("app") or {}
            d = info.app_desc
            if d is not None and want and (d.project_name, d.version, d.secure_version) != (
                    want.get("project_name"), want.get("version"), want.get("secure_version")):  # fmt: skip
                raise EspSecureError(f"holds {d.project_name} {d.version} (secure version {d.secure_version}), "
                                     f"the manifest says {want.get('project_name')} {want.get('version')}", what)  # fmt: skip
            if d is not None:
                detail += f", {d.project_name} {d.version}, secure version {d.secure_version}"
            if v.sb_version == 1:
                detail += _v1_app(v, data, end, expected, what)
            return detail + signatures(data, end, what)

        v.check(f"app {part.name}", app)

    for part in parts.find_type(DATA, SUBTYPE_OTA):

        def otadata(part: Any = part) -> str:
            if not flash.written(part.offset, part.size):
                return "erased (not written)"
            data = flash.read(part.offset, part.size, encrypted)[: part.size]
            if data.count(0xFF) == len(data):
                return "erased"
            seq = _otadata_seq(data)
            if seq is None:
                raise EspSecureError("is neither erased nor a valid OTA selection (wrong flash key, or corrupt)",
                                     f"otadata {part.name}")  # fmt: skip
            slots = sorted((p for p in apps if 0x10 <= p.subtype < 0x20), key=lambda p: p.subtype)
            if not slots:
                raise EspSecureError("selects an OTA slot, but the table has none", f"otadata {part.name}")
            chosen = slots[(seq - 1) % len(slots)]
            if not flash.written(chosen.offset, chosen.size):
                raise EspSecureError(f"selects {chosen.name}, which is empty", f"otadata {part.name}")
            return f"selects {chosen.name} (sequence {seq})"

        v.check(f"otadata {part.name}", otadata)

    _check_nvs(v, flash, parts, encrypted, SUBTYPE_NVS_KEYS)

    def copies() -> str | tuple[str, str]:
        """The plaintext files (the OTA app.bin, bootloader.bin, ...) hold what the chip reads."""
        offsets = {i["region"]: int(i["offset"], 16) for i in manifest["flash"]}
        names = []
        for entry in manifest["files"]:
            if entry.get("offset") is not None or entry.get("region") not in offsets:
                continue
            data = read_bytes(v.path(entry["file"]))
            if flash.read(offsets[entry["region"]], len(data), encrypted)[: len(data)] != data:
                raise EspSecureError(f"is not what the chip reads in region {entry['region']!r}", v.path(entry["file"]))
            names.append(entry["file"])
        if not names:
            return SKIP, "no plaintext copies in the release"
        return f"{', '.join(names)} equal what the chip reads"

    if encrypted:
        v.check("plaintext copies", copies)


def _otadata_seq(data: bytes) -> int | None:
    """The highest valid OTA sequence number of the two otadata sectors (CRC-checked), None when there is none."""
    import struct

    from .nvs.layout import crc32_nvs  # the same CRC-32 (ESP-IDF's esp_rom_crc32_le from ~0)

    seqs = []
    for base in (0, 0x1000):
        entry = data[base : base + 32]
        if len(entry) == 32:
            seq, crc = struct.unpack_from("<I", entry, 0)[0], struct.unpack_from("<I", entry, 28)[0]
            if seq != 0xFFFFFFFF and crc == crc32_nvs(entry[:4]):
                seqs.append(seq)
    return max(seqs) if seqs else None


def _v1_app(v: _Verifier, data: bytes, end: int, expected: list[bytes], what: str) -> str:
    from .secure_boot import v1
    from .secure_boot.keys import load_public_key_bytes, public_key_digest

    pems = sorted(f["file"] for f in v.manifest["files"] if f.get("role") == "secure-boot-public-key")
    if not pems:
        raise EspSecureError("no Secure Boot V1 public key in the release to check the signature with", what)
    key = load_public_key_bytes(read_bytes(v.path(pems[0]), "public key"), v.path(pems[0]))
    if expected and public_key_digest(key) not in expected:
        raise EspSecureError(f"the release's V1 public key {public_key_digest(key).hex()[:16]}… is not an expected key", what)
    v1.verify(data[: end + v1.SIGNATURE_BLOCK_LEN], key, what)
    return f"; Secure Boot V1 signature verifies with {pems[0]}"


def _check_nvs(v: _Verifier, flash: _Flash, parts: Any, encrypted: bool, keys_subtype: int) -> None:
    from .nvs.crypto import NvsKeys, decrypt_partition
    from .nvs.layout import check_partition

    nvs_enc = {n.get("partition"): n for n in v.manifest.get("nvs_encryption") or []}
    keys: dict[str, NvsKeys] = {}
    keys_failed: set[str] = set()
    for part in parts:
        if part.type == 0x01 and part.subtype == keys_subtype and flash.written(part.offset, part.size):

            def recover(part: Any = part) -> str:
                data = flash.read(part.offset, part.size, encrypted)[: part.size]
                keys[part.name] = NvsKeys.from_partition(data, f"NVS keys {part.name}")
                if data[68:].count(0xFF) != len(data) - 68:
                    raise EspSecureError("holds data after the keys and their CRC", f"NVS keys {part.name}")
                return "keys recovered (CRC ok)" + (" from the flash-encrypted partition" if encrypted else "")

            if not v.check(f"nvs keys {part.name}", recover):
                keys_failed.add(part.name)
    for part in parts:
        if not part.is_nvs:
            continue

        def nvs(part: Any = part) -> str | tuple[str, str]:
            what = f"nvs {part.name}"
            if not flash.written(part.offset, part.size):
                return "empty (erased)"
            data = flash.raw_at(part.offset, part.size)  # NVS is never flash-encrypted
            spec = nvs_enc.get(part.name)
            if spec is not None:
                key_part = spec.get("keys_partition", "nvs_keys")
                if key_part in keys_failed:
                    return SKIP, f"needs the keys from partition {key_part!r}, which failed"
                if key_part not in keys:
                    raise EspSecureError(f"is encrypted but no keys came from partition {key_part!r}", what)
                data = decrypt_partition(data, keys[key_part], what)
            namespaces, items = check_partition(data, what)
            return f"{'decrypts and ' if spec else ''}parses: {namespaces} namespace(s), {items} item(s)"

        v.check(f"nvs {part.name}", nvs)


def _efuse(v: _Verifier, summary: dict[str, Any] | None, digests: Sequence[bytes], flash_key: bytes | None) -> None:
    """Compare an ``espefuse summary --format json`` with what the release needs."""
    if summary is None:
        return
    try:
        from .efuse import check_efuse_summary  # type: ignore[import-not-found]
    except ImportError:
        raise EspSecureError("--efuse-summary: eFuse checks are not available in this version") from None
    fe = v.manifest.get("flash_encryption")
    bits = (fe or {}).get("key_bits")
    xts_bits = bits if fe and "XTS" in str(fe.get("scheme")) else None
    if not digests:
        digests = [bytes.fromhex(d) for d in (v.manifest.get("secure_boot") or {}).get("key_digests") or []]

    def efuse() -> str:
        problems = check_efuse_summary(summary, chip=v.chip.name, key_digests=list(digests),
                                       secure_boot_version=v.sb_version or None, flash_encryption=bool(fe),
                                       xts_key_bits=xts_bits, flash_key=flash_key)  # fmt: skip
        if problems:
            raise EspSecureError("; ".join(problems), "eFuse summary")
        return "burned keys, purposes and flash encryption state match the release"

    v.check("efuse", efuse)
