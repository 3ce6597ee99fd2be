"""Keys whose private halves are public never sign a release unless explicitly allowed."""

from __future__ import annotations

import hashlib
import os
import shutil
import zlib
from pathlib import Path

import pytest
from conftest import REPO, VECTORS, assert_one_line_error, run_cli
from cryptography.hazmat.primitives import serialization
from sconsutil import TOOL_HEADER, scons

from esp_secure_build.secure_boot.published_keys import (
    PUBLISHED_KEY_FINGERPRINTS,
    is_published,
    is_published_secret_key,
    weak_secret_key,
)

PUBLISHED_FILES = sorted(VECTORS.glob("published-keys/*.pem")) + sorted(
    p for p in VECTORS.glob("esptool/secure_images/*.pem") if "pubkey" not in p.name
)
UNSIGNED = VECTORS / "esptool/secure_images/bootloader_unsigned_v2.bin"


def _spki_sha256(path: Path) -> str:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def test_every_published_key_is_listed() -> None:
    """Every private key shipped under tests/ is published with the repository, so refused."""
    assert len(PUBLISHED_FILES) >= 20
    shipped = [p for p in (REPO / "tests").rglob("*.pem") if b"PRIVATE KEY-----" in p.read_bytes()]
    assert set(PUBLISHED_FILES) <= set(shipped)
    missing = [str(p.relative_to(REPO)) for p in shipped if _spki_sha256(p) not in PUBLISHED_KEY_FINGERPRINTS]
    assert missing == []


V2_SIGNABLE = [p for p in PUBLISHED_FILES if "v2" in p.name or p.parent.name == "published-keys" or "rsa" in p.name]


@pytest.mark.parametrize("key", V2_SIGNABLE, ids=[p.name for p in V2_SIGNABLE])
def test_signing_with_published_key_is_refused(tmp_path: Path, key: Path) -> None:
    out = tmp_path / "signed.bin"
    proc = run_cli("sign-data", "--version", "2", "--keyfile", key, "-o", out, UNSIGNED, allow_published_key=False)
    assert_one_line_error(proc, "publicly known", "--allow-published-key")
    assert not out.exists()


def test_v1_published_key_is_refused_and_override_works(tmp_path: Path) -> None:
    key = VECTORS / "esptool/secure_images/ecdsa256_secure_boot_signing_key.pem"
    data = VECTORS / "esptool/secure_images/bootloader.bin"
    out = tmp_path / "signed.bin"
    assert_one_line_error(run_cli("sign-data", "-v", "1", "-k", key, "-o", out, data, allow_published_key=False), "publicly known")
    assert not out.exists()
    proc = run_cli("sign-data", "-v", "1", "-k", key, "-o", out, data, "--allow-published-key", allow_published_key=False)
    assert proc.returncode == 0, proc.stderr


def test_own_key_is_accepted(tmp_path: Path) -> None:
    key, out = tmp_path / "own.pem", tmp_path / "signed.bin"
    assert run_cli("generate-signing-key", "--version", "2", "--scheme", "ecdsa256", key).returncode == 0
    proc = run_cli("sign-data", "--version", "2", "--keyfile", key, "-o", out, UNSIGNED, allow_published_key=False)
    assert proc.returncode == 0, proc.stderr
    assert not is_published(serialization.load_pem_private_key(key.read_bytes(), None).public_key())


# -- secret keys: flash encryption, Secure Boot V1, NVS keys, NVS HMAC keys ----------------------------
SECRET_FILES = {
    "flash_encryption": ["esptool/secure_images/256bit_key.bin", "esptool/secure_images/512bit_key.bin",
                         "esptool/secure_images/ef-flashencryption-key.bin"],
    "nvs_keys": ["nvs/esp-idf/testdata/sample_encryption_keys.bin", "nvs/esp-idf/testdata/sample_encryption_keys_hmac.bin",
                 "mfg/run-a/input/keys/nvs_keys.bin"],
    "nvs_hmac": ["nvs/esp-idf/testdata/sample_hmac_key.bin"],
}  # fmt: skip


@pytest.mark.parametrize("kind, name", [(k, n) for k, names in SECRET_FILES.items() for n in names])
def test_every_published_secret_key_is_listed(kind: str, name: str) -> None:
    data = (VECTORS / name).read_bytes()
    assert is_published_secret_key(kind, data)
    if len(data[:64]) == 64:  # either half of a 64-byte key, used as a 256-bit key
        assert is_published_secret_key("flash_encryption", data[:32])
        assert is_published_secret_key("flash_encryption", data[32:64])


