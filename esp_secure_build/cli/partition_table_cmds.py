"""``partition-table``: CSV <-> binary with ESP-IDF ``gen_esp32part.py`` 1.5's arguments.

``esp-secure partition-table [options] input [output]``: a binary input
(starting ``AA 50``) becomes CSV, anything else is read as CSV and becomes a
binary table. ``-`` or no output writes to stdout. Unlike gen_esp32part, a bad
table never ends in a traceback, and status messages are not printed (only
warnings, on success, with or without ``--quiet`` as gen_esp32part does).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import partition_table as pt
from ..chips import MAX_FLASH_SIZE
from ..errors import EspSecureError
from ..fileio import read_bytes, write_atomic


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--flash-size", nargs="?", choices=[f"{n}MB" for n in pt.FLASH_SIZES_MB],
        help="optional flash size limit: check that the partitions fit",
    )  # fmt: skip
    parser.add_argument("--disable-md5sum", action="store_true", help="no MD5 entry in the binary table")
    parser.add_argument("--no-verify", action="store_true", help="do not verify the partition table fields")
    parser.add_argument("--verify", "-v", action="store_true", help="verify the table (the default; does nothing)")
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="no status messages (accepted for compatibility: there are none)"
    )
    parser.add_argument("--offset", "-o", default="0x8000", help="flash offset of the partition table (default 0x8000)")
    parser.add_argument("--primary-bootloader-offset", default=None, help="flash offset of the primary bootloader")
    parser.add_argument("--recovery-bootloader-offset", default=None, help="flash offset of the recovery bootloader")
    parser.add_argument(
        "--secure", nargs="?", const="v1", choices=["v1", "v2"],
        help="require app partitions suitable for Secure Boot (v1: sizes on 64 KiB)",
    )  # fmt: skip
    parser.add_argument("--extra-partition-subtypes", nargs="*", help="extra subtypes as TYPE,NAME,HEXVALUE")
    parser.add_argument("input", help="CSV or binary partition table ('-' for stdin)")
    parser.add_argument("output", nargs="?", default="-", help="converted table (default: stdout)")


def _offset(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise EspSecureError(f"{option} {text!r} is not a number") from None


def run(name: str, args: argparse.Namespace) -> int:
    offset = _offset(args.offset, "--offset")
    assert offset is not None
    if not 0 <= offset <= MAX_FLASH_SIZE - pt.TABLE_SECTOR_SIZE:
        raise EspSecureError(f"--offset {offset:#x} is outside the flash ({MAX_FLASH_SIZE // 1024 // 1024} MiB)")
    if args.input == "-":
        data = sys.stdin.buffer.read(pt.MAX_TABLE_INPUT + 1)
        if len(data) > pt.MAX_TABLE_INPUT:
            raise EspSecureError(f"partition table on stdin is larger than {pt.MAX_TABLE_INPUT} bytes")
    else:
        data = read_bytes(args.input, "partition table", pt.MAX_TABLE_INPUT)
    source = "<stdin>" if args.input == "-" else args.input
    primary = _offset(args.primary_bootloader_offset, "--primary-bootloader-offset")
    pt.check_bootloader_offset(offset, primary)
    table, was_binary = pt.load(
        data,
        source,
        offset=offset,
        md5=not args.disable_md5sum,
        extra_subtypes=args.extra_partition_subtypes or (),
        primary_bootloader_offset=primary,
        recovery_bootloader_offset=_offset(args.recovery_bootloader_offset, "--recovery-bootloader-offset"),
    )
    warnings = [] if args.no_verify else pt.verify(table, source, secure=args.secure)
    # Without --flash-size, no table may reach past the largest flash of any chip.
    pt.verify_size_fits(table, pt.flash_size_bytes(args.flash_size) if args.flash_size else MAX_FLASH_SIZE, source)
    output = table.to_csv().encode() if was_binary else table.to_binary(source)

    if args.output == "-":
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
    else:
        folder = Path(args.output).parent
        try:
            os.makedirs(folder, exist_ok=True)  # gen_esp32part creates the output folder too
        except OSError as exc:
            raise EspSecureError(f"cannot create output folder: {exc.strerror}", folder) from None
        write_atomic(args.output, output)
    # Like gen_esp32part, warnings are printed even with --quiet.
    for warning in warnings:
        print(warning, file=sys.stderr)
    return 0
