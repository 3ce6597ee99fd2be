"""PlatformIO: ``pio run -t esp-release`` builds examples/platformio offline.

PlatformIO Core (PyPI ``platformio``, the ``test`` extra) runs without its registry:
a local ``tool-scons`` package in a temporary core folder, and the stand-in for
platform-espressif32 in tests/platformio/platform (Debian's RISC-V compiler). The
release is checked with the reference tools.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli, run_oracle

try:
    import platformio  # noqa: F401  (only whether it is there)
    import SCons
except ImportError as exc:
    pytest.skip(f"PlatformIO Core is not installed ({exc}); pip install 'platformio==6.2.0' (the test extra)",
                allow_module_level=True)  # fmt: skip
if shutil.which("riscv64-unknown-elf-gcc") is None:
    pytest.skip("riscv64-unknown-elf-gcc not found (apt-get install gcc-riscv64-unknown-elf)", allow_module_level=True)

ENV = "esp32c3"
# Core 6.2.0 asks for tool-scons ~4.41101.0; .piopm's spec.owner must be "platformio" or Core does not find it.
TOOL_SCONS_VERSION = "4.41101.0"
SCONS_LAUNCHER = """import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import SCons.Script
SCons.Script.main()
"""


def make_core_dir(core: Path) -> None:
    """A PlatformIO core folder whose tool-scons is the SCons this Python has."""
    pkg = core / "packages" / "tool-scons"
    pkg.mkdir(parents=True)
    shutil.copytree(Path(SCons.__file__).parent, pkg / "SCons", ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "scons.py").write_text(SCONS_LAUNCHER)
    (pkg / "package.json").write_text(json.dumps({"name": "tool-scons", "version": TOOL_SCONS_VERSION}))
    spec = {"owner": "platformio", "id": None, "name": "tool-scons", "requirements": None, "uri": None}
    (pkg / ".piopm").write_text(json.dumps({"type": "tool", "name": "tool-scons", "version": TOOL_SCONS_VERSION,
                                            "spec": spec}))  # fmt: skip


class Pio:
    """The example copied beside the test platform (the layout its platformio.ini expects)."""

    def __init__(self, root: Path) -> None:
        self.core = root / "core"
        make_core_dir(self.core)
        self.project = root / "examples" / "platformio"
        shutil.copytree(REPO / "examples" / "platformio", self.project)
        shutil.copytree(REPO / "tests" / "platformio" / "platform", root / "tests" / "platformio" / "platform")
        for part in ("src", "ld", "bootloader"):  # the platform's start code, linker scripts and bootloader
            shutil.copytree(REPO / "sample_project" / part, root / "sample_project" / part)
        self.release = self.project / ".pio" / "build" / ENV / "release"

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, PLATFORMIO_CORE_DIR=str(self.core), PLATFORMIO_SETTING_ENABLE_TELEMETRY="no",
                   PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL="3650",
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra_env)  # fmt: skip
        cmd = [sys.executable, "-m", "platformio", "run", "-d", str(self.project), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)

    def add_env(self, name: str, *options: str) -> None:
        with open(self.project / "platformio.ini", "a") as f:
            f.write(f"\n[env:{name}]\nextends = env:{ENV}\n" + "".join(f"{o}\n" for o in options))


# Extra environments, written before the first build: PlatformIO wipes .pio/build when platformio.ini changes.
FLASH_CHECK = ("custom_esp_flash_command = \"$PYTHONEXE\" -c \"import os, sys; print('FLASH', os.getcwd(), "
               "sys.argv[1:])\" write_flash @flash_args")  # fmt: skip
EXTRA_ENVS = {
    "flashcheck": [FLASH_CHECK],
    "unstated": ["custom_esp_bootloader_verifies_app ="],
    "noverify": ["custom_esp_bootloader_verifies_app = no"],
    # As the espidf framework leaves it: an sdkconfig whose bootloader has no Secure Boot.
    "idfnosb": ["extra_scripts = pre:sdkconfig_no_secure_boot.py", "    post:esp_secure.py"],
    "strayimage": ["extra_scripts = post:stray_image.py", "    post:esp_secure.py"],
    "relink": [],
    "asprescript": ["extra_scripts = pre:esp_secure.py"],
    "otherkey": ["custom_esp_expected_key_digests = " + "ab" * 32],
    # Anti-rollback against the main environment's release (secure version 1).
    "rollback": ["custom_esp_secure_version = 0", "custom_esp_previous_manifest = .pio/build/esp32c3/release/manifest.json"],
    # Classic ESP32: bootloader at 0x1000, AES-256 flash encryption with tweak, no Secure Boot.
    "esp32": ["board = esp32dev", "custom_esp_secure_boot = 0",
              "custom_esp_flash_encryption_key = keys/esp32_flash_encryption_key.bin"],
    # Secure Boot V1 (reflashable digest at 0x0) with a bootloader image of 144 bytes: 16 bytes into a
    # 128-byte block, so the digest image keeps half of its appended SHA-256, as espsecure's does.
    "esp32v1": ["board = esp32dev", "custom_esp_secure_boot = 1", "custom_esp_signing_keys = keys/esp32_v1_key.pem",
                "custom_esp_flash_encryption_key = keys/esp32_flash_encryption_key.bin"],
}
SCRIPTS = {
    "sdkconfig_no_secure_boot.py": """import json, os