def test_random_keys_are_neither_weak_nor_published() -> None:
    for size in (16, 24, 32, 64):
        key = os.urandom(size)
        assert weak_secret_key("flash_encryption", key) is None
        assert is_published_secret_key("flash_encryption", key) is None


def _nvs_keys(eky: bytes, tky: bytes) -> bytes:
    body = eky + tky
    return body + zlib.crc32(body, 0xFFFFFFFF).to_bytes(4, "little") + b"\xff" * (4096 - 68)


WEAK = {
    "esp32-zero": ("--chip esp32 encrypt-flash-data", bytes(32)),
    "esp32-ff": ("--chip esp32 encrypt-flash-data", b"\xff" * 32),
    "esp32-half": ("--chip esp32 encrypt-flash-data", os.urandom(16) + bytes(16)),
    "c2-zero": ("--chip esp32c2 encrypt-flash-data", bytes(16)),
    "xts128-halves": ("--chip esp32c3 encrypt-flash-data", bytes(16) + b"\xff" * 16),
    "xts256-half": ("--chip esp32s3 encrypt-flash-data", os.urandom(32) + b"\x5a" * 32),
}


@pytest.mark.parametrize("case", list(WEAK), ids=list(WEAK))
def test_flash_keys_without_entropy_are_refused(tmp_path: Path, case: str) -> None:
    command, key = WEAK[case]
    (tmp_path / "k.bin").write_bytes(key)
    out = tmp_path / "enc.bin"
    argv = [*command.split(), "-k", tmp_path / "k.bin", "-a", "0x10000", "-o", out, UNSIGNED]
    assert_one_line_error(run_cli(*argv, allow_published_key=False), "k.bin", "no entropy", "--allow-published-key")
    assert not out.exists()
    assert run_cli(*argv, "--allow-published-key", allow_published_key=False).returncode == 0


@pytest.mark.parametrize("argv", [
    "--chip esp32 encrypt-flash-data -k {si}/256bit_key.bin -a 0x10000 -o {out} {data}",
    "encrypt-flash-data -x -k {si}/512bit_key.bin -a 0x10000 -o {out} {data}",
    "--chip esp32 encrypt-flash-data -k {si}/ef-flashencryption-key.bin -a 0x10000 -o {out} {data}",
    "digest-secure-bootloader -k {si}/256bit_key.bin -o {out} {si}/bootloader.bin",
], ids=["esp32", "xts256", "ef-key", "v1-digest"])  # fmt: skip
def test_published_flash_and_v1_keys_are_refused(tmp_path: Path, argv: str) -> None:
    out = tmp_path / "out.bin"
    words = argv.format(si=VECTORS / "esptool/secure_images", out=out, data=UNSIGNED).split()
    assert_one_line_error(run_cli(*words, allow_published_key=False), "publicly known", "--allow-published-key")
    assert not out.exists()
    assert run_cli(*words, "--allow-published-key", allow_published_key=False).returncode == 0


def test_v1_key_without_entropy_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k.bin").write_bytes(bytes(32))
    proc = run_cli("digest-secure-bootloader", "-k", tmp_path / "k.bin", "-o", tmp_path / "out.bin",
                   VECTORS / "esptool/secure_images/bootloader.bin", allow_published_key=False)  # fmt: skip
    assert_one_line_error(proc, "Secure Boot V1 key", "no entropy")


CSV = "key,type,encoding,value\nns,namespace,,\nx,data,u8,1\n"


