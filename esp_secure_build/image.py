"""ESP app and bootloader images: ELF -> image (as ``esptool elf2image``) and image reading.

Image layout (all little-endian): a 24-byte header (8 common bytes and a 16-byte
extended header), segments of ``{u32 load address, u32 length, data}``, zero
padding to 16 bytes with the XOR checksum in the last byte, then optionally the
SHA-256 of everything before it. Flash-mapped segments are placed so that their
file offset is congruent to their virtual address modulo the MMU page size; the
gaps are filled with pieces of RAM segments or with zero "padding" segments.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections import namedtuple
from collections.abc import Callable

from .chips import FLASH_MODES, FLASH_SIZES, MAX_FLASH_SIZE, Chip, chip_by_image_id
from .descriptors import APP_DESC_MAGIC, APP_DESC_SIZE, AppDesc, BootloaderDesc, parse_app_desc
from .elf import MACHINE_ARCH, ElfImage
from .errors import EspSecureError

IMAGE_MAGIC = 0xE9
CHECKSUM_SEED = 0xEF
HEADER_LEN = 24
SEG_HEADER_LEN = 8
DIGEST_LEN = 32
WP_PIN_DISABLED = 0xEE
MAX_SEGMENTS = 16
ELF_SHA256_APP_OFFSET = 0xB0  # 0x20 (first DROM byte) + offsetof(esp_app_desc_t, app_elf_sha256)

_COMMON_HEADER = struct.Struct("<BBBBI")
_EXT_HEADER = struct.Struct("<BBBBHBHH4sB")
_SEG_HEADER = struct.Struct("<II")


# namedtuples and slotted classes rather than dataclasses: importing dataclasses
# costs every CLI call ~6 ms, and start-up is most of a CLI call.
ImageOptions = namedtuple(
    "ImageOptions",
    [
        "flash_mode", "flash_freq", "flash_size", "min_rev", "min_rev_full", "max_rev_full",
        "secure_pad", "secure_pad_v2", "elf_sha256_offset", "append_digest", "use_segments",
        "mmu_page_size", "pad_to_size", "ram_only_header",
    ],
    defaults=("qio", None, "1MB", 0, 0, 0xFFFF, False, False, None, True, False, None, None, False),
)  # fmt: skip
ImageOptions.__doc__ = """The options of ``esptool elf2image``, with its defaults.

