"""Factory images and flash argument files.

* :func:`merge_bin` merges images at their flash addresses into one raw
  binary or one Intel HEX file, byte-identical with ``esptool merge-bin``
  (5.6.0): inputs sorted by address, 0xFF between them (raw), optional 0xFF
  padding to a flash size, an output that starts at ``target_offset``, and the
  flash mode/frequency/size patched into the image at the chip's bootloader
  offset (with its appended SHA-256 recomputed) unless all three are ``keep``.
* :func:`flash_args_text` and :func:`flasher_args_json` write the two files
  ESP-IDF leaves in its build folder, so ``esptool write-flash @flash_args``
  (or any tool reading ``flasher_args.json``) flashes the release.

Pre-encrypted or signed bootloaders must be merged with ``keep``: patching
the header would change signed or encrypted bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .chips import FLASH_MODES, FLASH_SIZES, MAX_FLASH_SIZE, Chip
from .errors import EspSecureError
from .fileio import read_bytes

PathLike = str | os.PathLike[str]
KEEP = "keep"
IMAGE_MAGIC = 0xE9
SECTOR = 0x1000
# --pad-to-size choices of esptool merge-bin.
PAD_SIZES = ("256KB", "512KB", "1MB", "2MB", "4MB", "8MB", "16MB", "32MB", "64MB", "128MB")


class Region(NamedTuple):
    """Bytes to place at a flash address; ``source`` names them in messages."""

    address: int
    data: bytes
    source: str = "data"


def size_bytes(text: str) -> int:
    """``4MB``/``512KB`` -> bytes, as esptool reads sizes."""
    for suffix, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * factor
    raise EspSecureError(f"unknown size {text!r} (use e.g. 4MB or 512KB)")


# --- inputs ---------------------------------------------------------------------------


def regions_from_file(address: int, path: PathLike) -> list[Region]:
    """The regions one ``ADDRESS FILE`` pair contributes.

    A file that starts with ``:`` and parses as Intel HEX gives one region per
    contiguous run of addresses, at its own addresses (``address`` is then
    ignored, as esptool does); anything else is raw data at ``address``.
    """
    data = read_bytes(path, "input file")
    name = os.fspath(path)
    if data[:1] == b":":
        from intelhex import HexRecordError, IntelHex, IntelHexError  # only Intel HEX inputs need it

        ih = IntelHex()
        try:
            ih.loadhex(io.StringIO(data.decode("ascii")))
        except (HexRecordError, UnicodeDecodeError):
            pass  # not really Intel HEX: merge it as raw bytes
        except IntelHexError as exc:
            raise EspSecureError(f"bad Intel HEX file: {exc}", path) from None
        else:
            return [Region(start, ih.tobinstr(start=start, end=end), name) for start, end in _runs(ih.addresses())]
    return [Region(address, data, name)]


def _runs(addresses: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous (first, last) address runs of a sorted address list."""
    runs: list[tuple[int, int]] = []
    for addr in sorted(addresses):
        if runs and addr == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], addr)
        else:
            runs.append((addr, addr))
    return runs


def check_bounds(regions: Iterable[Region], flash_size: int = MAX_FLASH_SIZE, target_offset: int = 0) -> None:
    """Refuse data outside the flash: negative addresses or past ``flash_size``."""
    if not 0 <= target_offset < flash_size:
        raise EspSecureError(f"target offset {target_offset:#x} is outside the flash ({_flash_text(flash_size)})")
    for r in regions:
        if r.address < 0 or r.address + len(r.data) > flash_size:
            raise EspSecureError(
                f"data at {r.address:#x}..{r.address + len(r.data):#x} is outside the flash ({_flash_text(flash_size)})",
                r.source,
            )


def _flash_text(size: int) -> str:
    return f"{size // 1024 // 1024} MiB" if size >= 1024 * 1024 else f"{size // 1024} KiB"


