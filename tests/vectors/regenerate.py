#!/usr/bin/env python3
"""Remake the generated files of tests/vectors/ with the reference tools (rerunnable).

    python tests/vectors/regenerate.py              # keep the keys, remake everything made from them
    python tests/vectors/regenerate.py --new-keys   # also replace every key (then update published_keys.py)

esptool's own test files are GPL-2.0-or-later, so none is vendored: the files under
``esptool/secure_images/``, ``esptool/elf2image/`` and ``esptool/oracle_expected/`` keep the
names and roles of the esptool test files the cases were first written against, but are made
here, from

* keys generated with ``espsecure generate-signing-key`` / ``generate-flash-encryption-key``
  and ``openssl`` (only when missing, or with ``--new-keys``);
* ESP-IDF's ESP32 second-stage bootloader and espflash's ``esp32_hal_blinky`` ELF, both from
  esp-rs/espflash (MIT OR Apache-2.0), vendored unchanged in ``esptool/secure_images/bootloader.bin``
  and ``esptool/espflash/``;
* ELFs built here from ``sample_project/`` and ``src/`` with the cross compilers;

and every expected output is what the reference tools (esptool/espsecure 5.6.0, openssl) write.
cases.json's data-dependent fields (hashes, byte ranges, digests) are rewritten to match.
Needs: esptool 5.6.0 in this Python, openssl, scons, xtensa-lx106-elf-gcc, riscv64-unknown-elf-gcc.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SI = HERE / "esptool" / "secure_images"
ELF = HERE / "esptool" / "elf2image"
ORACLE = HERE / "esptool" / "oracle_expected"
ESPFLASH = HERE / "esptool" / "espflash"
SOURCE_DATE_EPOCH = "1764115200"  # fixed, so the sample ELFs' app descriptors do not change
SCHEMES = {"rsa": "rsa3072", "ecdsa192": "ecdsa192", "ecdsa256": "ecdsa256", "ecdsa384": "ecdsa384"}
# Offset in a V2 signature block where the randomised part (signature + CRC32) starts.
SIGNATURE_START = {"rsa": 812, "ecdsa192": 101, "ecdsa256": 101, "ecdsa384": 149}
BLOCK_SIZE, CRC_END = 1216, 1200


def run(*args: str | os.PathLike[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, args))}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def tool(name: str, *args: str | os.PathLike[str]) -> str:
    """esptool / espsecure 5.6.0 through their command line (GPL: never imported)."""
    return run(sys.executable, "-m", name, *args)


def rel(path: Path) -> str:
    return path.relative_to(HERE).as_posix()


# -- keys --------------------------------------------------------------------------------------------


def key(scheme: str, suffix: str = "") -> Path:
    return SI / f"{scheme}_secure_boot_signing_key{suffix}.pem"


def make_keys(new: bool) -> None:
    """Signing keys, AES keys and the digest IV; existing files are kept unless ``new``."""
    signing = [(s, n) for s in SCHEMES for n in ("", "2", "3", "4")] + [("ecdsa192", "_v2"), ("ecdsa256", "_v2")]
    for scheme, suffix in signing:
        path = key(scheme, suffix)
        if new or not path.exists():
            path.unlink(missing_ok=True)
            tool("espsecure", "generate-signing-key", "--version", "2", "--scheme", SCHEMES[scheme], path)
    for name, bits in (("256bit_key.bin", 256), ("ef-flashencryption-key.bin", 256), ("512bit_key.bin", 512)):
        if new or not (SI / name).exists():
            (SI / name).unlink(missing_ok=True)
            tool("espsecure", "generate-flash-encryption-key", "--keylen", str(bits), SI / name)
    if new or not (SI / "256bit_iv.bin").exists():
        run("openssl", "rand", "-out", SI / "256bit_iv.bin", "32")
    # The same key as ecdsa256_secure_boot_signing_key.pem, in PKCS#8.
    run("openssl", "pkcs8", "-topk8", "-nocrypt", "-in", key("ecdsa256"), "-out", key("ecdsa256", "_pkcs8"))


def make_public_keys() -> None:
    for scheme in SCHEMES:
        for n in ("", "2", "4"):
            tool("espsecure", "extract-public-key", "--version", "2", "--keyfile", key(scheme, n),
                 SI / f"{scheme}_secure_boot_signing_pubkey{n}.pem")  # fmt: skip
    tool("espsecure", "extract-public-key", "--version", "1", "--keyfile", key("ecdsa256"),
         SI / "ecdsa256_secure_boot_signing_pubkey_raw.bin")  # fmt: skip
    for src, out in ((key("ecdsa192", "_v2"), "ecdsa192_public_key_digest_v2.bin"),
                     (key("ecdsa256", "_v2"), "ecdsa256_public_key_digest_v2.bin"),
                     (key("rsa"), "rsa_public_key_digest.bin")):  # fmt: skip
        tool("espsecure", "digest-sbv2-public-key", "--keyfile", src, "--output", SI / out)


# -- ELFs ----------------------------------------------------------------------------------------------


def build_elfs() -> None:
    """The sample project's ELFs (ESP32, ESP32-C3, ESP32-C6) and the too-many-sections ELF."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(REPO / "sample_project", work / "sample_project",
                        ignore=shutil.ignore_patterns("build", ".sconsign*", "keys"))  # fmt: skip
        shutil.copytree(REPO / "site_scons", work / "site_scons")
        (work / "esp_secure_build").symlink_to(REPO / "esp_secure_build")
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH)
        project = work / "sample_project"
        for chip in ("esp32", "esp32c3", "esp32c6"):
            run(sys.executable, "-m", "SCons", "-Q", f"ESP_CHIP={chip}", f"build/{chip}/app.elf",
                f"build/{chip}/bootloader.elf", cwd=project, env=env)  # fmt: skip
        for src, dest in (("esp32/app.elf", "esp32-app-template.elf"), ("esp32/bootloader.elf", "esp32-bootloader.elf"),
                          ("esp32c3/app.elf", "esp32c3-app.elf"), ("esp32c6/app.elf", "esp32c6-appdesc.elf")):  # fmt: skip
            shutil.copyfile(project / "build" / src, ELF / dest)
    run("xtensa-lx106-elf-gcc", "-Os", "-nostdlib", "-mlongcalls", "-T", HERE / "src/too_many_sections.ld",
        "-o", ELF / "esp32-too-many-sections.elf", HERE / "src/too_many_sections.c")  # fmt: skip
    for path in ELF.glob("*.elf"):
        path.chmod(0o644)


