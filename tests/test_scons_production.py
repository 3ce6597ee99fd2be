"""Production mode, development keys, key files made exactly once, one build at a time, reproducible builds."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import VECTORS, run_cli, run_oracle
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sconsutil import TOOL_HEADER, copy_sample, release_dir, scons

from esp_secure_build.devkeys import RECORD_NAME
from esp_secure_build.errors import EspSecureError
from esp_secure_build.fileio import write_new
from esp_secure_build.image import read_image
from esp_secure_build.nvs import NvsKeys
from esp_secure_build.secure_boot.keys import public_key_digest

DEV_SIGNING = "keys/esp32c3_secure_boot_v2_rsa3072.pem"
DEV_FLASH = "keys/esp32c3_flash_encryption_key.bin"
DEV_NVS = "keys/esp32c3_nvs_keys.bin"


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # The sample states ESP_BOOTLOADER_VERIFIES_APP, and every build says it relied on it.
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "WARNING: ASSUMED" not in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.rstrip().splitlines()[-1]


def _manifest(project: Path, chip: str = "esp32c3") -> dict:
    return json.loads((release_dir(project, chip) / "manifest.json").read_text())


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample built once without keys: development keys made and recorded."""
    project = copy_sample(tmp_path_factory.mktemp("prod_dev"))
    _ok(scons(project, "release"))
    return project


@pytest.fixture(scope="module")
def prod_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Keys made outside any build, as a team's production keys (mode 0600, folder 0700)."""
    folder = tmp_path_factory.mktemp("production_keys")
    folder.chmod(0o700)
    signing = rsa.generate_private_key(public_exponent=65537, key_size=3072)  # the ESP32-C3 takes RSA only
    pem = signing.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    keys = {"signing": str(folder / "release.pem"), "flash": str(folder / "flash.bin"), "nvs": str(folder / "nvs_keys.bin")}
    write_new(keys["signing"], pem)
    write_new(keys["flash"], os.urandom(32))
    write_new(keys["nvs"], NvsKeys.generate().partition())
    keys["digest"] = public_key_digest(signing.public_key()).hex()
    return keys


def _prod_args(keys: dict[str, str], **replace: Path) -> list[str]:
    k = {**keys, **replace}
    return [f"ESP_SIGNING_KEYS={k['signing']}", f"ESP_FLASH_ENCRYPTION_KEY={k['flash']}", f"ESP_NVS_KEYS={k['nvs']}"]


# -- development keys: recorded by fingerprint, reported, refused in production mode ----------------
def test_dev_build_records_fingerprints_and_says_so(dev: Path) -> None:
    keys = dev / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    record = json.loads((keys / RECORD_NAME).read_text())
    assert sorted(e["kind"] for e in record["keys"]) == ["flash_encryption", "nvs_keys", "signing"]
    text = (keys / RECORD_NAME).read_text()
    for key in (dev / DEV_SIGNING, dev / DEV_FLASH, dev / DEV_NVS):  # fingerprints only, never key material
        data = key.read_bytes()
        assert data.hex() not in text and base64.b64encode(data[:48]).decode() not in text
    pem_body = "".join((dev / DEV_SIGNING).read_text().splitlines()[1:-1])
    assert pem_body[:40] not in text
    manifest = _manifest(dev)
    assert manifest["development_keys"] is True
    assert manifest["development_key_kinds"] == ["signing", "flash_encryption", "nvs_keys"]
    # A no-op build says so too, as its last line.
    proc = _ok(scons(dev, "release"))
    assert "DEVELOPMENT keys" in _last_line(proc) and DEV_SIGNING in _last_line(proc)


def test_dev_key_passed_explicitly_is_still_a_dev_key(dev: Path, tmp_path: Path) -> None:
    proc = _ok(scons(dev, "release", f"ESP_SIGNING_KEYS={DEV_SIGNING}"))
    assert "DEVELOPMENT keys" in _last_line(proc) and DEV_SIGNING in _last_line(proc)
    # A copy elsewhere, and the same key re-encoded (PKCS#8 DER): recognised by fingerprint.
    key = serialization.load_pem_private_key((dev / DEV_SIGNING).read_bytes(), None)
    der = tmp_path / "renamed.der"
    der.write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    der.chmod(0o600)
    copy = tmp_path / "copy.pem"
    shutil.copy(dev / DEV_SIGNING, copy)
    for other in (der, copy):
        line = _one_line_error(
            scons(dev, "release", f"ESP_SIGNING_KEYS={other}", "ESP_REQUIRE_PRODUCTION_KEYS=1"),
            "ESP_REQUIRE_PRODUCTION_KEYS", str(other), "development key",
        )  # fmt: skip
        assert "(and 2 more)" in line  # the flash and NVS development keys as well


