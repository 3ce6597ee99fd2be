"""Hostile use of the CLI: outputs over inputs or keys, non-regular files, absurd sizes and values.

Each case asserts the CLI's contract for bad input (one line, exit 2, no traceback)
and that the inputs are unchanged afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import VECTORS, assert_one_line_error, run_cli

from esp_secure_build.chips import FLASH_SIZES, MAX_FLASH_SIZE, MB

SI = VECTORS / "esptool/secure_images"
ELF = VECTORS / "esptool/elf2image/esp32-app-template.elf"
NVS_KEYS = VECTORS / "nvs/esp-idf/testdata/sample_encryption_keys.bin"
RSA_KEY = SI / "rsa_secure_boot_signing_key.pem"
CSV = "key,type,encoding,value\nns,namespace,,\nx,data,u8,1\nblob,file,binary,data.bin\n"
TABLE = "# Name,Type,SubType,Offset,Size\nnvs,data,nvs,0x9000,0x6000\nfactory,app,factory,0x10000,1M\n"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder with one input of each kind, writable copies of the vectors."""
    shutil.copy(ELF, tmp_path / "app.elf")
    shutil.copy(NVS_KEYS, tmp_path / "k.bin")
    shutil.copy(RSA_KEY, tmp_path / "sign.pem")
    shutil.copy(SI / "bootloader.bin", tmp_path / "bootloader.bin")
    shutil.copy(SI / "256bit_key.bin", tmp_path / "fe.bin")
    for name in os.listdir(tmp_path):
        os.chmod(tmp_path / name, 0o644)
    (tmp_path / "in.csv").write_text(CSV)
    (tmp_path / "data.bin").write_bytes(b"\x01\x02\x03")
    (tmp_path / "pt.csv").write_text(TABLE)
    (tmp_path / "nvs.bin").write_bytes(b"\xff" * 0x3000)  # an erased NVS partition
    return tmp_path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.is_symlink()}


# (command line, the input it names as output); {w} is the work folder.
OVER_INPUT = [
    ("--chip esp32 elf2image -o {w}/app.elf {w}/app.elf", "app.elf"),
    ("nvs encrypt {w}/in.csv k.bin 0x3000 --inputkey {w}/k.bin --outdir {w} --allow-published-key", "k.bin"),
    ("nvs generate {w}/in.csv in.csv 0x3000 --outdir {w}", "in.csv"),
    ("nvs generate {w}/in.csv data.bin 0x3000 --outdir {w}", "data.bin"),  # a file row's file
    ("nvs decrypt {w}/nvs.bin {w}/k.bin k.bin --outdir {w}", "k.bin"),
    ("partition-table {w}/pt.csv {w}/pt.csv", "pt.csv"),
    ("--chip esp32 merge-bin -o {w}/bootloader.bin 0x1000 {w}/bootloader.bin", "bootloader.bin"),
    ("encrypt-flash-data -x -k {w}/fe.bin -a 0x1000 -o {w}/bootloader.bin {w}/bootloader.bin "
     "--allow-published-key", "bootloader.bin"),
    ("digest-secure-bootloader -k {w}/fe.bin -o {w}/bootloader.bin {w}/bootloader.bin --allow-published-key",
     "bootloader.bin"),
    ("sign-data --version 2 -k {w}/sign.pem -o {w}/sign.pem {w}/bootloader.bin", "sign.pem"),
    ("extract-public-key --version 2 -k {w}/sign.pem {w}/sign.pem", "sign.pem"),
]  # fmt: skip


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("command, victim", OVER_INPUT, ids=[c.split(" -")[0].split()[-1] for c, _ in OVER_INPUT])
def test_output_never_replaces_an_input(work: Path, command: str, victim: str, link: str) -> None:
    if link != "same":
        alias = work / f"alias-{victim}"
        (os.symlink if link == "symlink" else os.link)(work / victim, alias)
        # Name the output through the alias, wherever the command names it.
        command = command.replace(f"-o {{w}}/{victim}", f"-o {{w}}/{alias.name}")
        command = command.replace(f" {victim} 0x3000", f" {alias.name} 0x3000")
        command = command.replace("{w}/k.bin k.bin", f"{{w}}/k.bin {alias.name}")
        command = command.replace(f"{{w}}/{victim} {{w}}/{victim}", f"{{w}}/{victim} {{w}}/{alias.name}")
        assert alias.name in command, command
    before = _snapshot(work)
    proc = run_cli(*command.replace("{w}", str(work)).split(), cwd=work, allow_published_key=False)
    assert_one_line_error(proc, "input of this command")
    assert _snapshot(work) == before
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]


# Outputs that land on an existing key file that is not an input of the command.
OVER_KEY = [
    "--chip esp32 elf2image -o {key} {w}/app.elf",
    "extract-public-key --version 2 -k {w}/sign.pem {key}",
    "digest-sbv2-public-key -k {w}/sign.pem -o {key}",
    "nvs generate {w}/in.csv {key} 0x3000",
    "partition-table {w}/pt.csv {key}",
    "check-cert -o {key} " + str(VECTORS / "crt-bundle/set1-pem-only/input/c03-p256-example.pem"),
]


