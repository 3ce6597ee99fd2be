"""``encrypt-flash-data``, ``decrypt-flash-data``, ``generate-flash-encryption-key``.

Arguments as espsecure 5.6.0's. Without ``--chip`` the scheme follows
``--aes-xts`` exactly as in espsecure (ESP32 AES unless ``-x``); with a chip
the scheme and the key sizes follow that chip.
"""

from __future__ import annotations

import argparse

from .. import flash_encryption as fe
from ..chips import get_chip
from ..errors import EspSecureError
from ..fileio import read_bytes, read_key_bytes, refuse_inputs, write_atomic, write_new
from .common import add_allow_published, add_option, parse_int, refuse_known_key


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "generate-flash-encryption-key":
        parser.add_argument(
            "-l", "--keylen", type=int, default=256,
            help="key length in bits: 128, 192 (ESP32 3/4 coding scheme), 256 or 512 (default 256)",
        )  # fmt: skip
        parser.add_argument("key_file", metavar="KEY-FILE", help="key file to create (mode 0600); an existing file is refused")
        return
    decrypting = name == "decrypt-flash-data"
    parser.add_argument("-k", "--keyfile", required=True, help="file with the flash encryption key")
    parser.add_argument(
        "-o", "--output", required=True, help=f"output file for {'plaintext' if decrypting else 'encrypted'} data"
    )
    parser.add_argument(
        "-a", "--address", type=parse_int, required=True,
        help="flash address the data " + ("was read from" if decrypting else "will be written to"),
    )  # fmt: skip
    add_option(
        parser, "--flash-crypt-conf", type=parse_int, default=0xF,
        help="FLASH_CRYPT_CONF eFuse value, ESP32 only, ignored with XTS (default 0xF)",
    )  # fmt: skip
    add_option(parser, "-x", "--aes-xts", action="store_true", help="use XTS-AES (every chip except the ESP32)")
    if not decrypting:  # decrypting with a known key harms nobody
        add_allow_published(parser)
    parser.add_argument("input", metavar="ENCRYPTED-FILE" if decrypting else "PLAINTEXT-FILE", help="data to process")


def run(name: str, args: argparse.Namespace) -> int:
    if name == "generate-flash-encryption-key":
        key = fe.generate_key(args.keylen)
        if args.chip != "auto":
            fe.check_key_for_chip(key, get_chip(args.chip))
        write_new(args.key_file, key, mode=0o600)  # never over an existing file: it may be a key
        print(f"Wrote {args.keylen}-bit random key to {args.key_file} (mode 0600).")
        return 0

    scheme = fe.SCHEME_XTS if args.aes_xts else fe.SCHEME_ESP32
    chip = None
    if args.chip != "auto":
        chip = get_chip(args.chip)
        chip_scheme = fe.scheme_for_chip(chip)
        if args.aes_xts and chip_scheme != fe.SCHEME_XTS:
            raise EspSecureError(f"{chip.title} does not use XTS-AES flash encryption; leave out --aes-xts")
        scheme = chip_scheme
    refuse_inputs(args.output, args.keyfile, args.input)

    key = read_key_bytes(args.keyfile, "key file")
    if chip is not None:
        fe.check_key_for_chip(key, chip, args.keyfile)
    if name == "encrypt-flash-data":
        refuse_known_key(args, "flash_encryption", key, args.keyfile)
    data = read_bytes(args.input, "input file")
    operation = fe.decrypt if name == "decrypt-flash-data" else fe.encrypt
    try:
        result = operation(data, key, args.address, scheme, args.flash_crypt_conf, key_path=args.keyfile)
    except EspSecureError as exc:
        if exc.path is None:  # name the input file for address/length problems
            raise EspSecureError(exc.message, args.input, exc.hint) from None
        raise
    write_atomic(args.output, result)
    if scheme == fe.SCHEME_ESP32 and len(result) != len(data) and name == "encrypt-flash-data":
        print(f"Note: padded the last block with {len(result) - len(data)} bytes of 0xFF.")
    return 0
