"""``merge-bin``: one factory image from several, with ``esptool merge-bin``'s arguments.

``esp-secure --chip CHIP merge-bin -o OUT [--format raw|hex] [--target-offset N]
[--pad-to-size 4MB] [--flash-mode/--flash-freq/--flash-size keep|...] ADDR FILE...``

Like esptool, ``@file`` arguments are replaced by the words of that file, so
``merge-bin -o factory.bin @flash_args`` merges what ESP-IDF's flash_args lists.
UF2 output is not supported.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from .. import factory
from ..chips import FLASH_MODES, get_chip
from ..errors import EspSecureError
from ..fileio import write_atomic
from .common import add_option

_FREQS = ["80m", "64m", "60m", "48m", "40m", "32m", "30m", "26m", "24m", "20m", "16m", "15m", "12m"]
_SIZES = ["256KB", "512KB", "1MB", "2MB", "2MB-c1", "4MB", "4MB-c1", "8MB", "16MB", "32MB", "64MB", "128MB"]


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    parser.fromfile_prefix_chars = "@"
    parser.convert_arg_line_to_args = shlex.split  # type: ignore[method-assign]
    parser.add_argument("-o", "--output", required=True, help="output file")
    parser.add_argument(
        "-f", "--format", choices=["raw", "uf2", "hex"], default="raw", help="output format (default raw)"
    )
    add_option(parser, "--chunk-size", help="UF2 only (not supported)")
    add_option(parser, "--md5-disable", action="store_true", help="UF2 only (not supported)")
    add_option(parser, "-t", "--target-offset", type=_int, default=0, help="flash address the output starts at (raw)")
    add_option(
        parser, "--pad-to-size", choices=factory.PAD_SIZES, help="pad the output with 0xFF up to this flash size (raw)"
    )
    add_option(parser, "-ff", "--flash-freq", choices=["keep", *_FREQS], default=os.environ.get("ESPTOOL_FF", "keep"))
    add_option(
        parser, "-fm", "--flash-mode", choices=["keep", *FLASH_MODES], default=os.environ.get("ESPTOOL_FM", "keep")
    )
    add_option(parser, "-fs", "--flash-size", choices=["keep", *_SIZES], default=os.environ.get("ESPTOOL_FS", "keep"))
    parser.add_argument("addr_filename", nargs="+", metavar="ADDRESS FILE", help="flash address and file, repeated")


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def run(name: str, args: argparse.Namespace) -> int:
    if args.chip == "auto":
        raise EspSecureError("merge-bin needs the chip: give --chip before the command (e.g. --chip esp32c3)")
    chip = get_chip(args.chip)
    if args.format == "uf2":
        raise EspSecureError("UF2 output is not supported; use --format raw or hex")
    pairs = args.addr_filename
    if len(pairs) % 2:
        raise EspSecureError("arguments must be pairs of a flash address and a file name")
    regions: list[factory.Region] = []
    for addr_text, path in zip(pairs[::2], pairs[1::2], strict=True):
        try:
            address = int(addr_text, 0)
        except ValueError:
            raise EspSecureError(f'address "{addr_text}" must be a number') from None
        regions += factory.regions_from_file(address, path)
    if args.format == "hex" and len(pairs) == 2:
        print("Warning: only one input file: the output may include padding if it was merged before.", file=sys.stderr)
    notes: list[str] = []
    data = factory.merge_bin(
        chip, regions, args.format,
        target_offset=args.target_offset, pad_to_size=args.pad_to_size,
        flash_mode=args.flash_mode, flash_freq=args.flash_freq, flash_size=args.flash_size, notes=notes,
    )  # fmt: skip
    write_atomic(args.output, data)
    for note in notes:
        print(note)
    print(f"Wrote {len(data):#x} bytes to {args.output}, ready to flash to offset {args.target_offset:#x}.")
    return 0