def check_overlap(regions: Iterable[Region]) -> None:
    """Refuse two inputs that touch the same 4 KiB flash sector (esptool's rule)."""
    end = 0
    for r in sorted(regions, key=lambda r: r.address):
        first_sector = r.address & ~(SECTOR - 1)
        last_byte = ((r.address + len(r.data) + SECTOR - 1) & ~(SECTOR - 1)) - 1
        if first_sector < end:
            raise EspSecureError(f"input overlaps the previous one in flash sector {first_sector:#x}", r.source)
        end = last_byte


# --- bootloader header patch ----------------------------------------------------------------


def _image_data_length(image: bytes) -> int | None:
    """Length up to and including the checksum byte, or None if ``image`` is not an image.

    Parses like esptool's image loader: 8-byte header, 16-byte extended
    header (hash flag 0 or 1), segments, checksum at the next 16-byte boundary,
    at most 16 segments.
    """
    if len(image) < 24 or image[0] != IMAGE_MAGIC or image[23] not in (0, 1):
        return None
    count = image[1]
    if count > 16:
        return None
    pos = 24
    for _ in range(count):
        if pos + 8 > len(image):
            return None
        _, size = struct.unpack_from("<II", image, pos)
        pos += 8 + size
        if pos > len(image):
            return None
    pos += 15 - pos % 16  # the checksum is the last byte of a 16-byte line
    if pos >= len(image):
        return None
    return pos + 1


def update_flash_params(
    chip: Chip, address: int, image: bytes, flash_mode: str = KEEP, flash_freq: str = KEEP, flash_size: str = KEEP
) -> tuple[bytes, str | None]:
    """Patch header bytes 2-3 of the image at the chip's bootloader offset, as merge-bin does.

    Returns (image, note); the note says what happened (None when nothing was
    considered). Data that is not a valid image is left alone with a note, and
    an appended SHA-256 is recomputed after the patch.
    """
    if len(image) < 8 or address != chip.bootloader_offset or (flash_mode, flash_freq, flash_size) == (KEEP,) * 3:
        return image, None
    if image[0] != IMAGE_MAGIC:
        return image, f"Image at {address:#x} doesn't look like an image file, so not changing any flash settings."
    length = _image_data_length(image)
    if length is None:
        return image, f"Image at {address:#x} is not a valid {chip.title} image, so not changing any flash settings."
    mode = image[2] if flash_mode == KEEP else _lookup(FLASH_MODES, flash_mode, "flash mode", chip)
    freq = image[3] & 0x0F if flash_freq == KEEP else _lookup(chip.flash_freqs, flash_freq, "flash frequency", chip)
    size = image[3] & 0xF0 if flash_size == KEEP else _lookup(FLASH_SIZES, flash_size, "flash size", chip)
    image = image[:2] + bytes([mode, size | freq]) + image[4:]
    if image[23] == 1:
        body = image[:length]
        image = body + hashlib.sha256(body).digest() + image[length + 32 :]
    return image, f"Flash parameters set to {mode << 8 | size | freq:#06x}."


def _lookup(table: dict[str, int], value: str, what: str, chip: Chip) -> int:
    if value not in table:
        raise EspSecureError(f"{what} {value!r} is not supported by {chip.title} (use {', '.join(table)} or keep)")
    return table[value]


# --- merging -------------------------------------------------------------------------------


