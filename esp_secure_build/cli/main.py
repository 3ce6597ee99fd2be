"""Entry point of ``esp-secure``.

Commands mirror the reference tools (esptool, espsecure, the NVS generator,
gen_esp32part) argument for argument. Each command lives in a module that is
imported only when that command runs, so start-up stays fast.

A command module provides ``configure(name, parser)`` to add its arguments and
``run(name, args)`` to do the work; it raises
:class:`~esp_secure_build.errors.EspSecureError` for bad input, which becomes
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from .. import __version__, fileio
from ..errors import EspSecureError

# command -> (module under esp_secure_build.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    # esptool
    "elf2image": ("image_cmds", "convert an ELF file to an ESP app or bootloader image (esptool elf2image)"),
    "image-info": ("image_cmds", "show the header, segments, checksum, hash and descriptor of an image"),
    "merge-bin": ("factory_cmds", "merge images into one factory image, raw or Intel HEX (esptool merge-bin)"),
    "verify-release": ("release_cmds", "check a release folder as the chip sees it: decrypt, boot chain, signatures, NVS"),
    # espsecure: Secure Boot
    "sign-data": ("secure_boot_cmds", "sign an image for Secure Boot V1 or V2 (espsecure sign-data)"),
    "verify-signature": ("secure_boot_cmds", "verify a Secure Boot V1 or V2 signature"),
    "signature-info-v2": ("secure_boot_cmds", "list the Secure Boot V2 signature blocks of an image"),
    "digest-secure-bootloader": ("secure_boot_cmds", "Secure Boot V1 reflashable bootloader digest"),
    "generate-signing-key": ("secure_boot_cmds", "make a new Secure Boot signing key (mode 0600)"),
    "extract-public-key": ("secure_boot_cmds", "write the public key of a signing key"),
    "digest-sbv2-public-key": ("secure_boot_cmds", "SHA-256 of a V2 public key, the value burned into eFuse"),
    "digest-rsa-public-key": ("secure_boot_cmds", "older name of digest-sbv2-public-key"),
    "digest-private-key": ("secure_boot_cmds", "Secure Boot V1 key digest of a private key"),
    # espsecure: flash encryption
    "encrypt-flash-data": ("flash_encryption_cmds", "encrypt data for a flash address (espsecure)"),
    "decrypt-flash-data": ("flash_encryption_cmds", "decrypt data read from a flash address (espsecure)"),
    "generate-flash-encryption-key": ("flash_encryption_cmds", "make a new flash encryption key (mode 0600)"),
    # ESP-IDF tools
    "partition-table": ("partition_table_cmds", "partition table CSV <-> binary (gen_esp32part.py)"),
    "nvs": ("nvs_cmds", "NVS partitions: generate, encrypt, decrypt, generate-key (nvs_partition_gen)"),
    "mfg": ("nvs_cmds", "per-device NVS partitions from a config and a values CSV (mfg_gen.py)"),
    "fetch-ca": ("cert_cmds", "fetch a server's root CA certificate over TLS and check it"),
    "check-cert": ("cert_cmds", "check a CA certificate (PEM, DER, bundle or s_client output)"),
    "crt-bundle": ("cert_cmds", "ESP-IDF esp_crt_bundle from PEM/DER files (gen_crt_bundle.py)"),
}

# esptool/espsecure 4.x spellings still accepted, as the reference tools do.
ALIASES: dict[str, str] = {name.replace("-", "_"): name for name in COMMANDS if "-" in name}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (like every other error) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _top_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS)) + 2  # the longest name still gets two spaces
    parser = _Parser(
        prog="esp-secure",
        description="Secure ESP32-family release artifacts (images, signatures, encryption, NVS).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<{width}}{text}" for name, (_, text) in COMMANDS.items()),
    )
    parser.add_argument("-c", "--chip", default="auto", help="target chip, as esptool's --chip (default: auto)")
    parser.add_argument("--version", action="version", version=f"esp-secure {__version__}")
    parser.add_argument("command", metavar="COMMAND", help="one of the commands below")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    # Split global options from the command and its own arguments.
    index = _command_index(argv)
    if index is None:
        top.parse_args(argv)  # prints help or a usage error
        top.print_usage(sys.stderr)
        return 2
    global_args = top.parse_args(argv[: index + 1])
    name = ALIASES.get(global_args.command, global_args.command)
    if name not in COMMANDS:
        top.error(f"unknown command {global_args.command!r}")
    module = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")
    parser = _Parser(prog=f"esp-secure {name}", description=COMMANDS[name][1])
    module.configure(name, parser)
    args = parser.parse_args(argv[index + 1 :])
    args.chip = global_args.chip
    # No command writes over one of its inputs or over a key file (see fileio.guard_outputs).
    fileio.guard_outputs()
    try:
        return int(module.run(name, args) or 0)
    except EspSecureError as exc:
        print(f"esp-secure {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"esp-secure {name}: interrupted", file=sys.stderr)
        return 130


def _command_index(argv: list[str]) -> int | None:
    """Index of the first positional (the command), skipping global options."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-c", "--chip"):
            i += 2
            continue
        if arg.startswith("-"):
            if arg in ("-h", "--help", "--version"):
                return None
            i += 1
            continue
        return i
    return None


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":
    run()
