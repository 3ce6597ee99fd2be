"""Secure Boot commands, argument for argument like espsecure 5.6.0's.

Additions over espsecure: ``verify-signature --expect-digest`` (a CI gate on which
keys signed an image), ``sign-data --signer-command`` (an external signer, see
:class:`~esp_secure_build.secure_boot.signers.CommandSigner`) and the global
``--chip`` check of schemes and block counts. Passphrases never come from the
command line: see ESP_SECURE_KEY_PASSPHRASE / ESP_SECURE_HSM_PIN.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..chips import Chip, get_chip
from ..errors import EspSecureError
from ..fileio import read_bytes, read_key_bytes, refuse_inputs, write_atomic
from .common import add_allow_published, add_option, refuse_known_key

SCHEME_CHOICES = ("rsa3072", "ecdsa192", "ecdsa256", "ecdsa384")


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the arguments of one command (same names as espsecure's)."""
    if name == "sign-data":
        add_option(parser, "--version", "-v", choices=("1", "2"), required=True, help="Secure Boot version")
        add_option(parser, "--keyfile", "-k", nargs="+", action="extend", default=[], metavar="KEYFILE",
                   help="private key file(s), PEM or DER (up to 3 for V2)")  # fmt: skip
        add_option(parser, "--output", "-o", help="output file (default: sign the input file in place)")
        add_option(parser, "--append-signatures", "-a", action="store_true",
                   help="append signature block(s) to an already signed image (V2)")  # fmt: skip
        add_option(parser, "--hsm", action="store_true", help="sign with a PKCS#11 token")
        add_option(parser, "--hsm-config", help="PKCS#11 config file (espsecure's [hsm_config] format)")
        add_option(parser, "--pub-key", nargs="+", action="extend", default=[], metavar="PUBKEY",
                   help="public key(s) of pre-calculated signatures or of --signer-command")  # fmt: skip
        add_option(parser, "--signature", nargs="+", action="extend", default=[], metavar="SIGFILE",
                   help="pre-calculated signature file(s), one per --pub-key")  # fmt: skip
        add_option(parser, "--signer-command", metavar="CMD",
                   help="external signer: run CMD to sign each digest (needs --pub-key)")  # fmt: skip
        add_option(parser, "--skip-padding", action="store_true", help="do not pad the data to 4096 bytes (V2)")
        add_allow_published(parser)
        parser.add_argument("datafile", help="file to sign")
    elif name == "verify-signature":
        add_option(parser, "--version", "-v", choices=("1", "2"), required=True, help="Secure Boot version")
        add_option(parser, "--hsm", action="store_true", help="take the public key from a PKCS#11 token")
        add_option(parser, "--hsm-config", help="PKCS#11 config file (espsecure's [hsm_config] format)")
        add_option(parser, "--keyfile", "-k", help="public or private key file (PEM/DER; V1 also raw 64 bytes)")
        add_option(parser, "--skip-padding", action="store_true", help="file is not 4096-aligned (V2)")
        add_option(parser, "--expect-digest", action="append", default=[], metavar="DIGEST",
                   help="public-key digest (hex, or a digest file) every signature block must carry; "
                        "repeat for several keys")  # fmt: skip
        parser.add_argument("datafile", help="signed file")
    elif name == "signature-info-v2":
        parser.add_argument("datafile", help="signed file")
    elif name == "digest-secure-bootloader":
        add_option(parser, "--keyfile", "-k", required=True, help="256-bit secure boot key (raw)")
        add_option(parser, "--output", "-o", help="output file (default: IMAGE-digest-0x0000.bin)")
        add_option(parser, "--iv", help="128-byte IV file, for testing only (default: random)")
        add_allow_published(parser)
        parser.add_argument("image", help="bootloader image")
    elif name == "generate-signing-key":
        add_option(parser, "--version", "-v", choices=("1", "2"), default="1", help="Secure Boot version")
        add_option(parser, "--scheme", "-s", choices=SCHEME_CHOICES, help="signing scheme (V2; default rsa3072)")
        parser.add_argument("keyfile", help="key file to create (mode 0600, never overwritten)")
    elif name == "extract-public-key":
        add_option(parser, "--version", "-v", choices=("1", "2"), default="1", help="Secure Boot version")
        add_option(parser, "--keyfile", "-k", required=True, help="private key file")
        parser.add_argument("public_keyfile", metavar="public-keyfile", help="output: raw (V1) or PEM (V2)")
    elif name in ("digest-sbv2-public-key", "digest-rsa-public-key"):
        add_option(parser, "--keyfile", "-k", required=True, help="public or private key file")
        add_option(parser, "--output", "-o", required=True, help="output file for the 32-byte digest")
    elif name == "digest-private-key":
        add_option(parser, "--keyfile", "-k", required=True, help="ECDSA P-256 private key file")
        add_option(parser, "--keylen", "-l", type=int, default=256, help="digest length in bits: 256 or 192")
        parser.add_argument("digest_file", metavar="digest-file", help="output file")
    else:  # pragma: no cover - main.COMMANDS and this module are edited together
        raise ValueError(name)