@pytest.mark.parametrize("kind", ["pem", "nvs-keys", "raw-0600"])
@pytest.mark.parametrize("command", OVER_KEY, ids=[c.split(" -")[0].split()[-1] for c in OVER_KEY])
def test_output_never_replaces_a_key(work: Path, command: str, kind: str) -> None:
    key = work / "keys" / "victim.bin"
    key.parent.mkdir()
    source = {"pem": SI / "ecdsa256_secure_boot_signing_key.pem", "nvs-keys": NVS_KEYS, "raw-0600": SI / "256bit_key.bin"}
    key.write_bytes(source[kind].read_bytes())
    key.chmod(0o600 if kind == "raw-0600" else 0o644)
    before = key.read_bytes()
    proc = run_cli(*command.replace("{key}", str(key)).replace("{w}", str(work)).split(), cwd=work)
    assert_one_line_error(proc, str(key), "refusing to overwrite")
    assert key.read_bytes() == before


def test_sign_data_in_place_still_works(work: Path) -> None:
    """espsecure signs in place without --output; that stays, but never over a key."""
    proc = run_cli("sign-data", "--version", "2", work / "bootloader.bin", "-k", work / "sign.pem")
    assert proc.returncode == 0, proc.stderr
    assert (work / "bootloader.bin").stat().st_size % 4096 == 0
    before = (work / "sign.pem").read_bytes()
    proc = run_cli("sign-data", "--version", "2", work / "sign.pem", "-k", work / "sign.pem")
    assert_one_line_error(proc, "sign.pem")
    assert (work / "sign.pem").read_bytes() == before


def test_nvs_keygen_outputs_must_differ(work: Path) -> None:
    proc = run_cli("nvs", "generate-key", "--keyfile", "same.bin", "--key_protect_hmac", "--kp_hmac_keygen",
                   "--kp_hmac_keyfile", "same.bin", "--outdir", work)  # fmt: skip
    assert_one_line_error(proc, "same.bin", "same file")
    assert not (work / "keys" / "same.bin").exists()
    proc = run_cli("nvs", "encrypt", work / "in.csv", "keys/new.bin", "0x3000", "--keygen", "--keyfile", "new.bin",
                   "--outdir", work, cwd=work)  # fmt: skip
    assert_one_line_error(proc, "new.bin", "same file")
    assert not (work / "keys" / "new.bin").exists()


# -- non-regular and oversized inputs ------------------------------------------------------------
# {bad} is the hostile input; everything else is good.
INPUT_SLOTS = [
    "image-info {bad}",
    "--chip esp32 elf2image -o {w}/out.bin {bad}",
    "--chip esp32 merge-bin -o {w}/out.bin 0x1000 {bad}",
    "sign-data --version 2 -k {bad} -o {w}/out.bin {w}/bootloader.bin",
    "sign-data --version 2 -k {w}/sign.pem -o {w}/out.bin {bad}",
    "encrypt-flash-data -x -k {bad} -a 0x1000 -o {w}/out.bin {w}/bootloader.bin",
    "digest-secure-bootloader -k {bad} -o {w}/out.bin {w}/bootloader.bin",
    "partition-table {bad} {w}/out.bin",
    "nvs generate {bad} out.bin 0x3000 --outdir {w}",
    "nvs generate {w}/bad.csv out.bin 0x3000 --outdir {w}",  # a file row naming {bad}
    "nvs encrypt {w}/in.csv out.bin 0x3000 --inputkey {bad} --outdir {w}",
    "nvs decrypt {bad} {w}/k.bin out.bin --outdir {w}",
    "mfg generate {w}/cfg.csv {bad} dev 0x3000 --outdir {w}/mfg",
    "check-cert {bad}",
    "crt-bundle -i {bad} -o {w}/out.bin",
]


def _hostile(work: Path, kind: str) -> str:
    if kind == "dev-zero":
        return "/dev/zero"
    if kind == "fifo":
        fifo = work / "fifo"
        os.mkfifo(fifo)
        return str(fifo)
    if kind == "directory":
        (work / "adir").mkdir()
        return str(work / "adir")
    big = work / "huge.bin"  # sparse: costs no disk
    with open(big, "wb") as fh:
        fh.truncate(MAX_FLASH_SIZE + 1)
    return str(big)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