@pytest.mark.parametrize("keys, needle", [
    (VECTORS / "nvs/esp-idf/testdata/sample_encryption_keys.bin", "no entropy"),  # 32 x 0x11 + 32 x 0x22
    (VECTORS / "nvs/esp-idf/testdata/sample_encryption_keys_hmac.bin", "publicly known"),
    (VECTORS / "mfg/run-a/input/keys/nvs_keys.bin", "publicly known"),
    (_nvs_keys(bytes(32), b"\xff" * 32), "no entropy"),
    (_nvs_keys(os.urandom(32), bytes(32)), "no entropy"),
], ids=["esp-idf-sample", "esp-idf-hmac-derived", "mfg-run", "00-ff", "tweak-zero"])  # fmt: skip
@pytest.mark.parametrize("command", ["nvs encrypt {csv} out.bin 0x3000", "mfg generate {cfg} {values} dev 0x3000"])
def test_known_nvs_keys_are_refused(tmp_path: Path, keys: Path | bytes, needle: str, command: str) -> None:
    key_file = tmp_path / "keys.bin"
    key_file.write_bytes(keys if isinstance(keys, bytes) else keys.read_bytes())
    (tmp_path / "in.csv").write_text(CSV)
    (tmp_path / "cfg.csv").write_text("ns,namespace,\nx,data,u8\n")
    (tmp_path / "values.csv").write_text("x\n1\n")
    argv = command.format(csv=tmp_path / "in.csv", cfg=tmp_path / "cfg.csv", values=tmp_path / "values.csv").split()
    argv += ["--inputkey", str(key_file), "--outdir", str(tmp_path / "out")]
    assert_one_line_error(run_cli(*argv, allow_published_key=False), "keys.bin", "NVS keys", needle, "--allow-published-key")
    assert not (tmp_path / "out").exists()
    assert run_cli(*argv, "--allow-published-key", allow_published_key=False).returncode == 0


@pytest.mark.parametrize("hmac_key, needle", [
    ((VECTORS / "nvs/esp-idf/testdata/sample_hmac_key.bin").read_bytes(), "publicly known"),
    (bytes(32), "no entropy"),
], ids=["esp-idf-sample", "zero"])  # fmt: skip
@pytest.mark.parametrize("command", ["nvs generate-key", "nvs encrypt {csv} out.bin 0x3000 --keygen",
                                     "mfg generate {cfg} {values} dev 0x3000 --keygen"])  # fmt: skip
def test_known_nvs_hmac_keys_are_refused(tmp_path: Path, hmac_key: bytes, needle: str, command: str) -> None:
    (tmp_path / "hmac.bin").write_bytes(hmac_key)
    (tmp_path / "in.csv").write_text(CSV)
    (tmp_path / "cfg.csv").write_text("ns,namespace,\nx,data,u8\n")
    (tmp_path / "values.csv").write_text("x\n1\n")
    argv = command.format(csv=tmp_path / "in.csv", cfg=tmp_path / "cfg.csv", values=tmp_path / "values.csv").split()
    argv += ["--key_protect_hmac", "--kp_hmac_inputkey", str(tmp_path / "hmac.bin"), "--outdir", str(tmp_path / "out")]
    assert_one_line_error(run_cli(*argv, allow_published_key=False), "hmac.bin", "HMAC key", needle)
    assert not (tmp_path / "out").exists()


def test_scons_refuses_known_secret_keys_and_names_its_override(tmp_path: Path) -> None:
    shutil.copy(VECTORS / "nvs/esp-idf/testdata/sample_encryption_keys_hmac.bin", tmp_path / "given.bin")
    (tmp_path / "nvs.csv").write_text(CSV)
    (tmp_path / "SConstruct").write_text(
        TOOL_HEADER
        + "env['ESP_ALLOW_PUBLISHED_KEY'] = ARGUMENTS.get('allow', '')\n"
        + "keys = env.NvsKeys('keys/k.bin', 'given.bin')\n"
        + "env.EncryptedNvs('build/nvs.bin', 'nvs.csv', ESP_NVS_KEYS=keys)\n"
    )
    proc = scons(tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "given.bin" in proc.stderr and "publicly known" in proc.stderr and "ESP_ALLOW_PUBLISHED_KEY=1" in proc.stderr
    assert "--allow-published-key" not in proc.stderr
    assert not (tmp_path / "build/nvs.bin").exists()
    assert scons(tmp_path, "allow=1").returncode == 0


@pytest.mark.parametrize("value", [1, 2**100 + 12345, int.from_bytes(b"\x42" * 32, "big")], ids=["one", "low-half-zero", "constant"])
def test_ecdsa_signing_key_without_entropy_is_refused(tmp_path: Path, value: int) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.derive_private_key(value, ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "weak.pem").write_bytes(pem)
    out = tmp_path / "signed.bin"
    argv = ["sign-data", "--version", "2", "--keyfile", tmp_path / "weak.pem", "-o", out, UNSIGNED]
    assert_one_line_error(run_cli(*argv, allow_published_key=False), "weak.pem", "no entropy", "--allow-published-key")
    assert not out.exists()