def run(name: str, args: argparse.Namespace) -> int:
    """Run one command; EspSecureError becomes one line on stderr in cli.main."""
    chip = None if getattr(args, "chip", "auto") in (None, "auto") else get_chip(args.chip)
    handler = {
        "sign-data": _sign_data,
        "verify-signature": _verify_signature,
        "signature-info-v2": _signature_info,
        "digest-secure-bootloader": _digest_bootloader,
        "generate-signing-key": _generate_key,
        "extract-public-key": _extract_public_key,
        "digest-sbv2-public-key": _digest_sbv2,
        "digest-rsa-public-key": _digest_sbv2,
        "digest-private-key": _digest_private_key,
    }[name]
    return handler(args, chip)


def _hsm_signer(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..secure_boot.signers import Pkcs11Signer

    if not args.hsm_config:
        raise EspSecureError("--hsm needs --hsm-config FILE")
    return Pkcs11Signer.from_config_file(args.hsm_config)


def _sign_data(args: argparse.Namespace, chip: Chip | None) -> int:
    from ..secure_boot import signers, v1, v2
    from ..secure_boot.keys import load_public_key

    version = int(args.version)
    output = args.output or args.datafile
    refuse_inputs(output, *args.keyfile, *args.pub_key, *args.signature)
    if args.output:
        refuse_inputs(output, args.datafile)
    sources = sum(bool(x) for x in (args.keyfile, args.hsm, args.signature, args.signer_command))
    if sources != 1:
        raise EspSecureError("give exactly one of --keyfile, --hsm, --pub-key/--signature or --signer-command")
    data = read_bytes(args.datafile, "data file")

    chosen: list[signers.Signer]
    if args.keyfile:
        chosen = [signers.LocalKeySigner.from_file(path) for path in args.keyfile]
    elif args.signature:
        if len(args.pub_key) != len(args.signature):
            raise EspSecureError(
                f"number of public keys ({len(args.pub_key)}) not equal to the number of signatures "
                f"({len(args.signature)})"
            )
        chosen = [signers.PrecomputedSigner.from_files(k, s, allow_raw_v1=version == 1)
                  for k, s in zip(args.pub_key, args.signature, strict=True)]  # fmt: skip
    elif args.signer_command:
        if len(args.pub_key) != 1:
            raise EspSecureError("--signer-command needs exactly one --pub-key (the signer's public key)")
        chosen = [signers.CommandSigner(args.signer_command, load_public_key(args.pub_key[0], version == 1))]
    else:
        if version == 1:
            raise EspSecureError("Secure Boot V1 does not support signing with an HSM")
        chosen = [_hsm_signer(args)]

    if not args.allow_published_key:
        from ..secure_boot.published_keys import refuse_known_signer

        for i, signer in enumerate(chosen):
            refuse_known_signer(signer, getattr(signer, "name", None) or f"signing key {i + 1}")

    if version == 1:
        if len(chosen) > 1:
            raise EspSecureError("Secure Boot V1 supports only one signing key")
        if args.append_signatures:
            raise EspSecureError("--append-signatures is for Secure Boot V2 only")
        if chip is not None and not chip.secure_boot_v1:
            raise EspSecureError(f"{chip.title} has no Secure Boot V1 (it is ESP32 only); use --version 2")
        signed = v1.sign(data, chosen[0])
        write_atomic(output, signed, in_place=not args.output)
        print(f'Signed {len(data)} bytes of data from "{args.datafile}" (Secure Boot V1) to "{output}".')
        return 0

    signed = v2.sign(data, chosen, append=args.append_signatures, skip_padding=args.skip_padding, chip=chip,
                     path=args.datafile)  # fmt: skip
    write_atomic(output, signed, in_place=not args.output)
    blocks = v2.leading_blocks(signed[-v2.SECTOR_SIZE :])
    print(
        f'Signed {len(signed) - v2.SECTOR_SIZE} bytes of data from "{args.datafile}" to "{output}". '
        f"Signature sector now has {len(blocks)} signature block(s)."
    )
    for block in blocks:
        print(f"  block {block.index}: {block.scheme}, public key digest {block.key_digest.hex()}")
    return 0


def _parse_expected(text: str) -> bytes:
    """A key digest given as hex (spaces/colons allowed) or as a binary digest file."""
    cleaned = text.replace(" ", "").replace(":", "").removeprefix("0x")
    if len(cleaned) in (32, 64):
        try:
            return bytes.fromhex(cleaned)
        except ValueError:
            pass
    if os.path.exists(text):
        data = read_key_bytes(text, "digest file")
        if len(data) in (16, 32):
            return data
        raise EspSecureError(f"digest file holds {len(data)} bytes; expected 32 (or 16)", text)
    raise EspSecureError(f"--expect-digest {text!r} is neither 64 hex digits nor a digest file")


def _verify_signature(args: argparse.Namespace, chip: Chip | None) -> int:
    from ..secure_boot import keys, v1, v2

    version = int(args.version)
    expected = [_parse_expected(t) for t in args.expect_digest]
    if args.hsm:
        pub: keys.PublicKey | None = _hsm_signer(args).public_key()
    elif args.keyfile:
        pub = keys.load_public_key(args.keyfile, allow_raw_v1=version == 1)
    else:
        pub = None
    data = read_bytes(args.datafile, "data file")

    if version == 1:
        if pub is None:
            raise EspSecureError("Secure Boot V1 verification needs --keyfile (a V1 signature does not name its key)")
        if expected:
            digest = keys.public_key_digest(pub)
            if not any(digest.startswith(e) for e in expected):
                raise EspSecureError(f"key {digest.hex()} is not an expected key", args.keyfile)
        v1.verify(data, pub, args.datafile)
        print("Signature is valid.")
        return 0

    if pub is None and not expected:
        raise EspSecureError("give --keyfile, --hsm or --expect-digest to verify against")
    if pub is not None:
        scheme = keys.scheme_of(pub, args.keyfile)
        if chip is not None:
            keys.check_scheme(scheme, 2, chip, args.keyfile)
    result = v2.verify(data, pub, expect_digests=expected, skip_padding=args.skip_padding, path=args.datafile)
    for block in result.blocks:
        state = "verified" if block.index in result.verified else "not signed by the supplied key"
        print(f"Signature block {block.index} ({block.scheme}, key {block.key_digest.hex()}): {state}.")
    if chip is not None and len(result.blocks) > chip.max_signatures:
        print(f"Note: {chip.title} honours only the first {chip.max_signatures} block(s).")
    print("Signature is valid.")
    return 0


def _signature_info(args: argparse.Namespace, chip: Chip | None) -> int:
    from ..secure_boot import v2

    data = read_bytes(args.datafile, "data file")
    blocks = v2.signature_info(data, args.datafile)
    if not blocks:
        raise EspSecureError("no valid Secure Boot V2 signature block (not signed?)", args.datafile)
    for block in blocks:
        print(f"Signature block {block.index} is valid ({block.scheme}).")
        print(f"Public key digest for block {block.index}: {' '.join(f'{c:02x}' for c in block.key_digest)}")
    if len(blocks) < v2.MAX_BLOCKS:
        print(f"Signature block {len(blocks)} absent/invalid. Skipping checking next blocks...")
    return 0


def _digest_bootloader(args: argparse.Namespace, chip: Chip | None) -> int:
    from ..secure_boot import v1

    if chip is not None and not chip.secure_boot_v1:
        raise EspSecureError(f"{chip.title} has no Secure Boot V1 bootloader digest (ESP32 only)")
    output = args.output or os.path.splitext(args.image)[0] + "-digest-0x0000.bin"
    refuse_inputs(output, args.keyfile, args.image, args.iv)
    raw_key = read_key_bytes(args.keyfile, "key file")
    key = v1.expand_hardware_key(raw_key, args.keyfile)
    refuse_known_key(args, "secure_boot_v1", raw_key, args.keyfile)
    image = read_bytes(args.image, "bootloader image")
    iv = None
    if args.iv:
        iv = read_key_bytes(args.iv, "IV file")
        print("Warning: --iv is for testing only; never flash a digest made with a fixed IV.", file=sys.stderr)
        if len(iv) != v1.IV_LEN:
            print(f"Warning: the IV file holds {len(iv)} bytes, the ROM expects {v1.IV_LEN}.", file=sys.stderr)
    write_atomic(output, v1.digest_secure_bootloader(image, key, iv, args.image))
    print(f'Digest + image written to "{output}"')
    return 0


def _generate_key(args: argparse.Namespace, chip: Chip | None) -> int:
    from ..secure_boot import keys

    version = int(args.version)
    scheme = args.scheme or ("ecdsa256" if version == 1 else "rsa3072")
    keys.check_scheme(scheme, version, chip, args.keyfile)
    keys.generate_signing_key(args.keyfile, version, scheme)
    print(f'{scheme} private key (Secure Boot V{version}) in PEM format written to "{args.keyfile}" (mode 0600).')
    return 0


def _extract_public_key(args: argparse.Namespace, chip: Chip | None) -> int:
    from ..secure_boot import keys

    refuse_inputs(args.public_keyfile, args.keyfile)
    key = keys.load_private_key(args.keyfile)
    if int(args.version) == 1:
        keys.check_scheme(keys.scheme_of(key, args.keyfile), 1, chip, args.keyfile)
        out = keys.public_key_raw_v1(key)
    else:
        out = keys.public_key_pem(key)
    write_atomic(args.public_keyfile, out)
    print(f'"{args.keyfile}" public key extracted to "{args.public_keyfile}".')
    return 0


def _digest_sbv2(args: argparse.Namespace, chip: Chip | None) -> int:
    from ..secure_boot import keys

    refuse_inputs(args.output, args.keyfile)
    pub = keys.load_public_key(args.keyfile)
    if chip is not None:
        keys.check_scheme(keys.scheme_of(pub, args.keyfile), 2, chip, args.keyfile)
    digest = keys.public_key_digest(pub)
    write_atomic(args.output, digest)
    print(f'Public key digest of "{args.keyfile}" written to "{args.output}": {digest.hex()}')
    return 0


def _digest_private_key(args: argparse.Namespace, chip: Chip | None) -> int:
    from ..secure_boot import keys

    refuse_inputs(args.digest_file, args.keyfile)
    key = keys.load_private_key(args.keyfile)
    digest = keys.digest_private_key(key, args.keylen)
    write_atomic(args.digest_file, digest, mode=0o600)  # it is secret key material
    note = "" if args.keylen == 256 else " (truncated to 192 bits)"
    print(f'SHA-256 digest of private key "{args.keyfile}"{note} written to "{args.digest_file}".')
    return 0
