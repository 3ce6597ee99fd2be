"""``esp-secure nvs …`` and ``esp-secure mfg …``: the NVS partition generator and mfg_gen.py.

Arguments follow ``python -m esp_idf_nvs_partition_gen`` 0.3.0 and ESP-IDF's
``mfg_gen.py`` (old underscore option names and dash spellings both work).
Where they differ from the reference tools, docs/nvs.md says why.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from ..errors import EspSecureError
from ..fileio import check_output, read_bytes, write_atomic, write_new
from ..nvs.generate import generate_partition, load_hmac_key, load_keys, parse_size
from ..nvs.layout import MIN_RW_SIZE
from .common import add_allow_published, add_option, refuse_known_key

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (CLI start-up)
if TYPE_CHECKING:
    from ..nvs.crypto import NvsKeys

_RO_WARNING = (
    "warning: partitions smaller than 0x3000 bytes are read-only NVS; flag the partition "
    "'readonly' in the partition table"
)


# -- arguments ------------------------------------------------------------
def _outdir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outdir", default=os.getcwd(), help="output folder (default: current folder)")


def _version(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", type=int, choices=(1, 2), default=2,
                   help="1: single-page blobs; 2: multipage blobs (default)")  # fmt: skip


def _hmac_options(p: argparse.ArgumentParser) -> None:
    add_option(
        p,
        "--key-protect-hmac",
        action="store_true",
        dest="key_protect_hmac",
        help="derive the XTS keys from an eFuse HMAC key (HMAC-based key protection)",
    )
    add_option(
        p,
        "--kp-hmac-keygen",
        action="store_true",
        dest="kp_hmac_keygen",
        help="generate the HMAC key (written to the keys folder, mode 0600)",
    )
    add_option(p, "--kp-hmac-keyfile", dest="kp_hmac_keyfile", help="name of the generated HMAC key file")
    add_option(p, "--kp-hmac-inputkey", dest="kp_hmac_inputkey", help="file with the 32-byte HMAC key")  # fmt: skip
    add_allow_published(p)


def _nvs_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="nvs_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("generate", help="NVS partition from CSV files")
    p.add_argument("input", nargs="+", metavar="INPUT", help="CSV file(s): key,type,encoding,value")
    p.add_argument("output", metavar="OUTPUT", help="partition file (relative to --outdir)")
    p.add_argument("size", metavar="SIZE", help="partition size, a multiple of 4096 (e.g. 0x6000)")
    _version(p)
    _outdir(p)

    p = sub.add_parser("generate-key", help="NVS keys partition (two XTS keys + CRC), mode 0600")
    p.add_argument("--keyfile", help="keys file name in OUTDIR/keys/ (default keys-<date>.bin)")
    _hmac_options(p)
    _outdir(p)

    p = sub.add_parser("encrypt", help="encrypted NVS partition from CSV files")
    p.add_argument("input", nargs="+", metavar="INPUT", help="CSV file(s)")
    p.add_argument("output", metavar="OUTPUT", help="partition file (relative to --outdir)")
    p.add_argument("size", metavar="SIZE", help="partition size, a multiple of 4096")
    _version(p)
    p.add_argument("--keygen", action="store_true", help="generate a keys partition (OUTDIR/keys/, mode 0600)")
    p.add_argument("--inputkey", help="existing NVS keys partition to encrypt with")
    p.add_argument("--keyfile", help="name of the generated keys file (with --keygen)")
    _hmac_options(p)
    _outdir(p)

    p = sub.add_parser("decrypt", help="decrypt an encrypted NVS partition")
    p.add_argument("input", metavar="INPUT", help="encrypted partition")
    p.add_argument("key", metavar="KEY", help="NVS keys partition")
    p.add_argument("output", metavar="OUTPUT", help="decrypted partition (relative to --outdir)")
    _outdir(p)

    p = sub.add_parser("mfg", help="per-device partitions (same as `esp-secure mfg`)")
    _mfg_subcommands(p)


def _mfg_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mfg_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("generate", help="one NVS partition per row of the values CSV")
    p.add_argument("conf", metavar="CONFIG", help="config CSV: key,type,encoding[,REPEAT] lines")
    p.add_argument("values", metavar="VALUES", help="values CSV: header of keys, one row per device")
    p.add_argument("prefix", metavar="PREFIX", help="output file name prefix")
    p.add_argument("size", metavar="SIZE", help="partition size, a multiple of 4096")
    p.add_argument("--fileid", help="values column that names each device's files (default 1, 2, 3, ...)")
    _version(p)
    p.add_argument("--keygen", action="store_true", help="encrypt with new keys per device (OUTDIR/keys/)")
    p.add_argument("--inputkey", help="encrypt every device with this NVS keys partition")
    _outdir(p)
    _hmac_options(p)
    p.add_argument("-j", "--jobs", type=int, default=None, help="worker processes (default: all cores)")

    p = sub.add_parser("generate-key", help="NVS keys partition (as `nvs generate-key`)")
    p.add_argument("--keyfile", help="keys file name in OUTDIR/keys/ (default keys-<date>.bin)")
    _outdir(p)
    _hmac_options(p)


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "mfg":
        _mfg_subcommands(parser)
    else:
        _nvs_subcommands(parser)


# -- helpers --------------------------------------------------------------
def _target(outdir: str, name: str, bin_ext: bool = False) -> Path:
    """OUTDIR/NAME (NAME kept when absolute), with the reference's ".bin" default for key files."""
    if bin_ext and not os.path.splitext(name)[1]:
        name += ".bin"
    path = Path(name) if os.path.isabs(name) else Path(os.path.expanduser(outdir)) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EspSecureError(f"cannot create output folder: {exc.strerror}", path.parent) from None
    return path