flash_freq None writes header code 0 (esptool's default); elf_sha256_offset None
or 0 means automatic (0xB0 for apps with a flash-mapped ``.flash.appdesc``);
secure_pad is Secure Boot V1 padding (ESP32 only)."""


class _Seg:
    __slots__ = ("addr", "align", "data", "name")

    def __init__(self, addr: int, data: bytes, name: str, align: int = 4):
        self.addr, self.data, self.name, self.align = addr, data, name, align

    def with_data(self, data: bytes, addr: int | None = None) -> _Seg:
        return _Seg(self.addr if addr is None else addr, data, self.name, self.align)


def parse_size(text: str) -> int:
    """A size such as ``4096``, ``0x1000``, ``64KB``, ``1MB`` or ``4M``; ValueError otherwise."""
    t = text.strip().upper()
    for suffix, factor in (("KB", 1024), ("K", 1024), ("MB", 1024 * 1024), ("M", 1024 * 1024)):
        if t.endswith(suffix):
            try:
                return int(t[: -len(suffix)], 0) * factor
            except ValueError:
                break
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not a size") from None


def header_flash_bytes(chip: Chip, flash_mode: str, flash_size: str, flash_freq: str | None) -> tuple[int, int]:
    """Header bytes 2 and 3 for the given flash settings."""
    try:
        mode = FLASH_MODES[flash_mode]
    except KeyError:
        raise EspSecureError(f"unknown flash mode {flash_mode!r}; choose from {', '.join(FLASH_MODES)}") from None
    try:
        size = FLASH_SIZES[flash_size]
    except KeyError:
        raise EspSecureError(f"unknown flash size {flash_size!r}; choose from {', '.join(FLASH_SIZES)}") from None
    if flash_freq is None:
        freq = 0
    else:
        try:
            freq = chip.flash_freqs[flash_freq]
        except KeyError:
            raise EspSecureError(
                f"flash frequency {flash_freq!r} is not supported by {chip.title}; "
                f"choose from {', '.join(chip.flash_freqs)}"
            ) from None
    return mode, size | freq


def select_mmu_page_size(chip: Chip, elf: ElfImage, requested: int | None, warn: Callable[[str], None]) -> int:
    """The MMU page size the flash segments are aligned to, chosen as esptool chooses it."""
    if requested:
        if not chip.configurable_mmu:
            if requested != chip.default_mmu_page_size:
                warn(
                    f"{chip.title} has a fixed {chip.default_mmu_page_size // 1024} KB MMU page; "
                    f"ignoring the requested {requested // 1024} KB"
                )
            return chip.default_mmu_page_size
        if requested not in chip.mmu_page_sizes:
            raise EspSecureError(
                f"{requested} bytes is not a valid {chip.title} MMU page size; choose from "
                + ", ".join(f"{s // 1024}KB" for s in chip.mmu_page_sizes)
            )
        return requested
    page = chip.default_mmu_page_size
    appdesc = next((s for s in elf.sections if ".flash.appdesc" in s.name), None)
    if appdesc is None or not chip.is_flash_address(appdesc.addr) or not chip.configurable_mmu:
        return page
    if len(appdesc.data) < APP_DESC_SIZE:
        raise EspSecureError(
            f"section {appdesc.name} is {len(appdesc.data)} bytes, shorter than esp_app_desc_t ({APP_DESC_SIZE})",
            elf.path,
        )
    desc = parse_app_desc(appdesc.data)
    if desc is None:
        return page
    if desc.mmu_page_size_log2:
        # esptool goes through "N KB": sizes below 1 KB round down to 0.
        size = (2**desc.mmu_page_size_log2 // 1024) * 1024
        if size not in chip.mmu_page_sizes:
            raise EspSecureError(
                f"the app descriptor asks for an MMU page of 2^{desc.mmu_page_size_log2} bytes, "
                f"which {chip.title} does not support",
                elf.path,
            )
        return size
    for size in reversed(chip.mmu_page_sizes):
        if (appdesc.addr - HEADER_LEN - SEG_HEADER_LEN) % size == 0:
            return size
    warn(
        f"{appdesc.name} at {appdesc.addr:#x} is not aligned to any MMU page size of {chip.title} "
        "(0x20 past a page boundary); check the linker script or pass --flash-mmu-page-size"
    )
    return page


def elf_to_image(
    elf: ElfImage,
    chip: Chip,
    options: ImageOptions | None = None,
    warn: Callable[[str], None] = lambda _msg: None,
) -> bytes:
    """Build the image bytes ``esptool --chip <chip> elf2image`` builds from ``elf``."""
    options = options or ImageOptions()
    if options.pad_to_size is not None and not 0 < options.pad_to_size <= MAX_FLASH_SIZE:
        # esptool: "Unknown size 0"; beyond the largest flash the image could never be flashed.
        raise EspSecureError(f"pad-to-size {options.pad_to_size:#x} must be more than 0 and at most {MAX_FLASH_SIZE:#x}")
    if MACHINE_ARCH[elf.machine] != chip.arch:
        raise EspSecureError(
            f"is a {MACHINE_ARCH[elf.machine]} ELF but {chip.title} is {chip.arch}; build it with the {chip.arch} compiler",
            elf.path,
        )
    if not 0 <= options.min_rev <= 255:
        raise EspSecureError(f"--min-rev {options.min_rev} is out of range (0..255)")
    for label, value in (("--min-rev-full", options.min_rev_full), ("--max-rev-full", options.max_rev_full)):
        if not 0 <= value <= 0xFFFF:
            raise EspSecureError(f"{label} {value} is out of range (0..65535)")
    mode, size_freq = header_flash_bytes(chip, options.flash_mode, options.flash_size, options.flash_freq)
    page = select_mmu_page_size(chip, elf, options.mmu_page_size, warn)
    append_digest = options.append_digest and not options.ram_only_header
    secure_pad = "2" if options.secure_pad_v2 else ("1" if options.secure_pad and chip.name == "esp32" else None)
    if options.secure_pad and chip.name != "esp32" and not options.secure_pad_v2:
        warn(f"--secure-pad (Secure Boot V1) only applies to ESP32; no padding added for {chip.title}")

    source = elf.segments if options.use_segments else elf.sections
    segs = [_Seg(s.addr, _pad4(s.data), s.name, s.align) for s in source]

    sha_offset = options.elf_sha256_offset or None
    if sha_offset is None:
        appdesc = next((s for s in segs if ".flash.appdesc" in s.name), None)
        if appdesc is not None and chip.is_flash_address(appdesc.addr):
            sha_offset = ELF_SHA256_APP_OFFSET

    if options.ram_only_header:
        segs.sort(key=lambda s: s.addr)
    segs = _merge_adjacent(segs, chip, options.ram_only_header)
    if len(segs) > MAX_SEGMENTS:
        raise EspSecureError(
            f"has {len(segs)} loadable segments after merging adjacent sections (max {MAX_SEGMENTS} in an image)",
            elf.path,
            hint="merge adjacent output sections in the linker script; first segments: "
            + ", ".join(f"{s.name}@{s.addr:#x}" for s in segs[:6])
            + ", ...",
        )

    writer = _Writer(elf, sha_offset)
    writer.out += _COMMON_HEADER.pack(IMAGE_MAGIC, 0, mode, size_freq, elf.entry)
    writer.out += _EXT_HEADER.pack(
        WP_PIN_DISABLED, 0, 0, 0, chip.image_chip_id, options.min_rev,
        options.min_rev_full, options.max_rev_full, b"\0" * 4, 1 if append_digest else 0,
    )  # fmt: skip

    flash = sorted((s for s in segs if chip.is_flash_address(s.addr)), key=lambda s: s.addr)
    ram = sorted((s for s in segs if not chip.is_flash_address(s.addr)), key=lambda s: s.addr)
    # The app descriptor must be the first flash segment (C6-style maps put IROM
    # below DROM) and the bootloader descriptor the first RAM one (offset 0x20).
    _move_to_front(flash, ".flash.appdesc")
    _move_to_front(ram, ".dram0.bootdesc")
    for prev, cur in itertools.pairwise(flash):
        if prev.addr // page == cur.addr // page:
            raise EspSecureError(
                f"sections {prev.name} ({prev.addr:#010x}) and {cur.name} ({cur.addr:#010x}) start in the same "
                f"{page // 1024} KB flash MMU page, which one image segment cannot map",
                elf.path,
                hint=f"in the linker script, make {cur.name} start exactly where {prev.name} ends "
                f"(no alignment gap) or put both in one output section",
            )

    if options.ram_only_header:
        ram_count = len(ram)
        for seg in ram:
            writer.segment(seg)
        writer.checksum_byte()
        for seg in reversed(flash):
            pad = (seg.addr - len(writer.out) - 2 * SEG_HEADER_LEN) % page
            if pad < chip.bootloader_offset:
                pad += page
            pad -= chip.bootloader_offset
            writer.segment(_Seg(0, bytes(pad), seg.name), checksum=False)
            writer.segment(_esp32_tail_fix(chip, seg, len(writer.out), page), checksum=False)
    else:
        while flash:
            seg = flash[0]
            pad = _alignment_padding(len(writer.out), seg.addr, page)
            if pad:
                if ram and pad > SEG_HEADER_LEN:
                    head = ram[0]
                    piece = _Seg(head.addr, head.data[:pad], head.name, head.align)
                    ram[0] = head.with_data(head.data[pad:], head.addr + len(piece.data))
                    if not ram[0].data:
                        ram.pop(0)
                    writer.segment(piece)
                else:
                    writer.segment(_Seg(0, bytes(pad), seg.name))
            else:
                writer.segment(_esp32_tail_fix(chip, seg, len(writer.out), page))
                flash.pop(0)
        for seg in ram:
            writer.segment(seg)

    tail = 0
    if secure_pad:
        if not append_digest:
            raise EspSecureError("secure padding needs the SHA-256 digest appended (drop --dont-append-digest)")
        tail = 32 + 4 + 64 + 12 if secure_pad == "1" else 32
        pos_after_header = (len(writer.out) + SEG_HEADER_LEN) % page
        pad = (page - pos_after_header - 16 - tail) % page
        writer.segment(_Seg(0, bytes(pad), "secure padding"))
    if not options.ram_only_header:
        writer.checksum_byte()

    out = writer.out
    out[1] = (ram_count if options.ram_only_header else writer.count) & 0xFF
    if append_digest:
        out += hashlib.sha256(out).digest()
    if options.pad_to_size:
        out += b"\xff" * (-len(out) % options.pad_to_size)
    return bytes(out)


class _Writer:
    """Accumulates segments, the running checksum and the ELF SHA-256 patch."""

    def __init__(self, elf: ElfImage, sha_offset: int | None):
        self.out = bytearray()
        self.checksum = CHECKSUM_SEED
        self.count = 0
        self.elf = elf
        self.sha_offset = sha_offset

    def segment(self, seg: _Seg, checksum: bool = True) -> None:
        data = self._patch_sha(seg)
        if len(data) % 4:
            raise EspSecureError(
                f"segment {seg.name or '(padding)'} at {seg.addr:#x} would be {len(data):#x} bytes, not a multiple of 4",
                self.elf.path,
                hint="flash-mapped sections must start at 4-byte aligned addresses",
            )
        if len(data) >= 0x1000000:
            raise EspSecureError(f"segment {seg.name} at {seg.addr:#x} is 16 MiB or larger", self.elf.path)
        self.out += _SEG_HEADER.pack(seg.addr, len(data))
        self.out += data
        self.count += 1
        if checksum:
            self.checksum ^= xor_bytes(data)

    def checksum_byte(self) -> None:
        self.out += bytes(15 - len(self.out) % 16)
        self.out.append(self.checksum)

    def _patch_sha(self, seg: _Seg) -> bytes:
        # esptool tests the offset against [header start, header start + data length),
        # then requires the 32 bytes to lie in the data; we keep that exact rule.
        pos, data, off = len(self.out), seg.data, self.sha_offset
        if off is None or not pos <= off < pos + len(data):
            return data
        rel = off - pos
        if rel < SEG_HEADER_LEN or rel + DIGEST_LEN > len(data):
            raise EspSecureError(
                f"the ELF SHA-256 at image offset {off:#x} would straddle the boundary of segment {seg.name}",
                self.elf.path,
            )
        rel -= SEG_HEADER_LEN
        if any(data[rel : rel + DIGEST_LEN]):
            raise EspSecureError(
                f"image offset {off:#x} (in {seg.name}) is not zero; refusing to overwrite it with the ELF SHA-256",
                self.elf.path,
                hint="the app descriptor's app_elf_sha256 field must be left zero",
            )
        return data[:rel] + self.elf.sha256 + data[rel + DIGEST_LEN :]


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _move_to_front(segs: list[_Seg], name: str) -> None:
    for i, seg in enumerate(segs):
        if seg.name == name:
            segs.insert(0, segs.pop(i))
            return


def _alignment_padding(pos: int, addr: int, page: int) -> int:
    """Bytes of padding segment data needed so the next segment's data lands at addr mod page."""
    need = (page - pos % page) + (addr % page - SEG_HEADER_LEN)
    if need in (0, page):
        return 0
    need -= SEG_HEADER_LEN  # the padding segment has a header too
    return need + page if need < 0 else need


def _esp32_tail_fix(chip: Chip, seg: _Seg, pos: int, page: int) -> _Seg:
    # Old ESP32 second-stage bootloaders skip mapping the last MMU page when a
    # flash segment ends less than 0x24 bytes into it; esptool pads such segments.
    if chip.name != "esp32":
        return seg
    rem = (pos + len(seg.data) + SEG_HEADER_LEN) % page
    if rem < 0x24:
        return seg.with_data(seg.data + bytes(0x24 - rem))
    return seg


def _merge_adjacent(segs: list[_Seg], chip: Chip, ram_only: bool) -> list[_Seg]:
    """Merge neighbours (in list order) that touch and lie in the same memory types."""
    if not segs:
        return []
    segs = [s.with_data(s.data) for s in segs]
    result: list[_Seg] = []
    for i in range(len(segs) - 1, 0, -1):
        prev, nxt = segs[i - 1], segs[i]
        if ram_only:
            # Zero-fill a gap that only exists because of the next section's alignment.
            align = max(nxt.align, 1)
            end = prev.addr + len(prev.data)
            aligned_end = end + (-end % align)
            if aligned_end != end and aligned_end == nxt.addr:
                prev.data += bytes(aligned_end - end)
        if chip.memory_types(prev.addr) == chip.memory_types(nxt.addr) and nxt.addr == prev.addr + len(prev.data):
            prev.data += nxt.data
        else:
            result.insert(0, nxt)
    result.insert(0, segs[0])
    return result


def xor_bytes(data: bytes) -> int:
    """XOR of all bytes, folded in big-integer halves (fast for megabytes)."""
    if not data:
        return 0
    value = int.from_bytes(data, "little")
    width = len(data) * 8
    while width > 8:
        half = ((width // 8 + 1) // 2) * 8
        value = (value >> half) ^ (value & ((1 << half) - 1))
        width = half
    return value & 0xFF


# ---------------------------------------------------------------------------
# Reading images


class ImageSegment:
    """One segment of a parsed image: load address, file offset of its header, data."""

    __slots__ = ("addr", "data", "memory_types", "offset")

    def __init__(self, addr: int, offset: int, data: bytes, memory_types: list[str]):
        self.addr, self.offset, self.data, self.memory_types = addr, offset, data, memory_types


class ImageInfo:
    """Everything :func:`read_image` learns about an image."""

    def __init__(self, **fields: object):
        self.app_desc: AppDesc | None = None
        self.bootloader_desc: BootloaderDesc | None = None
        # Secure Boot V2: (block, digest matches the image) per CRC-valid block; V1: r || s
        self.signature_offset: int | None = None
        self.signature_blocks: list[tuple] = []  # (secure_boot.v2.SignatureBlock, bool)
        self.v1_signature: bytes | None = None
        self.__dict__.update(fields)

    chip: Chip | None
    chip_id: int
    flash_mode: int
    flash_size_freq: int
    entry: int
    wp_pin: int
    min_rev: int
    min_rev_full: int
    max_rev_full: int
    hash_appended: bool
    segments: list[ImageSegment]
    stored_checksum: int
    computed_checksum: int
    image_length: int  # up to and including the checksum byte
    stored_digest: bytes | None
    computed_digest: bytes | None
    trailing: bytes  # bytes after the image (and digest): signatures, padding

    @property
    def checksum_valid(self) -> bool:
        return self.stored_checksum == self.computed_checksum

    @property
    def digest_valid(self) -> bool | None:
        if not self.hash_appended:
            return None
        return self.stored_digest == self.computed_digest

    @property
    def flash_mode_name(self) -> str:
        return next((k for k, v in FLASH_MODES.items() if v == self.flash_mode), f"unknown ({self.flash_mode})")

    @property
    def flash_size_name(self) -> str:
        code = self.flash_size_freq & 0xF0
        return next((k for k, v in FLASH_SIZES.items() if v == code), f"unknown ({code >> 4})")

    @property
    def flash_freq_name(self) -> str:
        code = self.flash_size_freq & 0x0F
        if self.chip is None:
            return f"code {code}"
        names = [k for k, v in self.chip.flash_freqs.items() if v == code]
        return "/".join(names) if names else f"unknown ({code})"


def read_image(data: bytes, path: str | None = None) -> ImageInfo:
    """Parse an app or bootloader image; only :class:`EspSecureError` escapes on bad input."""
    from .descriptors import parse_bootloader_desc

    if len(data) < HEADER_LEN:
        raise EspSecureError(f"is {len(data)} bytes, shorter than an image header ({HEADER_LEN})", path)
    magic, count, mode, size_freq, entry = _COMMON_HEADER.unpack_from(data, 0)
    if magic != IMAGE_MAGIC:
        raise EspSecureError(f"is not an ESP image (magic byte {magic:#04x}, expected 0xe9)", path)
    wp, _d1, _d2, _d3, chip_id, min_rev, min_full, max_full, _res, hash_flag = _EXT_HEADER.unpack_from(data, 8)
    if hash_flag not in (0, 1):
        raise EspSecureError(f"has an invalid hash_appended byte {hash_flag:#04x} (must be 0 or 1)", path)
    chip = chip_by_image_id(chip_id)
    pos = HEADER_LEN
    checksum = CHECKSUM_SEED
    segments: list[ImageSegment] = []
    for index in range(count):
        if pos + SEG_HEADER_LEN > len(data):
            raise EspSecureError(f"ends inside the header of segment {index} (truncated image?)", path)
        addr, length = _SEG_HEADER.unpack_from(data, pos)
        if pos + SEG_HEADER_LEN + length > len(data):
            raise EspSecureError(
                f"segment {index} at {addr:#x} claims {length} bytes but the file ends first (truncated image?)", path
            )
        seg_data = data[pos + SEG_HEADER_LEN : pos + SEG_HEADER_LEN + length]
        segments.append(ImageSegment(addr, pos, seg_data, chip.memory_types(addr) if chip else []))
        checksum ^= xor_bytes(seg_data)
        pos += SEG_HEADER_LEN + length
    pos += 15 - pos % 16
    if pos >= len(data):
        raise EspSecureError("ends before its checksum byte (truncated image?)", path)
    stored_checksum = data[pos]
    image_length = pos + 1
    stored_digest = computed_digest = None
    end = image_length
    if hash_flag:
        if image_length + DIGEST_LEN > len(data):
            raise EspSecureError("ends before its SHA-256 digest (truncated image?)", path)
        stored_digest = data[image_length : image_length + DIGEST_LEN]
        computed_digest = hashlib.sha256(data[:image_length]).digest()
        end += DIGEST_LEN

    info = ImageInfo(
        chip=chip, chip_id=chip_id, flash_mode=mode, flash_size_freq=size_freq, entry=entry, wp_pin=wp,
        min_rev=min_rev, min_rev_full=min_full, max_rev_full=max_full, hash_appended=bool(hash_flag),
        segments=segments, stored_checksum=stored_checksum, computed_checksum=checksum,
        image_length=image_length, stored_digest=stored_digest, computed_digest=computed_digest,
        trailing=data[end:],
    )  # fmt: skip
    _read_signatures(info, data, end)
    if chip is not None:
        drom = next((s for s in segments if "DROM" in s.memory_types), None)
        if drom is not None and len(drom.data) >= APP_DESC_SIZE and drom.data[:4] == APP_DESC_MAGIC:
            info.app_desc = parse_app_desc(drom.data)
        if segments and "DRAM" in segments[0].memory_types:
            info.bootloader_desc = parse_bootloader_desc(segments[0].data)
    return info


SECTOR = 4096
V1_SIGNATURE_LEN = 68  # u32 version 0, then r || s big-endian


def _read_signatures(info: ImageInfo, data: bytes, end: int) -> None:
    """Find Secure Boot V2 blocks (in the sector after the 4 KiB-padded image) or a V1 signature."""
    info.signature_offset = None
    info.signature_blocks = []
    info.v1_signature = None
    sig_off = end + (-end % SECTOR)
    if len(data) >= sig_off + SECTOR and data[sig_off] == 0xE7:
        # Only signed images pay for importing the signature code (and cryptography).
        from .secure_boot.v2 import content_digest, parse_block

        content = data[:sig_off]
        for index in range(3):
            block = parse_block(data[sig_off + index * 1216 : sig_off + (index + 1) * 1216], index)
            if block is None:
                break
            info.signature_blocks.append((block, block.digest == content_digest(content, block.scheme)))
        if info.signature_blocks:
            info.signature_offset = sig_off
    elif len(data) - end == V1_SIGNATURE_LEN and data[end : end + 4] == bytes(4):
        info.v1_signature = data[end + 4 :]
