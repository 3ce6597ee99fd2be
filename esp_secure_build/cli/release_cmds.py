"""``verify-release``: check a release folder as the chip will see it (see :mod:`esp_secure_build.release_check`).

Exit status: 0 verified, 1 a check failed (the table names it), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import EspSecureError
from ..fileio import read_bytes, read_text


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("release_dir", metavar="RELEASE_DIR", help="the release folder (holds manifest.json)")
    parser.add_argument("--flash-key", metavar="F", help="flash encryption key file: decrypt what the chip reads")
    parser.add_argument("--expect-digest", metavar="HEX", action="append", default=[],
                        help="public-key digest (SHA-256, hex) every signature must carry; repeat for several keys "
                             "(default: the digests in the manifest)")  # fmt: skip
    parser.add_argument("--v1-key", metavar="F", help="ESP32 Secure Boot V1 key file (checks the bootloader digest)")
    parser.add_argument("--efuse-summary", metavar="J",
                        help="`espefuse summary --format json` output of the device to check against the release")


def _digest(text: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip().removeprefix("0x"))
    except ValueError:
        value = b""
    if len(value) not in (16, 32):
        raise EspSecureError(f"--expect-digest {text!r} is not a 32-byte (or ESP32-C2 16-byte) hex digest")
    return value


def run(name: str, args: argparse.Namespace) -> int:
    from ..release_check import verify_release

    digests = [_digest(d) for d in args.expect_digest]
    flash_key = read_bytes(args.flash_key, "flash encryption key file") if args.flash_key else None
    v1_key = None
    if args.v1_key:
        from ..secure_boot.v1 import expand_hardware_key

        v1_key = expand_hardware_key(read_bytes(args.v1_key, "V1 key file"), args.v1_key)
    summary = None
    if args.efuse_summary:
        from ..efuse import parse_efuse_summary

        # The --file output, or espefuse's stdout redirected (its banner is skipped).
        summary = parse_efuse_summary(read_text(args.efuse_summary, "eFuse summary"), args.efuse_summary)
    report = verify_release(args.release_dir, flash_key=flash_key, expect_digests=digests, v1_key=v1_key,
                            efuse_summary=summary, flash_key_path=args.flash_key)  # fmt: skip
    sys.stdout.write(report.table())
    if not report.passed:
        print(f"esp-secure {name}: {report.folder}: check failed: {report.failures[0].name}: {report.failures[0].detail}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0