def _new_key_path(outdir: str, name: str) -> Path:
    path = _target(os.path.join(os.path.expanduser(outdir), "keys"), name, bin_ext=True)
    if path.exists():
        # Replacing keys makes data encrypted with the old ones unreadable: make it an explicit act.
        raise EspSecureError("key file exists; refusing to replace it (delete it or pick another name)", path)
    return path


def _check_hmac_options(args: argparse.Namespace) -> None:
    if not args.key_protect_hmac:
        for opt in ("kp_hmac_keygen", "kp_hmac_inputkey", "kp_hmac_keyfile"):
            if getattr(args, opt):
                raise EspSecureError(f"--{opt} needs --key_protect_hmac")
        return
    if args.kp_hmac_keygen and args.kp_hmac_inputkey:
        raise EspSecureError("give either --kp_hmac_keygen or --kp_hmac_inputkey, not both")
    if not args.kp_hmac_keygen and not args.kp_hmac_inputkey:
        raise EspSecureError("--key_protect_hmac needs --kp_hmac_keygen or --kp_hmac_inputkey")
    if args.kp_hmac_keyfile and not args.kp_hmac_keygen:
        raise EspSecureError("--kp_hmac_keyfile names a generated HMAC key: it needs --kp_hmac_keygen")


def _make_keys(args: argparse.Namespace) -> tuple[NvsKeys, bytes | None]:
    """New XTS keys (random, or from an HMAC key) and the new HMAC key if one was made."""
    from ..nvs.crypto import NvsKeys, random_hmac_key

    _check_hmac_options(args)
    if not args.key_protect_hmac:
        return NvsKeys.generate(), None
    if args.kp_hmac_keygen:
        hmac_key = random_hmac_key()
        return NvsKeys.from_hmac_key(hmac_key), hmac_key
    return NvsKeys.from_hmac_key(_input_hmac_key(args)), None


def _input_hmac_key(args: argparse.Namespace) -> bytes:
    key = load_hmac_key(args.kp_hmac_inputkey)
    refuse_known_key(args, "nvs_hmac", key, args.kp_hmac_inputkey)
    return key


def _input_keys(args: argparse.Namespace) -> NvsKeys:
    keys = load_keys(args.inputkey)
    refuse_known_key(args, "nvs_keys", keys.eky + keys.tky, args.inputkey)
    return keys


def _write_keys(args: argparse.Namespace, keys: NvsKeys, hmac_key: bytes | None, output: Path | None = None) -> Path:
    """Write the new keys file (and HMAC key); ``output``, the partition still to write, must differ."""
    keyfile = args.keyfile or datetime.datetime.now().strftime("keys-%m-%d_%H-%M.bin")
    key_path = _new_key_path(args.outdir, keyfile)
    head, tail = os.path.split(keyfile)
    hmac_name = args.kp_hmac_keyfile or os.path.join(head, "hmac-" + tail)
    hmac_path = _new_key_path(args.outdir, hmac_name) if hmac_key else None
    planned = [p for p in (hmac_path, key_path, output) if p is not None]
    for i, path in enumerate(planned):
        if any(os.path.abspath(path) == os.path.abspath(other) for other in planned[:i]):
            raise EspSecureError("two outputs of this command would be the same file", path)
        check_output(path)
    if hmac_path is not None and hmac_key is not None:
        write_new(hmac_path, hmac_key, mode=0o600)
        print(f"Created HMAC key: ===> {hmac_path}")
    write_new(key_path, keys.partition(), mode=0o600)
    print(f"Created encryption keys: ===> {key_path}")
    return key_path


