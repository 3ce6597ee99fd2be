"""Secure Boot in the SCons graph: the sample's signed release, key changes, HSM and external signers."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import VECTORS, run_oracle
from sconsutil import TOOL_HEADER, copy_sample, scons, steps

from esp_secure_build.image import read_image

SI = VECTORS / "esptool/secure_images"
C3_KEY = "keys/esp32c3_secure_boot_v2_rsa3072.pem"


@pytest.fixture(scope="module")
def c3_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    project = copy_sample(tmp_path_factory.mktemp("signed_c3"))
    proc = scons(project, "release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return project, proc.stdout


def test_sample_v2_release_verified_by_espsecure(c3_release: tuple[Path, str], tmp_path: Path) -> None:
    project, output = c3_release
    key = project / C3_KEY
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "DEVELOPMENT signing key created" in output and "DEVELOPMENT keys" in output
    for name in ("app", "bootloader"):
        image = project / f"build/release/{name}.bin"
        run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", key, image)
        info = read_image(image.read_bytes())
        assert [ok for _, ok in info.signature_blocks] == [True]
    # The app is padded so its signature sector starts on a 64 KiB page (--secure-pad-v2).
    assert read_image((project / "build/release/app.bin").read_bytes()).signature_offset % 0x10000 == 0
    digest = tmp_path / "digest.bin"
    run_oracle("espsecure", "digest-sbv2-public-key", "--keyfile", key, "-o", digest)
    assert (project / "build/release/secure_boot_key0_digest.bin").read_bytes() == digest.read_bytes()
    script = (project / "build/release/provisioning/efuse-script.sh").read_text()
    assert digest.read_bytes().hex() in script
    assert 'efuse burn-key BLOCK_KEY1 "$RELEASE/secure_boot_key0_digest.bin" SECURE_BOOT_DIGEST0' in script


def test_changing_the_key_resigns_only(c3_release: tuple[Path, str], tmp_path: Path) -> None:
    project, _ = c3_release
    other = tmp_path / "other.pem"
    run_oracle("espsecure", "generate-signing-key", "--version", "2", "--scheme", "rsa3072", other)
    proc = scons(project, "release", f"ESP_SIGNING_KEYS={other}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(steps(proc)) == sorted([
        "ESP-PROVISION build/release/provisioning/efuse-script.sh", "ESP-SIGN build/release/app.bin",
        "ESP-SIGN build/release/bootloader.bin", "ESP-ENCRYPT build/release/encrypted/app.bin",
        "ESP-ENCRYPT build/release/encrypted/bootloader.bin", "ESP-FACTORY build/release/factory-encrypted.bin",
        "ESP-MANIFEST build/release/manifest.json",
    ])  # fmt: skip  # nothing compiled, no image rebuilt
    run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", other, project / "build/release/app.bin")
    # Same key again: nothing to do.
    assert steps(scons(project, "release", f"ESP_SIGNING_KEYS={other}")) == []


def test_clean_keeps_development_keys(c3_release: tuple[Path, str]) -> None:
    project, _ = c3_release
    key = project / C3_KEY
    before = key.read_bytes()
    assert scons(project, "-c", "release").returncode == 0
    assert key.read_bytes() == before
    assert scons(project, "release").returncode == 0
    assert key.read_bytes() == before


def test_sample_ecdsa_and_v1(tmp_path: Path) -> None:
    project = copy_sample(tmp_path)
    # The ESP32-C3 ROM verifies RSA only: an ECDSA key is refused for it, with one line.
    proc = scons(project, "release", "ESP_DEV_KEY_SCHEME=ecdsa256")
    assert proc.returncode == 2 and "ESP32-C3 Secure Boot V2 does not accept ecdsa256" in proc.stderr
    assert not (project / "build/release/app.bin").exists()
    assert not (project / "keys/esp32c3_secure_boot_v2_ecdsa256.pem").exists()
    # The ESP32-C6 takes ECDSA.
    assert scons(project, "release", "ESP_CHIP=esp32c6", "ESP_DEV_KEY_SCHEME=ecdsa256").returncode == 0
    key, app = project / "keys/esp32c6_secure_boot_v2_ecdsa256.pem", project / "build/release-esp32c6/app.bin"
    run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", key, app)
    # ECDSA signing is deterministic (RFC 6979): a forced re-sign gives the same bytes.
    first = app.read_bytes()
    app.unlink()
    assert scons(project, "release", "ESP_CHIP=esp32c6", "ESP_DEV_KEY_SCHEME=ecdsa256").returncode == 0
    assert app.read_bytes() == first

    proc = scons(project, "release", "ESP_CHIP=esp32")
    assert proc.returncode == 0, proc.stderr
    rel, key = project / "build/release-esp32", project / "keys/esp32_secure_boot_v1_ecdsa256.pem"
    run_oracle("espsecure", "verify-signature", "--version", "1", "--keyfile", key, rel / "app.bin")
    hw_key = tmp_path / "hw.bin"
    run_oracle("espsecure", "digest-private-key", "--keyfile", key, hw_key)
    v1_key = project / "keys/release-esp32-secure-bootloader-key-256.bin"  # with the keys, not in the release
    assert v1_key.read_bytes() == hw_key.read_bytes() and not (rel / "secret").exists()
    iv = tmp_path / "iv.bin"
    iv.write_bytes((rel / "bootloader-reflash-digest.bin").read_bytes()[:128])
    ref = tmp_path / "digest.bin"
    run_oracle("espsecure", "digest-secure-bootloader", "--keyfile", hw_key, "--iv", iv, "--output", ref, rel / "bootloader.bin")
    assert (rel / "bootloader-reflash-digest.bin").read_bytes() == ref.read_bytes()
    script = (rel / "provisioning/efuse-script.sh").read_text()
    assert 'efuse burn-key secure_boot_v1 "$ESP_KEYS_DIR/release-esp32-secure-bootloader-key-256.bin"' in script
    assert "release-esp32-secure-bootloader-key-256.bin" in (rel / "provisioning/README.txt").read_text()
    assert oct(v1_key.stat().st_mode & 0o777) == "0o600"


def _signing_project(folder: Path, keys_expr: str, extra: str = "", chip: str = "esp32c6") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SConstruct").write_text(
        TOOL_HEADER
        + f"env.Replace(ESP_CHIP={chip!r}, ESP_SECURE_BOOT_VERSION=2, ESP_SIGNING_KEYS={keys_expr})\n"
        f"{extra}"
        f"env.SignedImage('signed.bin', {str(SI / 'bootloader_unsigned_v2.bin')!r})\n"
    )
    return folder


def test_published_key_refused_in_scons(tmp_path: Path) -> None:
    key = SI / "ecdsa256_secure_boot_signing_key.pem"
    folder = _signing_project(tmp_path / "p", f"[{str(key)!r}]")
    proc = scons(folder)
    assert proc.returncode == 2 and "publicly known" in proc.stderr and "Traceback" not in proc.stderr
    assert not (folder / "signed.bin").exists()
    allowed = _signing_project(tmp_path / "q", f"[{str(key)!r}]", "env['ESP_ALLOW_PUBLISHED_KEY'] = True\n")
    assert scons(allowed).returncode == 0
    run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", key, allowed / "signed.bin")


def test_expected_digest_gate(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    run_oracle("espsecure", "generate-signing-key", "--version", "2", "--scheme", "ecdsa256", key)
    folder = _signing_project(tmp_path / "p", f"[{str(key)!r}]", "env['ESP_EXPECTED_KEY_DIGESTS'] = ['00' * 32]\n")
    proc = scons(folder)
    assert proc.returncode == 2 and "not an expected key" in proc.stderr
    assert not (folder / "signed.bin").exists()


def test_external_signer_in_scons(tmp_path: Path, signer_script: Path) -> None:
    key, pub = tmp_path / "k.pem", tmp_path / "pub.pem"
    run_oracle("espsecure", "generate-signing-key", "--version", "2", "--scheme", "ecdsa384", key)
    run_oracle("espsecure", "extract-public-key", "--version", "2", "--keyfile", key, pub)
    command = f"{sys.executable} {signer_script} {key} bin {{digest}}"
    folder = _signing_project(tmp_path / "p", f"[{{'command': {command!r}, 'public_key': {str(pub)!r}}}]", chip="esp32c5")
    proc = scons(folder)
    assert proc.returncode == 0, proc.stderr
    run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", pub, folder / "signed.bin")


def test_softhsm_in_scons(tmp_path: Path, softhsm: dict[str, Path]) -> None:
    folder = _signing_project(tmp_path / "p", f"[{{'pkcs11': {str(softhsm['sb-rsa'])!r}}}]", chip="esp32c3")
    proc = scons(folder, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    run_oracle("espsecure", "verify-signature", "--version", "2", "--hsm", "--hsm-config", softhsm["sb-rsa"], folder / "signed.bin")
    assert steps(scons(folder, env=dict(os.environ))) == []