@pytest.mark.parametrize("command", INPUT_SLOTS, ids=[c.replace("{bad}", "X").split(" -")[0] for c in INPUT_SLOTS])
def test_non_regular_inputs_refused_without_hanging(work: Path, command: str, kind: str) -> None:
    bad = _hostile(work, kind)
    (work / "bad.csv").write_text(f"key,type,encoding,value\nns,namespace,,\nb,file,binary,{bad}\n")
    (work / "cfg.csv").write_text("ns,namespace,\nx,data,u8\n")
    argv = command.replace("{bad}", bad).replace("{w}", str(work)).split()
    try:
        proc = run_cli(*argv, cwd=work, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung on {kind}")
    assert_one_line_error(proc)
    assert not (work / "out.bin").exists() and not (work / "mfg").exists()


@pytest.mark.parametrize("command", [
    "image-info {bad}",
    "encrypt-flash-data -x -k {bad} -a 0x1000 -o {w}/out.bin {w}/bootloader.bin",
    "nvs encrypt {w}/in.csv out.bin 0x3000 --inputkey {bad} --outdir {w}",
    "sign-data --version 2 -k {bad} -o {w}/out.bin {w}/bootloader.bin",
], ids=["image", "flash-key", "nvs-keys", "signing-key"])  # fmt: skip
def test_oversized_inputs_refused(work: Path, command: str) -> None:
    bad = _hostile(work, "huge")
    proc = run_cli(*command.replace("{bad}", bad).replace("{w}", str(work)).split(), cwd=work)
    assert_one_line_error(proc, "huge.bin", "too large")


# -- sizes, addresses, values ----------------------------------------------------------------------
def test_max_flash_size_is_the_largest_header_size() -> None:
    assert max(int(name[:-2]) for name in FLASH_SIZES) * MB == MAX_FLASH_SIZE


@pytest.mark.parametrize("command, needle", [
    ("nvs generate {w}/in.csv out.bin 0x100000000 --outdir {w}", "larger than any flash"),
    ("nvs generate {w}/in.csv out.bin 0x10000000000 --outdir {w}", "larger than any flash"),
    ("mfg generate {w}/cfg.csv {w}/values.csv dev 0x100000000 --outdir {w}/mfg", "larger than any flash"),
    ("--chip esp32 merge-bin -o {w}/out.bin 0xFFFFF000 {w}/bootloader.bin", "outside the flash"),
    ("--chip esp32 merge-bin -o {w}/out.bin 0x10000000000 {w}/bootloader.bin", "outside the flash"),
    ("--chip esp32 merge-bin -o {w}/out.bin -fs 4MB 0x3FF000 {w}/bootloader.bin", "outside the flash (4 MiB)"),
    ("--chip esp32 merge-bin -o {w}/out.bin -t 0x10000000000 0x1000 {w}/bootloader.bin", "outside the flash"),
    ("--chip esp32 elf2image -o {w}/out.bin --pad-to-size 0 {w}/app.elf", "--pad-to-size"),
    ("--chip esp32 elf2image -o {w}/out.bin --pad-to-size 0x100000000 {w}/app.elf", "--pad-to-size"),
    ("partition-table --offset 0x100000000 {w}/pt.csv {w}/out.bin", "outside the flash"),
    ("partition-table {w}/big.csv {w}/out.bin", "does not fit"),
    ("check-cert --horizon-years 1000000 {w}/in.csv", "horizon"),
    ("check-cert --horizon-years nan {w}/in.csv", "horizon"),
    ("crt-bundle --horizon-years 1e308 -i {w}/in.csv -o {w}/out.bin", "horizon"),
], ids=lambda v: v if v.startswith(("larger", "outside", "--", "horizon", "does")) else None)  # fmt: skip
def test_absurd_sizes_and_values(work: Path, command: str, needle: str) -> None:
    (work / "cfg.csv").write_text("ns,namespace,\nx,data,u8\n")
    (work / "values.csv").write_text("x\n1\n")
    (work / "big.csv").write_text(TABLE + "huge,data,fat,0xFFFF0000,1M\n")
    proc = run_cli(*command.replace("{w}", str(work)).split(), cwd=work, timeout=60)
    assert_one_line_error(proc, needle)
    assert not (work / "out.bin").exists() and not (work / "mfg").exists()


def test_esptool_refuses_pad_to_size_zero_too(work: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32", "elf2image", "-o", work / "e.bin",
                           "--pad-to-size", "0", work / "app.elf"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode != 0 and not (work / "e.bin").exists()


def test_image_info_on_a_corrupt_image_says_invalid_on_stderr(work: Path) -> None:
    run_cli("--chip", "esp32", "elf2image", "-o", work / "img.bin", work / "app.elf", check=True)
    data = bytearray((work / "img.bin").read_bytes())
    data[1000] ^= 0xFF
    (work / "img.bin").write_bytes(data)
    proc = run_cli("image-info", work / "img.bin")
    assert proc.returncode == 1
    assert "INVALID" in proc.stderr and "img.bin" in proc.stderr and "Traceback" not in proc.stderr


def test_nvs_decrypt_of_an_empty_file_is_refused(work: Path) -> None:
    (work / "empty.bin").write_bytes(b"")
    proc = run_cli("nvs", "decrypt", work / "empty.bin", work / "k.bin", "out.bin", "--outdir", work)
    assert_one_line_error(proc, "empty.bin", "empty")
    assert not (work / "out.bin").exists()


def test_usage_errors_are_one_line(work: Path) -> None:
    for argv in (["bogus"], ["nvs"], ["nvs", "generate"], ["elf2image", "--flash-mode", "fast", "x"], []):
        assert_one_line_error(run_cli(*argv), "error")


def test_help_keeps_names_apart() -> None:
    out = run_cli("--help").stdout
    line = next(line for line in out.splitlines() if "generate-flash-encryption-key" in line)
    assert "generate-flash-encryption-key  make" in line