def _size(text: str) -> int:
    return parse_size(text)


# -- commands -------------------------------------------------------------
def _generate(args: argparse.Namespace, encrypt: bool) -> None:
    size = _size(args.size)
    keys: NvsKeys | None = None
    hmac_key: bytes | None = None
    if encrypt:
        if args.keygen == bool(args.inputkey):
            raise EspSecureError("encrypt needs exactly one of --keygen and --inputkey")
        if args.inputkey:
            if args.key_protect_hmac or args.kp_hmac_keygen or args.kp_hmac_inputkey or args.kp_hmac_keyfile:
                raise EspSecureError(
                    "--inputkey gives the keys: the --key_protect_hmac/--kp_hmac_* options do not apply"
                )
            if args.keyfile:
                print("warning: --inputkey given, --keyfile ignored", file=sys.stderr)
            keys = _input_keys(args)
        else:
            keys, hmac_key = _make_keys(args)
    data = generate_partition(args.input, size, args.version, keys)
    output = _target(args.outdir, args.output)
    check_output(output)  # before any key file is written
    if encrypt and args.keygen and keys is not None:
        _write_keys(args, keys, hmac_key, output)
    write_atomic(output, data)
    if size < MIN_RW_SIZE:
        print(_RO_WARNING, file=sys.stderr)
    print(f"Created NVS binary: ===> {output}")


def _generate_key(args: argparse.Namespace) -> None:
    keys, hmac_key = _make_keys(args)
    _write_keys(args, keys, hmac_key)


def _decrypt(args: argparse.Namespace) -> None:
    keys = load_keys(args.key)
    data = read_bytes(args.input, "encrypted partition")
    from ..nvs.crypto import decrypt_partition

    plain = decrypt_partition(data, keys, args.input)
    output = _target(args.outdir, args.output)
    write_atomic(output, plain)
    print(f"Created NVS decrypted binary: ===> {output}")


def _mfg_generate(args: argparse.Namespace) -> None:
    from ..nvs.mfg import MfgEncryption, MfgOptions, run_mfg

    size = _size(args.size)
    encryption: MfgEncryption | None = None
    if args.keygen and args.inputkey:
        raise EspSecureError("give either --keygen or --inputkey, not both")
    if args.inputkey:
        if args.key_protect_hmac or args.kp_hmac_keygen or args.kp_hmac_inputkey or args.kp_hmac_keyfile:
            raise EspSecureError("--inputkey gives the keys: the --key_protect_hmac/--kp_hmac_* options do not apply")
        encryption = MfgEncryption(keys=_input_keys(args))
    elif args.keygen:
        _check_hmac_options(args)
        if args.kp_hmac_keyfile:
            # mfg_gen.py would write every device's HMAC key to this one file, keeping only the last.
            raise EspSecureError("--kp_hmac_keyfile would name one file for every device's HMAC key; leave it out")
        hmac_key = _input_hmac_key(args) if args.key_protect_hmac and args.kp_hmac_inputkey else None
        encryption = MfgEncryption(hmac_key=hmac_key, hmac_keygen=bool(args.key_protect_hmac and args.kp_hmac_keygen))
    elif args.key_protect_hmac or args.kp_hmac_keygen or args.kp_hmac_inputkey or args.kp_hmac_keyfile:
        # mfg_gen.py silently writes plain partitions in this case.
        raise EspSecureError("--key_protect_hmac/--kp_hmac_* need --keygen")
    if args.jobs is not None and args.jobs < 1:
        raise EspSecureError("--jobs must be at least 1")
    opts = MfgOptions(size=size, version=args.version, fileid=args.fileid, encryption=encryption)
    outdir = Path(os.path.expanduser(args.outdir))
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty and (done == total or done % 50 == 0):
            print(f"\r{done}/{total} devices", end="\n" if done == total else "", file=sys.stderr, flush=True)

    count = run_mfg(args.conf, args.values, args.prefix, outdir, opts, jobs=args.jobs, progress=progress)
    if size < MIN_RW_SIZE:
        print(_RO_WARNING, file=sys.stderr)
    print(f"Files generated in {outdir} ... ({count} devices)")


def run(name: str, args: argparse.Namespace) -> int:
    command = args.nvs_command if name == "nvs" else "mfg"
    if command == "generate":
        _generate(args, encrypt=False)
    elif command == "encrypt":
        _generate(args, encrypt=True)
    elif command == "decrypt":
        _decrypt(args)
    elif command == "generate-key":
        _generate_key(args)
    elif args.mfg_command == "generate":
        _mfg_generate(args)
    else:
        _generate_key(args)
    return 0