env = DefaultEnvironment()
os.makedirs(env.subst("$BUILD_DIR/config"), exist_ok=True)
with open(env.subst("$BUILD_DIR/config/sdkconfig.json"), "w") as f:
    json.dump({"IDF_TARGET": "esp32c3", "SECURE_BOOT": False, "PARTITION_TABLE_OFFSET": 32768}, f)
""",
    "stray_image.py": 'DefaultEnvironment().Append(FLASH_EXTRA_IMAGES=[("0x3000", "$PROJECT_DIR/stray.bin")])\n',
}


@pytest.fixture(scope="module")
def pio(tmp_path_factory):  # type: ignore[no-untyped-def]
    pio = Pio(tmp_path_factory.mktemp("pio"))
    for name, options in EXTRA_ENVS.items():
        pio.add_env(name, *options)
    for name, text in SCRIPTS.items():
        (pio.project / name).write_text(text)
    first = pio.run("-e", ENV, "-t", "esp-release")
    assert first.returncode == 0, first.stdout + first.stderr
    pio.first = first
    return pio


def test_release_layout(pio) -> None:  # type: ignore[no-untyped-def]
    """The app partition is the one at ESP32_APP_OFFSET; boot_app0.bin from FLASH_EXTRA_IMAGES fills otadata."""
    assert (pio.release / "flash_args").read_text().splitlines() == [
        "--flash_mode keep --flash_freq keep --flash_size keep",
        "0x0 encrypted/bootloader.bin",
        "0x8000 encrypted/partition-table.bin",
        "0x9000 nvs.bin",
        "0xd000 encrypted/nvs_keys.bin",
        "0xe000 encrypted/otadata.bin",
        "0x10000 encrypted/app.bin",
    ]
    boot_app0 = pio.project.parents[1] / "tests" / "platformio" / "platform" / "tools" / "partitions" / "boot_app0.bin"
    assert (pio.release / "otadata.bin").read_bytes() == boot_app0.read_bytes()
    # The development keys were made where platformio.ini names them, and said so.
    assert "DEVELOPMENT signing key created" in pio.first.stdout
    assert (pio.project / "keys" / "flash_encryption_key.bin").stat().st_size == 32
    assert "ASSUMED (ESP_BOOTLOADER_VERIFIES_APP=True)" in pio.first.stderr


def test_signatures_verify_with_espsecure(pio) -> None:  # type: ignore[no-untyped-def]
    key = pio.project / "keys" / "secure_boot_signing_key.pem"
    for image in ("app.bin", "bootloader.bin"):
        proc = run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", key, pio.release / image)
        assert "verification successful" in proc.stdout.lower(), proc.stdout


def test_app_image_from_the_elf_with_descriptor(pio) -> None:  # type: ignore[no-untyped-def]
    """esptool reads the app: board flash settings (qio board: DIO header, 80m, 4MB) and our descriptor."""
    info = run_oracle("esptool", "--chip", "esp32c3", "image-info", pio.release / "app.bin").stdout
    assert "Flash mode: DIO" in info and "Flash freq: 80m" in info and "Flash size: 4MB" in info
    assert "Project name: thermostat" in info and "App version: 1.0.0" in info
    assert re.search(r"Secure version: 1\b", info), info
    assert "Validation hash" in info and "(valid)" in info


@pytest.mark.parametrize(("name", "address", "plain"), [
    ("app.bin", 0x10000, "app.bin"),
    ("bootloader.bin", 0x0, "bootloader.bin"),
    ("otadata.bin", 0xE000, "otadata.bin"),
])  # fmt: skip
def test_encrypted_images_decrypt_with_espsecure(pio, tmp_path, name, address, plain) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "plain.bin"
    run_oracle("espsecure", "decrypt-flash-data", "--aes-xts", "--keyfile", pio.project / "keys" / "flash_encryption_key.bin",
               "--address", hex(address), "-o", out, pio.release / "encrypted" / name)  # fmt: skip
    assert out.read_bytes() == (pio.release / plain).read_bytes()


def test_second_run_does_nothing(pio) -> None:  # type: ignore[no-untyped-def]
    before = {p: p.stat().st_mtime_ns for p in pio.release.rglob("*")}
    proc = pio.run("-e", ENV, "-t", "esp-release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^esp-secure: release \S+ verified", proc.stdout, re.M), proc.stdout  # every build verifies
    assert not re.search(r"^(ESP-|Compiling|Linking)", proc.stdout, re.M), proc.stdout
    assert {p: p.stat().st_mtime_ns for p in pio.release.rglob("*")} == before


def test_descriptor_change_relinks_only_the_app(pio) -> None:  # type: ignore[no-untyped-def]
    """The descriptor object, linked in from a post script, is a real dependency of the ELF."""
    build = pio.project / ".pio" / "build" / "relink"

    def build_at(epoch: str) -> str:
        proc = pio.run("-e", "relink", "-t", "esp-release", SOURCE_DATE_EPOCH=epoch)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    build_at("1700000000")
    first = run_oracle("esptool", "--chip", "esp32c3", "image-info", build / "release" / "app.bin").stdout
    again = build_at("1800000000")
    assert "ESP-APPDESC" in again and "Linking .pio/build/relink/firmware.elf" in again
    assert not re.search(r"^(Compiling|Linking|Building) .*(src/main\.o|bootloader)", again, re.M), again
    assert "ESP-SIGN .pio/build/relink/release/bootloader.bin" not in again
    second = run_oracle("esptool", "--chip", "esp32c3", "image-info", build / "release" / "app.bin").stdout
    assert "Compile time: Nov 14 2023" in first and "Compile time: Jan 15 2027" in second


def test_esp32_bootloader_at_0x1000(pio, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Classic ESP32 (Xtensa): FLASH_EXTRA_IMAGES puts the bootloader at 0x1000; AES-256 with tweak."""
    proc = pio.run("-e", "esp32", "-t", "esp-release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    release = pio.project / ".pio" / "build" / "esp32" / "release"
    lines = (release / "flash_args").read_text().splitlines()
    assert lines[1:3] == ["0x1000 encrypted/bootloader.bin", "0x8000 encrypted/partition-table.bin"]
    assert "0x10000 encrypted/app.bin" in lines
    info = run_oracle("esptool", "--chip", "esp32", "image-info", release / "app.bin").stdout
    assert "Flash freq: 40m" in info and "Project name: thermostat" in info
    for name, address in (("bootloader.bin", 0x1000), ("app.bin", 0x10000)):
        out = tmp_path / name
        run_oracle("espsecure", "decrypt-flash-data", "--keyfile", pio.project / "keys" / "esp32_flash_encryption_key.bin",
                   "--address", hex(address), "-o", out, release / "encrypted" / name)  # fmt: skip
        assert out.read_bytes()[: (release / name).stat().st_size] == (release / name).read_bytes()


def test_esp32_secure_boot_v1_digest(pio, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Secure Boot V1: the reflashable digest at 0x0 is espsecure's, and verify-release passes it.

    The bootloader image ends 16 bytes into a 128-byte block: the digest image keeps half of
    the appended SHA-256 (the V1 ROM reads whole blocks and ignores that hash).
    """
    proc = pio.run("-e", "esp32v1", "-t", "esp-release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = pio.project / ".pio" / "build" / "esp32v1"
    release = build / "release"
    assert (build / "bootloader.bin").stat().st_size % 128 == 16
    v1_key = pio.project / "keys" / "esp32v1" / "release-secure-bootloader-key-256.bin"
    digest = (release / "bootloader-reflash-digest.bin").read_bytes()
    (tmp_path / "iv.bin").write_bytes(digest[:128])
    ref = tmp_path / "digest.bin"
    run_oracle("espsecure", "digest-secure-bootloader", "--keyfile", v1_key, "--iv", tmp_path / "iv.bin",
               "-o", ref, build / "bootloader.bin")  # fmt: skip
    assert ref.read_bytes() == digest
    run_oracle("espsecure", "verify-signature", "--version", "1", "--keyfile", pio.project / "keys" / "esp32_v1_key.pem",
               release / "app.bin")  # fmt: skip
    check = run_cli("verify-release", "--flash-key", pio.project / "keys" / "esp32_flash_encryption_key.bin",
                    "--v1-key", v1_key, release)  # fmt: skip
    assert check.returncode == 0 and "Secure Boot V1 digest at 0x0 matches" in check.stdout, check.stdout + check.stderr


def test_list_targets(pio) -> None:  # type: ignore[no-untyped-def]
    proc = pio.run("-e", ENV, "--list-targets")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split()[2]: line for line in proc.stdout.splitlines() if line.startswith(ENV)}
    assert {"esp-release", "esp-flash-release", "upload"} <= set(rows)
    assert "Custom" in rows["esp-release"] and "Platform" in rows["upload"]


def test_flash_release_runs_write_flash_in_the_release(pio) -> None:  # type: ignore[no-untyped-def]
    proc = pio.run("-e", "flashcheck", "-t", "esp-flash-release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    release = pio.project / ".pio" / "build" / "flashcheck" / "release"
    assert f"FLASH {release} ['write_flash', '@flash_args']" in proc.stdout
    assert (release / "flash_args").is_file()


@pytest.mark.parametrize(("name", "needle", "absent"), [
    ("unstated", "custom_esp_bootloader_verifies_app is not set", "release"),
    ("noverify", "custom_esp_bootloader_verifies_app = no", "release"),
    ("idfnosb", "built without Secure Boot (CONFIG_SECURE_BOOT off)", "release"),  # the sdkconfig wins over the option
    ("strayimage", "FLASH_EXTRA_IMAGES: ", "release"),
    ("asprescript", "from a post: extra script", "release"),
    # Refused when the build gets there: the signed image is not written.
    ("otherkey", "which is not an expected key", "release/bootloader.bin"),
    ("rollback", "secure version 0", "release/app.bin"),
])  # fmt: skip
def test_refused_configurations(pio, name, needle, absent) -> None:  # type: ignore[no-untyped-def]
    """Configurations that cannot give a working device: one line naming the problem, nothing written."""
    proc = pio.run("-e", name, "-t", "esp-release")
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if needle in line]
    assert len(errors) == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (pio.project / ".pio" / "build" / name / absent).exists()


def test_verify_release(pio) -> None:  # type: ignore[no-untyped-def]
    """esp-secure verify-release reads the release as the chip would, with the expected key digest."""
    key = pio.project / "keys" / "secure_boot_signing_key.pem"
    digest = run_oracle("espsecure", "digest-sbv2-public-key", "--keyfile", key, "-o", pio.release.parent / "digest.bin")
    assert digest.returncode == 0
    proc = run_cli("verify-release", "--flash-key", pio.project / "keys" / "flash_encryption_key.bin",
                   "--expect-digest", (pio.release.parent / "digest.bin").read_bytes().hex(), pio.release)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{pio.release}: VERIFIED" in proc.stdout, proc.stdout
    assert re.search(r"^otadata otadata +ok +selects app0 \(sequence 1\)", proc.stdout, re.M), proc.stdout


def test_boot_app0_selects_ota_0() -> None:
    """boot_app0.bin: otadata entry 0 with ota_seq 1 (ota_0) and ESP-IDF's CRC, everything else erased."""
    import struct
    import zlib

    data = (REPO / "tests" / "platformio" / "platform" / "tools" / "partitions" / "boot_app0.bin").read_bytes()
    seq, crc = struct.unpack_from("<I", data, 0)[0], struct.unpack_from("<I", data, 28)[0]
    assert len(data) == 0x2000 and seq == 1
    assert crc == zlib.crc32(struct.pack("<I", seq), 0xFFFFFFFF) == 0x4743989A
    assert data[4:28] == b"\xff" * 24 and data[32:] == b"\xff" * (0x2000 - 32)


def test_signing_key_in_a_pkcs11_token(tmp_path, softhsm) -> None:  # type: ignore[no-untyped-def]
    """custom_esp_signing_keys = pkcs11:hsm.ini: the app and bootloader are signed in the token."""
    pio = Pio(tmp_path)
    pio.add_env("hsm", f"custom_esp_signing_keys = pkcs11:{softhsm['sb-rsa']}")
    proc = pio.run("-e", "hsm", "-t", "esp-release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DEVELOPMENT signing key" not in proc.stdout
    release = pio.project / ".pio" / "build" / "hsm" / "release"
    for image in ("app.bin", "bootloader.bin"):
        check = run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile",
                           release / "secure_boot_key0.pub.pem", release / image)  # fmt: skip
        assert "verification successful" in check.stdout.lower(), check.stdout


def test_readme_shows_the_example_extra_script() -> None:
    """The two lines README.md tells a user to write are the ones the tests build with."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Using it with PlatformIO") :]
    block = section[section.index("```python\n") + len("```python\n") :]
    assert block[: block.index("```")] == (REPO / "examples" / "platformio" / "esp_secure.py").read_text()
