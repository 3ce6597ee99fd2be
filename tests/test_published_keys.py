"""Keys whose private halves are public never sign a release unless explicitly allowed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import REPO, VECTORS, assert_one_line_error, run_cli
from cryptography.hazmat.primitives import serialization

from esp_secure_build.secure_boot.published_keys import PUBLISHED_KEY_FINGERPRINTS, is_published

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