# -- images --------------------------------------------------------------------------------------------


def make_images() -> None:
    boot = SI / "bootloader.bin"  # ESP-IDF's ESP32 bootloader, from espflash: an input, never rewritten
    unsigned = SI / "bootloader_unsigned_v2.bin"
    data = boot.read_bytes()
    unsigned.write_bytes(data + b"\xff" * (-len(data) % 4096))  # what sign-data signs: whole 4 KiB sectors

    # Secure Boot V1: deterministic (RFC 6979); the pre-calculated signature is the one sign-data made.
    tool("espsecure", "sign-data", "--version", "1", "--keyfile", key("ecdsa256"), "--output", SI / "bootloader_signed.bin", boot)
    (SI / "pre_calculated_bootloader_signature.bin").write_bytes((SI / "bootloader_signed.bin").read_bytes()[-64:])
    tool("espsecure", "digest-secure-bootloader", "--keyfile", SI / "256bit_key.bin", "--iv", SI / "256bit_iv.bin",
         "--output", SI / "bootloader_digested.bin", boot)  # fmt: skip

    # Secure Boot V2: one key, three keys, and a signature made outside espsecure (openssl).
    for scheme in SCHEMES:
        tool("espsecure", "sign-data", "--version", "2", "--keyfile", key(scheme),
             "--output", SI / f"bootloader_signed_v2_{scheme}.bin", unsigned)  # fmt: skip
        tool("espsecure", "sign-data", "--version", "2", "--keyfile", key(scheme), key(scheme, "2"), key(scheme, "3"),
             "--output", SI / f"bootloader_multi_signed_v2_{scheme}.bin", unsigned)  # fmt: skip
        sig = SI / f"pre_calculated_bootloader_signature_{scheme}.bin"
        if scheme == "rsa":
            run("openssl", "dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
                "-sign", key(scheme), "-out", sig, unsigned)  # fmt: skip
        else:
            run("openssl", "dgst", "-sha384" if scheme == "ecdsa384" else "-sha256", "-sign", key(scheme), "-out", sig, unsigned)
        tool("espsecure", "sign-data", "--version", "2", "--pub-key", SI / f"{scheme}_secure_boot_signing_pubkey.pem",
             "--signature", sig, "--output", ORACLE / f"sbv2-sign-precalculated-{scheme}.bin", unsigned)  # fmt: skip

    # An ESP32 app signed for Secure Boot V1, as ESP-IDF makes one (--secure-pad, then sign-data).
    app = Path(tempfile.mkdtemp()) / "app.bin"
    tool("esptool", "--chip", "esp32", "elf2image", "--flash-mode", "dio", "--flash-freq", "40m", "--flash-size", "2MB",
         "--secure-pad", "-o", app, ESPFLASH / "esp32_hal_blinky.elf")  # fmt: skip
    hello = SI / "hello-world-signed.bin"
    tool("espsecure", "sign-data", "--version", "1", "--keyfile", key("ecdsa256"), "--output", hello, app)
    shutil.rmtree(app.parent)
    signed = hello.read_bytes()  # ends 12 bytes short of 64 KiB: fill up as erased flash (XTS needs 16-byte units)
    hello.write_bytes(signed + b"\xff" * (-len(signed) % 0x10000))

    # Flash encryption: ESP32 AES with each flash_crypt_conf, XTS-AES-128 and -256.
    for suffix, opts in (("", ["--flash-crypt-conf", "0xf"]), ("-conf0", ["--flash-crypt-conf", "0x0"]),
                         ("-conf3", ["--flash-crypt-conf", "0x3"]), ("-conf9", ["--flash-crypt-conf", "0x9"]),
                         ("-confc", ["--flash-crypt-conf", "0xc"]), ("-aes-xts", ["--aes-xts"])):  # fmt: skip
        tool("espsecure", "encrypt-flash-data", "--keyfile", SI / "256bit_key.bin", "--address", "0x1000", *opts,
             "--output", SI / f"bootloader-encrypted{suffix}.bin", boot)  # fmt: skip
    for suffix, keyfile, address, opts in (("", "ef-flashencryption-key.bin", "0x20000", ["--flash-crypt-conf", "0xf"]),
                                           ("-aes-xts", "ef-flashencryption-key.bin", "0x20000", ["--aes-xts"]),
                                           ("-aes-xts-256", "512bit_key.bin", "0x10000", ["--aes-xts"])):  # fmt: skip
        tool("espsecure", "encrypt-flash-data", "--keyfile", SI / keyfile, "--address", address, *opts,
             "--output", SI / f"hello-world-signed-encrypted{suffix}.bin", hello)  # fmt: skip