def test_production_mode_refuses_dev_keys_from_command_line_and_environment(dev: Path) -> None:
    before = {p: p.read_bytes() for p in (dev / "build/release").rglob("*") if p.is_file()}
    _one_line_error(scons(dev, "release", "ESP_REQUIRE_PRODUCTION_KEYS=1"), DEV_SIGNING, "development key")
    env = dict(os.environ, ESP_REQUIRE_PRODUCTION_KEYS="1")
    _one_line_error(scons(dev, "release", f"ESP_SIGNING_KEYS={DEV_SIGNING}", env=env), DEV_SIGNING, "development key")
    assert {p: p.read_bytes() for p in (dev / "build/release").rglob("*") if p.is_file()} == before


def test_production_mode_generates_no_key(tmp_path: Path, prod_keys: dict[str, str]) -> None:
    project = copy_sample(tmp_path)
    _one_line_error(scons(project, "release", "ESP_REQUIRE_PRODUCTION_KEYS=1"), "makes no development signing key",
                    "ESP_SIGNING_KEYS")  # fmt: skip
    # Only the NVS keys missing: NvsKeys would make random ones.
    args = _prod_args(prod_keys)[:2]
    _one_line_error(scons(project, "release", "ESP_REQUIRE_PRODUCTION_KEYS=1", *args), DEV_NVS, "would be generated")
    assert not (project / "keys").exists() or not any((project / "keys").iterdir())


def test_production_release(tmp_path: Path, prod_keys: dict[str, str]) -> None:
    project = copy_sample(tmp_path)
    digest = prod_keys["digest"]
    proc = _ok(scons(project, "release", "ESP_REQUIRE_PRODUCTION_KEYS=1", f"ESP_EXPECTED_KEY_DIGESTS={digest}",
                     *_prod_args(prod_keys)))  # fmt: skip
    assert "DEVELOPMENT" not in proc.stdout + proc.stderr
    assert not (project / "keys").exists()  # no key made
    manifest = _manifest(project)
    assert manifest["development_keys"] is False and manifest["development_key_kinds"] == []
    assert manifest["images"]["app.bin"]["secure_boot_v2"][0]["public_key_digest"] == digest
    # ESP_EXPECTED_KEY_DIGESTS from the command line is a real gate.
    _one_line_error(scons(project, "release", f"ESP_EXPECTED_KEY_DIGESTS={'00' * 32}", *_prod_args(prod_keys)),
                    "ESP_EXPECTED_KEY_DIGESTS")  # fmt: skip


@pytest.mark.parametrize("which", ["signing", "flash", "nvs"])
def test_readable_key_file_warns_and_fails_in_production(tmp_path: Path, prod_keys: dict[str, str], which: str) -> None:
    project = copy_sample(tmp_path)
    readable = tmp_path / f"readable-{Path(prod_keys[which]).name}"
    shutil.copy(prod_keys[which], readable)
    readable.chmod(0o644)
    args = _prod_args(prod_keys, **{which: readable})
    _one_line_error(scons(project, "release", "ESP_REQUIRE_PRODUCTION_KEYS=1", *args),
                    str(readable), "readable by group/others", "0644")  # fmt: skip
    proc = _ok(scons(project, "release", *args))
    assert f"warning: {readable}: " in proc.stderr and "readable by group/others" in proc.stderr


@pytest.mark.parametrize(("which", "vector"), [("signing", "published-keys/mcuboot-root-rsa-3072.pem"),
                                               ("flash", "esptool/secure_images/256bit_key.bin")])  # fmt: skip
