"""eFuse provisioning: the generated script run against espefuse's virtual chip (esptool 5.6.0).

Every chip profile's sequence is burned into ``espefuse --virt --path-efuse-file``, then
``espefuse summary --format json`` is checked with :func:`check_efuse_summary`: the
release's own keys pass, a chip provisioned with other keys fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from esp_secure_build.efuse import (
    PROFILES,
    check_efuse_summary,
    parse_efuse_summary,
    provisioning_plan,
    render_readme,
    render_script,
)
from esp_secure_build.errors import EspSecureError

ESPEFUSE = f"{sys.executable} -m espefuse --virt"


def run_script(script: Path, efuse_file: Path, keys: Path, summary: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ESPEFUSE=f"{ESPEFUSE} --path-efuse-file {efuse_file}", ESP_KEYS_DIR=str(keys),
               ESP_EFUSE_SUMMARY=str(summary))  # fmt: skip
    env.pop("ESP_PORT", None)
    return subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=300)


def espefuse_summary(chip: str, efuse_file: Path, tmp: Path) -> dict:
    out = tmp / "summary-now.json"
    subprocess.run([*ESPEFUSE.split(), "--chip", chip, "--path-efuse-file", str(efuse_file), "summary", "--format", "json",
                    "--file", str(out)], check=True, capture_output=True, timeout=120)  # fmt: skip
    return parse_efuse_summary(out.read_text(), str(out))


# (chip, Secure Boot version, number of V2 keys, flash key bits, scheme)
CASES = [
    ("esp32", 1, 1, 256, None),
    ("esp32", 2, 1, 256, None),
    ("esp32s2", 2, 3, 512, None),
    ("esp32s3", 2, 2, 256, None),
    ("esp32c2", 2, 1, 128, None),
    ("esp32c2", None, 0, 256, None),
    ("esp32c3", 2, 1, 256, None),
    ("esp32c5", 2, 1, 256, "ecdsa384"),
    ("esp32c6", 2, 2, 256, None),
    ("esp32c61", 2, 1, 256, None),
    ("esp32h2", 2, 1, 256, None),
    ("esp32p4", 2, 1, 512, None),
    ("esp32c3", None, 0, 256, None),
]


def _release(tmp: Path, chip: str, version: int | None, nkeys: int, bits: int, scheme: str | None, seed: int) -> dict:
    """A release folder with digest files and the script, and a keys folder with the secrets."""
    import random

    rng = random.Random(seed)
    rel, keys = tmp / "release", tmp / "keys"
    (rel / "provisioning").mkdir(parents=True)
    keys.mkdir()
    digests = [rng.randbytes(32) for _ in range(nkeys)]
    names = []
    for i, d in enumerate(digests):
        names.append(f"secure_boot_key{i}_digest.bin")
        (rel / names[-1]).write_bytes(d)
    flash_key = rng.randbytes(bits // 8)
    (keys / "fe.bin").write_bytes(flash_key)
    v1 = rng.randbytes(32) if version == 1 else None
    if v1:
        (keys / "v1.bin").write_bytes(v1)
    steps = provisioning_plan(chip, secure_boot_version=version, digest_files=names, v1_key_file="v1.bin" if v1 else None,
                              flash_key_file="fe.bin", flash_key_bits=bits, scheme=scheme)  # fmt: skip
    (rel / "provisioning/efuse-script.sh").write_text(render_script(chip, steps))
    return {"rel": rel, "keys": keys, "digests": digests, "flash_key": flash_key, "steps": steps}


@pytest.mark.parametrize(("chip", "version", "nkeys", "bits", "scheme"), CASES,
                         ids=[f"{c[0]}-v{c[1]}-{c[2]}keys-{c[3]}" for c in CASES])  # fmt: skip
def test_script_provisions_a_virtual_chip(tmp_path: Path, chip: str, version: int | None, nkeys: int, bits: int,
                                          scheme: str | None) -> None:  # fmt: skip
    r = _release(tmp_path, chip, version, nkeys, bits, scheme, seed=1)
    efuses, summary_file = tmp_path / "efuses.bin", tmp_path / "summary.json"
    proc = run_script(r["rel"] / "provisioning/efuse-script.sh", efuses, r["keys"], summary_file)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expect = dict(chip=chip, key_digests=r["digests"], secure_boot_version=version, flash_encryption=True,
                  xts_key_bits=None if chip == "esp32" else bits)  # fmt: skip
    summary = parse_efuse_summary(summary_file.read_text(), str(summary_file))
    assert check_efuse_summary(summary, **expect, flash_key=r["flash_key"]) == []
    # After the final lock: still the release's eFuses, and download mode locked.
    after = espefuse_summary(chip, efuses, tmp_path)
    assert check_efuse_summary(after, **expect, flash_key=None) == []
    lock = "UART_DOWNLOAD_DIS" if chip == "esp32" else "ENABLE_SECURITY_DOWNLOAD"
    assert after[lock]["value"] is True
    # The flash key can never be read back; Secure Boot digests stay readable.
    assert "??" in str(after["BLOCK1" if chip == "esp32" else "BLOCK_KEY0_LOW_128" if bits == 128 else "BLOCK_KEY0"]["value"])

    # Another release's keys: caught.
    other = dict(expect, key_digests=[bytes(32 - len(d)) + os.urandom(len(d)) for d in r["digests"]])
    if version == 2:
        assert any("digest" in p for p in check_efuse_summary(summary, **other, flash_key=None))
    wrong_size = {512: 256, 256: 128 if chip == "esp32c2" else 512, 128: 256}[bits]
    if chip != "esp32":
        assert check_efuse_summary(summary, **dict(expect, xts_key_bits=wrong_size), flash_key=None)
    assert check_efuse_summary(summary, **dict(expect, flash_encryption=False), flash_key=None)
    assert check_efuse_summary(summary, **dict(expect, secure_boot_version=None), flash_key=None) or version is None


def test_a_blank_chip_fails_every_check(tmp_path: Path) -> None:
    blank = espefuse_summary("esp32c3", tmp_path / "blank.bin", tmp_path)
    problems = check_efuse_summary(blank, chip="esp32c3", key_digests=[bytes(range(32))], secure_boot_version=2,
                                   flash_encryption=True, xts_key_bits=256, flash_key=None)  # fmt: skip
    text = "\n".join(problems)
    for needle in ("flash encryption is not enabled", "XTS_AES_128_KEY", "Secure Boot V2 is not enabled",
                   "not burned in a usable slot", "DIS_DOWNLOAD_MANUAL_ENCRYPT", "RD_DIS"):  # fmt: skip
        assert needle in text, text
    # A blank chip is right for a plain, unsigned release.
    assert check_efuse_summary(blank, chip="esp32c3", key_digests=[], secure_boot_version=None, flash_encryption=False,
                               xts_key_bits=None, flash_key=None) == []  # fmt: skip


def _burn(chip: str, efuses: Path, *args: str) -> None:
    subprocess.run([*ESPEFUSE.split(), "--chip", chip, "--path-efuse-file", str(efuses), "--do-not-confirm", *args],
                   check=True, capture_output=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("chip", ["esp32c3", "esp32"])
def test_readable_flash_key_is_compared(tmp_path: Path, chip: str) -> None:
    """A chip whose flash key was burned without read protection: the key itself is compared."""
    key, other = os.urandom(32), os.urandom(32)
    (tmp_path / "k.bin").write_bytes(other)
    efuses = tmp_path / "e.bin"
    if chip == "esp32":
        _burn(chip, efuses, "burn-key", "flash_encryption", str(tmp_path / "k.bin"), "--no-protect-key")
        _burn(chip, efuses, "burn-efuse", "FLASH_CRYPT_CNT", "127")
    else:
        _burn(chip, efuses, "burn-key", "BLOCK_KEY0", str(tmp_path / "k.bin"), "XTS_AES_128_KEY", "--no-read-protect")
        _burn(chip, efuses, "burn-efuse", "SPI_BOOT_CRYPT_CNT", "7")
    summary = espefuse_summary(chip, efuses, tmp_path)
    block = "BLOCK1" if chip == "esp32" else "BLOCK_KEY0"
    args = dict(chip=chip, key_digests=[], secure_boot_version=None, flash_encryption=True, xts_key_bits=None)
    problems = check_efuse_summary(summary, **args, flash_key=key)
    assert f"{block} holds another flash encryption key than the release's" in problems
    assert f"the flash encryption key in {block} is readable (not read-protected)" in problems
    assert f"{block} holds another flash encryption key than the release's" not in check_efuse_summary(summary, **args, flash_key=other)


def test_plan_refusals_and_text() -> None:
    with pytest.raises(EspSecureError, match="128-bit flash encryption key"):
        provisioning_plan("esp32c2", secure_boot_version=2, digest_files=["d.bin"], flash_key_file="k", flash_key_bits=256)
    with pytest.raises(EspSecureError, match="256-bit flash encryption key"):
        provisioning_plan("esp32c5", secure_boot_version=None, flash_key_file="k", flash_key_bits=512)
    with pytest.raises(EspSecureError, match="1 to 3"):
        provisioning_plan("esp32c3", secure_boot_version=2, digest_files=["a", "b", "c", "d"])
    with pytest.raises(EspSecureError, match="ESP32 only"):
        provisioning_plan("esp32c3", secure_boot_version=1, v1_key_file="k")
    with pytest.raises(EspSecureError, match="no eFuse provisioning profile"):
        provisioning_plan("esp8266", secure_boot_version=None)
    assert provisioning_plan("esp32c3", secure_boot_version=None) == []
    steps = provisioning_plan("esp32c6", secure_boot_version=2, digest_files=["d0.bin", "d1.bin"],
                              flash_key_file="fe.bin", flash_key_bits=256)  # fmt: skip
    script = render_script("esp32c6", steps)
    assert 'burn-key BLOCK_KEY1 "$RELEASE/d0.bin" SECURE_BOOT_DIGEST0 BLOCK_KEY2 "$RELEASE/d1.bin" SECURE_BOOT_DIGEST1' in script
    assert 'burn-key BLOCK_KEY0 "$ESP_KEYS_DIR/fe.bin" XTS_AES_128_KEY' in script
    assert script.index("summary --format json") < script.index("ENABLE_SECURITY_DOWNLOAD")
    assert script.index("SPI_BOOT_CRYPT_CNT 7") < script.index("SECURE_BOOT_DIGEST0") < script.index("SECURE_BOOT_EN 1") < script.index("write-protect-efuse RD_DIS")
    readme = render_readme("esp32c6", steps, ["Secure Boot V2"], ["fe.bin"])
    assert "SECURE_BOOT_KEY_REVOKE2" in readme and "fe.bin" in readme


def test_profiles_cover_the_chips_espefuse_knows() -> None:
    from esp_secure_build.chips import CHIPS

    assert set(PROFILES) == {"esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32c61",
                             "esp32h2", "esp32p4"} <= set(CHIPS)  # fmt: skip


def test_summary_parsing() -> None:
    assert parse_efuse_summary('espefuse v5.6.0\n\n=== Run "summary" command ===\n{"A": {"value": 1}}\n') == {"A": {"value": 1}}
    for bad in ("", "espefuse v5.6.0", "[1, 2]", '{"A": 3}'):
        with pytest.raises(EspSecureError, match="not an espefuse JSON summary"):
            parse_efuse_summary(bad, "s.json")


# ---------------------------------------------------------------------------------------
# The sample's three configurations, end to end.

SAMPLES = {
    "esp32c3": ("release", ()),
    "esp32": ("release-esp32", ("ESP_CHIP=esp32",)),
    "esp32c6": ("release-esp32c6", ("ESP_CHIP=esp32c6", "ESP_DEV_KEY_SCHEME=ecdsa256")),
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sconsutil import copy_sample, scons

    project = copy_sample(tmp_path_factory.mktemp("provision"))
    for _, args in SAMPLES.values():
        proc = scons(project, "release", *args)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return project


def _expectation(project: Path, chip: str) -> dict:
    rel = project / "build" / SAMPLES[chip][0]
    return dict(chip=chip, key_digests=[(rel / "secure_boot_key0_digest.bin").read_bytes()],
                secure_boot_version=1 if chip == "esp32" else 2, flash_encryption=True,
                xts_key_bits=None if chip == "esp32" else 256)  # fmt: skip


@pytest.mark.parametrize("chip", list(SAMPLES))
def test_sample_release_provisions_a_virtual_chip(sample: Path, tmp_path: Path, chip: str) -> None:
    rel = sample / "build" / SAMPLES[chip][0]
    script = rel / "provisioning/efuse-script.sh"
    text = script.read_text()
    assert os.access(script, os.X_OK) and str(sample) not in text  # relative to the release folder
    readme = (rel / "provisioning/README.txt").read_text()
    assert f"{chip}_flash_encryption_key.bin" in readme and "never shipped" in readme
    assert not (rel / "secure_boot.txt").exists() and not (rel / "secret").exists()
    flash_key = (sample / f"keys/{chip}_flash_encryption_key.bin").read_bytes()
    expect = _expectation(sample, chip)

    summary_file = tmp_path / "summary.json"
    proc = run_script(script, tmp_path / "efuses.bin", sample / "keys", summary_file)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = parse_efuse_summary(summary_file.read_text(), str(summary_file))
    assert check_efuse_summary(summary, **expect, flash_key=flash_key) == []
    key_file = sample / f"keys/{chip}_flash_encryption_key.bin"
    proc = run_cli("verify-release", rel, "--efuse-summary", summary_file, "--flash-key", key_file)
    assert proc.returncode == 0 and "efuse" in proc.stdout, proc.stdout + proc.stderr
    if chip == "esp32":  # V1: the key in BLOCK2 is read-protected, as the flash key in BLOCK1
        assert "??" in summary["BLOCK2"]["value"] and summary["ABS_DONE_0"]["value"] is True
    else:
        assert summary["KEY_PURPOSE_1"]["value"] == "SECURE_BOOT_DIGEST0"
        assert summary["BLOCK_KEY1"]["value"].replace(" ", "") == expect["key_digests"][0].hex()

    # A chip provisioned with another release's keys (same script, other digest and flash key).
    other_rel, other_keys = tmp_path / "other", tmp_path / "other-keys"
    import shutil

    shutil.copytree(rel, other_rel)
    shutil.copytree(sample / "keys", other_keys)
    (other_rel / "secure_boot_key0_digest.bin").write_bytes(os.urandom(32))
    for name in (f"{chip}_flash_encryption_key.bin", "release-esp32-secure-bootloader-key-256.bin"):
        if (other_keys / name).exists():
            (other_keys / name).write_bytes(os.urandom(32))
    other_summary = tmp_path / "other.json"
    proc = run_script(other_rel / "provisioning/efuse-script.sh", tmp_path / "other.bin", other_keys, other_summary)
    assert proc.returncode == 0, proc.stderr[-3000:]
    problems = check_efuse_summary(parse_efuse_summary(other_summary.read_text()), **expect, flash_key=flash_key)
    proc = run_cli("verify-release", rel, "--efuse-summary", other_summary, "--flash-key", key_file)
    if chip == "esp32":
        # Secure Boot V1 and ESP32 flash encryption keep both keys read-protected: no summary
        # can tell them apart (the device's first boot does). Only the state is checked.
        assert problems == [] and proc.returncode == 0
    else:
        assert any("not a key digest of the release" in p for p in problems), problems
        assert proc.returncode == 1 and "not a key digest of the release" in proc.stdout + proc.stderr
    # The same chip against the wrong expectations.
    assert check_efuse_summary(summary, **dict(expect, flash_encryption=False), flash_key=None)


def _spellings(data: bytes) -> list[bytes]:
    import base64

    return [data, data.hex().encode(), data.hex().upper().encode(), base64.b64encode(data), base64.b64encode(data).rstrip(b"=")]


def _secret_forms(key_file: Path) -> list[bytes]:
    """Every spelling of a key file's secret: raw, hex, base64, PEM body lines, the private number."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    data = key_file.read_bytes()
    forms = _spellings(data)
    if b"-----BEGIN" in data:
        body = [line for line in data.splitlines() if line and not line.startswith(b"-----")]
        forms += [line for line in body if len(line) >= 40]  # every full PEM line
        key = serialization.load_pem_private_key(data, None)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        forms += _spellings(der)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            number = key.private_numbers().private_value
        else:
            assert isinstance(key, rsa.RSAPrivateKey)
            number = key.private_numbers().d
        forms += _spellings(number.to_bytes((number.bit_length() + 7) // 8, "big"))
    return forms


def test_no_secret_under_any_release_folder(sample: Path) -> None:
    keys = sorted((sample / "keys").iterdir())
    assert sample / "keys/release-esp32-secure-bootloader-key-256.bin" in keys  # the V1 eFuse key lives with the keys
    released = [p for folder, _ in SAMPLES.values() for p in (sample / "build" / folder).rglob("*") if p.is_file()]
    assert len(released) > 40
    contents = {p: p.read_bytes() for p in released}
    for key in keys:
        for form in _secret_forms(key):
            hits = [str(p.relative_to(sample)) for p, data in contents.items() if form in data]
            assert not hits, f"{key.name} found in {hits}"