# -- cases.json ---------------------------------------------------------------------------------------


def update_cases() -> None:
    """Run each elf2image case with esptool; rewrite the fields that depend on the generated files."""
    path = HERE / "cases.json"
    cases = json.loads(path.read_text())
    unsigned_size = (SI / "bootloader_unsigned_v2.bin").stat().st_size
    for case in cases:
        kind, opts = case["kind"], case["options"]
        if kind == "elf2image" and "espflash" in case["inputs"]["elf"]:
            continue  # espflash's own image is the expected file
        if kind == "elf2image" and "error_contains" not in case["expected"]:
            argv = case["oracle_cmd"].split()[1:]
            out = ORACLE / f"{case['id']}.bin"
            tool("esptool", *[a.replace("{out}", str(out)).replace("{elf}", str(HERE / case["inputs"]["elf"])) for a in argv])
            if isinstance(case["expected"], dict):  # too big to store: SHA-256 and size only
                data = out.read_bytes()
                case["expected"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                out.unlink()
            else:
                case["expected"] = rel(out)
        elif kind == "elf2image" and "error_contains" in case["expected"]:
            proc = subprocess.run([sys.executable, "-m", "esptool", "--chip", opts["chip"], "elf2image", "-o",
                                   os.devnull, HERE / case["inputs"]["elf"]], capture_output=True, text=True)  # fmt: skip
            assert proc.returncode != 0 and all(n in proc.stdout + proc.stderr for n in case["expected"]["error_contains"])
        elif kind == "sign_v2" and "random_byte_range" in opts:
            opts["random_byte_range"] = [unsigned_size + SIGNATURE_START[opts["scheme"]], unsigned_size + CRC_END]
            lo, hi = opts["random_byte_range"]
            case["notes"] = (f"Signature is randomised (RSA-PSS salt / ECDSA nonce). All bytes outside [{lo}, {hi}) "
                             "(signature + block CRC32) equal the expected file; the rest must verify.")  # fmt: skip
        elif kind == "sign_v2" and "unchanged_prefix_from_input" in case["expected"]:
            case["expected"]["unchanged_prefix_from_input"] = unsigned_size + BLOCK_SIZE
        elif kind == "digest_private_key":
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "digest.bin"
                tool("espsecure", "digest-private-key", "--keyfile", HERE / case["inputs"]["keyfile"], out)
                case["expected"] = {"hex": out.read_bytes().hex()}
    path.write_text(json.dumps(cases, indent=1) + "\n")


def check_published() -> None:
    """Every private key shipped here must be on the published-key list."""
    sys.path.insert(0, str(REPO))
    from cryptography.hazmat.primitives import serialization

    from esp_secure_build.secure_boot.published_keys import fingerprint, is_published

    missing: dict[str, str] = {}
    for pem in sorted(HERE.rglob("*.pem")):
        text = pem.read_bytes()
        if b"PRIVATE KEY" in text:
            public = serialization.load_pem_private_key(text, None).public_key()
            if not is_published(public):
                missing.setdefault(fingerprint(public), pem.stem)
    if missing:
        print("Add to PUBLISHED_KEY_FINGERPRINTS (esp_secure_build/secure_boot/published_keys.py):")
        for fp, name in missing.items():
            print(f'    "{fp}",  # esp-secure-build test key: {name}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-keys", action="store_true", help="replace every key (then update published_keys.py)")
    args = parser.parse_args()
    version = tool("esptool", "version")
    if "5.6.0" not in version:
        sys.exit(f"needs esptool 5.6.0, found: {version.strip()}")
    for folder in (SI, ELF, ORACLE):
        folder.mkdir(parents=True, exist_ok=True)
    make_keys(args.new_keys)
    make_public_keys()
    build_elfs()
    make_images()
    update_cases()
    check_published()


if __name__ == "__main__":
    main()