def test_published_key_refused_in_production(tmp_path: Path, prod_keys: dict[str, str], which: str, vector: str) -> None:
    """Refused when the SConstruct is read (production mode from the environment), naming the file."""
    project = copy_sample(tmp_path)
    published = tmp_path / Path(vector).name
    shutil.copy(VECTORS / vector, published)
    published.chmod(0o600)
    args = _prod_args(prod_keys, **{which: published})
    env = dict(os.environ, ESP_REQUIRE_PRODUCTION_KEYS="1")
    _one_line_error(scons(project, "release", *args, env=env), str(published), "publicly known")


def test_unknown_esp_variable_is_an_error(dev: Path) -> None:
    _one_line_error(scons(dev, "release", "ESP_REQUIRE_PRODUCTION_KEY=1"), "unknown variable ESP_REQUIRE_PRODUCTION_KEY")


def test_cache_dir_build_says_development_keys(tmp_path: Path) -> None:
    project = copy_sample(tmp_path)
    sconstruct = project / "SConstruct"
    sconstruct.write_text(sconstruct.read_text() + "\nCacheDir('cache')\n")
    _ok(scons(project, "release"))
    shutil.rmtree(project / "build")
    proc = _ok(scons(project, "release"))
    assert "Retrieved `build/release/manifest.json' from cache" in proc.stdout
    assert "ESP-SIGN" not in proc.stdout  # nothing was made again
    assert "DEVELOPMENT keys" in _last_line(proc) and DEV_SIGNING in _last_line(proc)
    assert _manifest(project)["development_keys"] is True


# -- key folders and key files --------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_key_folders_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    project = copy_sample(tmp_path)
    _ok(scons(project, "release", umask=umask))
    assert stat.S_IMODE((project / "keys").stat().st_mode) == 0o700
    for key in (project / "keys").iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    # A keys folder NvsKeys creates by itself (SCons would make it 0755 or 0777).
    folder = tmp_path / "nvs_only"
    folder.mkdir()
    (folder / "SConstruct").write_text(TOOL_HEADER + "env.NvsKeys('secrets/nvs_keys.bin')\n")
    _ok(scons(folder, umask=umask))
    assert stat.S_IMODE((folder / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "secrets/nvs_keys.bin").stat().st_mode) == 0o600


def test_write_new_never_replaces(tmp_path: Path) -> None:
    key = tmp_path / "k.bin"
    write_new(key, b"first")
    with pytest.raises(EspSecureError, match="already exists"):
        write_new(key, b"second")
    assert key.read_bytes() == b"first" and stat.S_IMODE(key.stat().st_mode) == 0o600
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(EspSecureError, match="already exists"):
        write_new(tmp_path / "dangling", b"x")
    assert not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "k.bin"]  # no temporary file left


def test_generate_flash_encryption_key_refuses_existing_file(tmp_path: Path) -> None:
    victim = tmp_path / "signing.pem"
    victim.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")
    proc = run_cli("generate-flash-encryption-key", victim)
    assert proc.returncode == 2 and "already exists" in proc.stderr and str(victim) in proc.stderr
    assert victim.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\nnot really")
    new = tmp_path / "new.bin"
    assert run_cli("generate-flash-encryption-key", new).returncode == 0 and len(new.read_bytes()) == 32


