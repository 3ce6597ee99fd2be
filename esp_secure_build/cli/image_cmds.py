"""``elf2image`` and ``image-info``: esptool's offline image commands."""

from __future__ import annotations

import argparse
import os
import sys

from ..chips import CHIPS, FLASH_MODES, FLASH_SIZES, MAX_FLASH_SIZE, MB, get_chip
from ..errors import EspSecureError
from .common import add_option, parse_int, parse_size

_FREQS = sorted({f for c in CHIPS.values() for f in c.flash_freqs}, key=lambda f: int(f[:-1]))


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "image-info":
        parser.add_argument("filename", help="image file")
        return
    parser.add_argument("filename", help="ELF file")
    parser.add_argument("-o", "--output", help="output image (default: the ELF name with .bin)")
    parser.add_argument("-e", "--version", choices=["1", "2", "3"], default="1", help="ESP8266 image version (ignored)")
    add_option(parser, "-r", "--min-rev", type=parse_int, default=0, help=argparse.SUPPRESS)
    add_option(parser, "--min-rev-full", type=parse_int, default=0, help="minimum chip revision (major*100+minor)")
    add_option(parser, "--max-rev-full", type=parse_int, default=65535, help="maximum chip revision (major*100+minor)")
    add_option(parser, "--secure-pad", action="store_true", help="pad for Secure Boot V1 signing (ESP32 only)")
    add_option(parser, "--secure-pad-v2", action="store_true", help="pad so the V2 signature sector starts a new MMU page")
    add_option(parser, "--elf-sha256-offset", type=parse_int, help="write the ELF's SHA-256 at this image offset")
    add_option(parser, "--dont-append-digest", action="store_true", help="do not append the image SHA-256")
    add_option(parser, "--use-segments", action="store_true", help="use ELF program headers instead of sections")
    add_option(parser, "--flash-mmu-page-size", choices=["64KB", "32KB", "16KB", "8KB"], help="MMU page size")
    add_option(parser, "--pad-to-size", help="pad the image with 0xFF to a multiple of this size (e.g. 1MB, 64KB)")
    add_option(parser, "--ram-only-header", action="store_true", help="only RAM segments visible to the ROM; no digest")
    add_option(parser, "-fm", "--flash-mode", choices=list(FLASH_MODES), default="qio", help="flash mode (default qio)")
    add_option(parser, "-ff", "--flash-freq", choices=_FREQS, help="flash frequency (default: header code 0)")
    add_option(parser, "-fs", "--flash-size", choices=list(FLASH_SIZES), default="1MB", help="flash size (default 1MB)")


def run(name: str, args: argparse.Namespace) -> int:
    if name == "image-info":
        return _image_info(args)
    return _elf2image(args)


def _warn(message: str) -> None:
    print(f"esp-secure: warning: {message}", file=sys.stderr)


def _esptool_size(text: str) -> int:
    # esptool accepts only "<n>KB" / "<n>MB" here; we also take plain numbers.
    try:
        size = parse_size(text)
    except argparse.ArgumentTypeError:
        raise EspSecureError(f"--pad-to-size {text!r} is not a size (e.g. 64KB, 1MB)") from None
    if not 0 < size <= MAX_FLASH_SIZE:  # esptool: "Unknown size 0"
        raise EspSecureError(f"--pad-to-size {text!r} must be more than 0 and at most {MAX_FLASH_SIZE // MB}MB")
    return size


def _elf2image(args: argparse.Namespace) -> int:
    from ..elf import read_elf
    from ..fileio import write_atomic
    from ..image import ImageOptions, elf_to_image

    if args.chip == "auto":
        raise EspSecureError(f"specify the --chip argument (choose from {', '.join(CHIPS)})")
    chip = get_chip(args.chip)
    options = ImageOptions(
        flash_mode=args.flash_mode,
        flash_freq=args.flash_freq,
        flash_size=args.flash_size,
        min_rev=args.min_rev,
        min_rev_full=args.min_rev_full,
        max_rev_full=args.max_rev_full,
        secure_pad=args.secure_pad,
        secure_pad_v2=args.secure_pad_v2,
        elf_sha256_offset=args.elf_sha256_offset,
        append_digest=not args.dont_append_digest,
        use_segments=args.use_segments,
        mmu_page_size=parse_size(args.flash_mmu_page_size) if args.flash_mmu_page_size else None,
        pad_to_size=_esptool_size(args.pad_to_size) if args.pad_to_size else None,
        ram_only_header=args.ram_only_header,
    )
    elf = read_elf(args.filename)
    image = elf_to_image(elf, chip, options, warn=_warn)
    output = args.output or os.path.splitext(args.filename)[0] + ".bin"
    write_atomic(output, image)
    print(f"Wrote {output} ({len(image)} bytes, {chip.title} image)")
    return 0


def _image_info(args: argparse.Namespace) -> int:
    from ..fileio import read_bytes
    from ..image import read_image
    from ..image_report import format_image_info

    info = read_image(read_bytes(args.filename, "image"), args.filename)
    print(format_image_info(info, args.filename))
    # Exit 1 (not 2: the file is an image, read fine) when its checksum or hash is wrong,
    # said on stderr too so a script that keeps only stderr sees it.
    bad = [name for name, ok in (("checksum", info.checksum_valid), ("SHA-256 hash", info.digest_valid)) if ok is False]
    if bad:
        print(f"esp-secure image-info: {args.filename}: INVALID image ({' and '.join(bad)} do not match)", file=sys.stderr)
        return 1
    return 0