def merge_bin(
    chip: Chip,
    regions: Sequence[Region],
    fmt: str = "raw",
    *,
    target_offset: int = 0,
    pad_to_size: str | None = None,
    flash_mode: str = KEEP,
    flash_freq: str = KEEP,
    flash_size: str = KEEP,
    notes: list[str] | None = None,
) -> bytes:
    """The merged factory image, ``fmt`` ``"raw"`` or ``"hex"`` (Intel HEX text as bytes).

    ``pad_to_size`` (raw only) pads with 0xFF up to that flash address;
    ``target_offset`` (raw) is the flash address the output starts at. Notes
    about the header patch are appended to ``notes``.
    """
    if fmt not in ("raw", "hex"):
        raise EspSecureError(f"output format {fmt!r} is not supported (use raw or hex)")
    if not regions:
        raise EspSecureError("no input data")
    check_bounds(regions, size_bytes(flash_size.removesuffix("-c1")) if flash_size != KEEP else MAX_FLASH_SIZE,
                 target_offset)  # fmt: skip
    check_overlap(regions)
    ordered = sorted(regions, key=lambda r: r.address)
    if ordered[0].address < target_offset:
        raise EspSecureError(
            f"output target offset is {target_offset:#x}; input data offset {ordered[0].address:#x} is before it",
            ordered[0].source,
        )
    pad_end = size_bytes(pad_to_size) if pad_to_size else None
    patched = []
    for r in ordered:
        data, note = update_flash_params(chip, r.address, r.data, flash_mode, flash_freq, flash_size)
        if note and notes is not None:
            notes.append(note)
        patched.append(Region(r.address, data, r.source))

    if fmt == "hex":
        from .ihex import encode

        return encode((r.address, r.data) for r in patched)

    buf = bytearray()
    for r in patched:
        buf += b"\xff" * max(0, r.address - target_offset - len(buf))
        buf += r.data
    if pad_end is not None:
        buf += b"\xff" * max(0, pad_end - target_offset - len(buf))
    return bytes(buf)


# --- flash argument files -------------------------------------------------------------------


class FlashEntry(NamedTuple):
    """One file ESP-IDF lists in its flash arguments (path relative to the build folder)."""

    name: str  # "bootloader", "app", "partition-table", "otadata", ...
    offset: int
    path: str
    encrypted: bool = False  # True = esptool should encrypt while writing (not for pre-encrypted files)


def flash_args_text(entries: Sequence[FlashEntry], flash_mode: str, flash_freq: str, flash_size: str) -> str:
    """``flash_args`` as ESP-IDF writes it: the flash options, then ``OFFSET PATH`` lines."""
    lines = [f"--flash_mode {flash_mode} --flash_freq {flash_freq} --flash_size {flash_size}"]
    lines += [f"{e.offset:#x} {e.path}" for e in entries]
    return "\n".join(lines) + "\n"


def flasher_args_json(
    entries: Sequence[FlashEntry],
    chip: Chip,
    flash_mode: str,
    flash_freq: str,
    flash_size: str,
    *,
    before: str = "default_reset",
    after: str = "hard_reset",
    stub: bool = True,
) -> str:
    """``flasher_args.json`` in ESP-IDF's layout (its template's spacing, key order and string booleans).

    ESP-IDF sets ``after`` to ``no_reset`` when Secure Boot or flash
    encryption is enabled; pass that for a secure release.
    """

    def q(text: str) -> str:
        return json.dumps(text)

    files = ",\n        ".join(f"{q(f'{e.offset:#x}')} : {q(e.path)}" for e in entries)
    named = ",\n    ".join(
        f'{q(e.name)} : {{ "offset" : {q(f"{e.offset:#x}")}, "file" : {q(e.path)}, '
        f'"encrypted" : {q(str(e.encrypted).lower())} }}'
        for e in entries
    )
    return (
        "{\n"
        f'    "write_flash_args" : [ "--flash_mode", {q(flash_mode)},\n'
        f'                           "--flash_size", {q(flash_size)},\n'
        f'                           "--flash_freq", {q(flash_freq)} ],\n'
        '    "flash_settings" : {\n'
        f'        "flash_mode": {q(flash_mode)},\n'
        f'        "flash_size": {q(flash_size)},\n'
        f'        "flash_freq": {q(flash_freq)}\n'
        "    },\n"
        '    "flash_files" : {\n'
        f"        {files}\n"
        "    },\n"
        f"    {named},\n"
        '    "extra_esptool_args" : {\n'
        f'        "after"  : {q(after)},\n'
        f'        "before" : {q(before)},\n'
        f'        "stub"   : {"true" if stub else "false"},\n'
        f'        "chip"   : {q(chip.name)}\n'
        "    }\n"
        "}\n"
    )