# -- one build at a time ------------------------------------------------------------------------
def test_concurrent_builds_make_one_key_set(tmp_path: Path) -> None:
    """Two `scons release` at once in a project without keys: they take turns; one key set."""
    project = copy_sample(tmp_path)
    env = dict(os.environ, SOURCE_DATE_EPOCH="1764115200")
    lock = os.open(project / ".sconsign.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)  # both builds start while a third holds the lock: they race for it after
    logs = [(open(tmp_path / f"out{i}", "w+"), open(tmp_path / f"err{i}", "w+")) for i in range(2)]  # noqa: SIM115
    procs = [subprocess.Popen([sys.executable, "-m", "SCons", "-Q", "release"], cwd=project, env=env,
                              stdout=out, stderr=err) for out, err in logs]  # fmt: skip
    deadline = time.monotonic() + 60
    while not all("waiting for it to finish" in (tmp_path / f"err{i}").read_text() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "builds did not wait for the lock"
        time.sleep(0.05)
    assert not (project / "keys").exists()  # nothing happened before the lock
    os.close(lock)
    for proc in procs:
        proc.wait(timeout=300)
    outputs = [(out.seek(0) or out.read(), err.seek(0) or err.read()) for out, err in logs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    created = [o for o, _ in outputs if "DEVELOPMENT signing key created" in o]
    assert len(created) == 1, outputs
    keys = sorted(p.name for p in (project / "keys").iterdir())
    assert keys == sorted([RECORD_NAME, *(Path(k).name for k in (DEV_SIGNING, DEV_FLASH, DEV_NVS))])
    assert len(json.loads((project / "keys" / RECORD_NAME).read_text())["keys"]) == 3
    # The release is made with that key set: signatures verify, the ciphertext decrypts.
    rel = project / "build/release"
    for image in ("app.bin", "bootloader.bin"):
        run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", project / DEV_SIGNING, rel / image)
    plain = tmp_path / "app.plain"
    run_oracle("espsecure", "decrypt-flash-data", "--aes-xts", "--keyfile", project / DEV_FLASH, "--address", "0x10000",
               "--output", plain, rel / "encrypted/app.bin")  # fmt: skip
    assert plain.read_bytes() == (rel / "app.bin").read_bytes()
    ref = tmp_path / "nvs.bin"
    run_oracle("esp_idf_nvs_partition_gen", "encrypt", "nvs.csv", ref, "0x6000", "--inputkey", project / DEV_NVS, cwd=project)
    assert (rel / "nvs.bin").read_bytes() == ref.read_bytes()


# -- reproducible by default --------------------------------------------------------------------
ECDSA = ["ESP_CHIP=esp32c6", "ESP_DEV_KEY_SCHEME=ecdsa256"]  # deterministic signatures (RFC 6979)


def _release_files(project: Path) -> dict[str, bytes]:
    rel = release_dir(project, "esp32c6")
    return {str(p.relative_to(rel)): p.read_bytes() for p in sorted(rel.rglob("*")) if p.is_file()}


def test_reproducible_without_source_date_epoch(tmp_path: Path) -> None:
    """Two builds in two folders at different times, no SOURCE_DATE_EPOCH, ECDSA: every artifact identical."""
    first = copy_sample(tmp_path / "a")
    _ok(scons(first, "release", *ECDSA, source_date_epoch=None))
    second = copy_sample(tmp_path / "b")
    shutil.copytree(first / "keys", second / "keys")
    time.sleep(1.1)  # the clock has moved on; the artifacts must not
    _ok(scons(second, "release", *ECDSA, source_date_epoch=None))
    one, two = _release_files(first), _release_files(second)
    assert len(one) > 15 and list(one) == list(two)
    assert [name for name in one if one[name] != two[name]] == []
    manifest = _manifest(first, "esp32c6")
    assert (manifest["source_date_epoch"], manifest["build_time_source"]) == (315532800, "fixed")
    assert "build_time_commit" not in manifest
    desc = read_image(one["app.bin"]).app_desc
    assert desc is not None and (desc.date, desc.time) == ("Jan  1 1980", "00:00:00")


def test_build_time_from_the_last_git_commit(tmp_path: Path) -> None:
    project = copy_sample(tmp_path)
    when = "1767225600"  # 2026-01-01 00:00:00 UTC
    git_env = dict(os.environ, GIT_AUTHOR_DATE=f"@{when} +0000", GIT_COMMITTER_DATE=f"@{when} +0000",
                   GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")  # fmt: skip
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, env=git_env, check=True, capture_output=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    proc = _ok(scons(project, "release", source_date_epoch=None))
    assert f"build time: 2026-01-01 00:00:00 UTC (the last git commit {commit[:12]})" in proc.stdout
    manifest = _manifest(project)
    assert (manifest["source_date_epoch"], manifest["build_time_source"], manifest["build_time_commit"]) == (
        int(when), "git", commit)  # fmt: skip
    desc = read_image((project / "build/release/app.bin").read_bytes()).app_desc
    assert desc is not None and (desc.date, desc.time) == ("Jan  1 2026", "00:00:00")
    # SOURCE_DATE_EPOCH still wins, and the summary says where the time came from.
    proc = _ok(scons(project, "release"))
    assert "build time: 2025-11-26 00:00:00 UTC (SOURCE_DATE_EPOCH)" in proc.stdout
