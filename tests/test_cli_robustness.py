"""Every command, fed empty, garbage or truncated files, answers with one line and exit 2: never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import VECTORS, assert_one_line_error, run_cli

SI = VECTORS / "esptool/secure_images"
GOOD_IMAGE = SI / "bootloader.bin"


def _inputs(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty": b"",
        "garbage": bytes(range(256)) * 3,
        "text": b"hello, this is not what you expected\n",
        "truncated": GOOD_IMAGE.read_bytes()[:100],
        "pem-garbage": b"-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / f"{name}.bin"
        out[name].write_bytes(data)
    return out


# Inputs a command legitimately accepts: data to sign is any bytes, an empty CSV is an
# empty table, an empty file merges to nothing.
ACCEPTS = {
    "sign-data --version 2 --keyfile " + str(SI / "rsa_secure_boot_signing_key.pem") + " -o {out} {in}":
        {"garbage", "text", "truncated", "pem-garbage"},
    "partition-table {in} {out}": {"empty"},
    "--chip esp32 merge-bin -o {out} 0x1000 {in} 0x1000 " + str(GOOD_IMAGE): {"empty"},
}  # fmt: skip

# (command line with {in} for the bad input and {out} for the output)
COMMANDS = [
    "--chip esp32 elf2image -o {out} {in}",
    "image-info {in}",
    "sign-data --version 2 --keyfile {in} -o {out} " + str(GOOD_IMAGE),
    "sign-data --version 2 --keyfile " + str(SI / "rsa_secure_boot_signing_key.pem") + " -o {out} {in}",
    "verify-signature --version 2 --keyfile " + str(SI / "rsa_secure_boot_signing_pubkey.pem") + " {in}",
    "verify-signature --version 1 --keyfile {in} " + str(SI / "bootloader_signed.bin"),
    "signature-info-v2 {in}",
    "digest-secure-bootloader --keyfile " + str(SI / "256bit_key.bin") + " --output {out} {in}",
    "extract-public-key --version 2 --keyfile {in} {out}",
    "digest-sbv2-public-key --keyfile {in} --output {out}",
    "digest-private-key --keyfile {in} {out}",
    "encrypt-flash-data --aes-xts --keyfile {in} --address 0x1000 --output {out} " + str(GOOD_IMAGE),
    "decrypt-flash-data --keyfile {in} --address 0x1000 --output {out} " + str(GOOD_IMAGE),
    "partition-table {in} {out}",
    "--chip esp32 merge-bin -o {out} 0x1000 {in} 0x1000 " + str(GOOD_IMAGE),
    "nvs generate {in} {out} 0x3000",
    "nvs encrypt {in} {out} 0x3000 --inputkey " + str(VECTORS / "nvs/esp-idf/testdata/sample_encryption_keys.bin"),
    "nvs decrypt {in} " + str(VECTORS / "nvs/esp-idf/testdata/sample_encryption_keys.bin") + " {out}",
    "check-cert {in}",
    "crt-bundle -i {in} -o {out}",
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c.split(" -")[0].replace("--chip esp32 ", "") for c in COMMANDS])
def test_bad_input_is_one_line(tmp_path: Path, command: str) -> None:
    inputs = _inputs(tmp_path)
    for name, path in inputs.items():
        out = tmp_path / f"out-{name}"
        args = command.replace("{in}", str(path)).replace("{out}", str(out)).split()
        proc = run_cli(*args)
        if name in ACCEPTS.get(command, ()):
            assert proc.returncode == 0, (name, proc.stderr)
            continue
        assert_one_line_error(proc)
        assert not out.exists() or out.is_dir(), (name, args)
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], (name, args)
