"""ESP-IDF build directories (examples/esp-idf-build) and the chain-of-trust guards.

The vendored build directory holds real ESP-IDF binaries (espflash's ESP32-C61
bootloader, an ESP-IDF hello_world ELF); the reference tools judge the release.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, VECTORS, run_oracle
from sconsutil import TOOL_HEADER, scons, steps

from esp_secure_build.chain_guards import (
    check_app_padding,
    check_partition_table_binary,
    check_release,
    check_secure_version,
    read_sdkconfig,
)
from esp_secure_build.errors import EspSecureError
from esp_secure_build.idf_build import load_idf_build

EXAMPLE = REPO / "examples" / "esp-idf-build"
BUILD = EXAMPLE / "hello_world" / "idf-build"
# elf2image as ESP-IDF runs it for this app (esptool_py/project_include.cmake)
IDF_APP_ARGS = ("--flash-mode", "dio", "--flash-freq", "80m", "--flash-size", "64MB", "--min-rev-full", "100",
                "--max-rev-full", "199", "--elf-sha256-offset", "0xb0", "--flash-mmu-page-size", "64KB")  # fmt: skip


def copy_example(dest: Path) -> Path:
    """examples/esp-idf-build (without outputs or keys) with this checkout's tool beside it."""
    shutil.copytree(EXAMPLE, dest / "examples" / "esp-idf-build",
                    ignore=shutil.ignore_patterns("release", "keys", ".sconsign*"))  # fmt: skip
    shutil.copytree(REPO / "site_scons", dest / "site_scons")
    (dest / "esp_secure_build").symlink_to(REPO / "esp_secure_build")
    return dest / "examples" / "esp-idf-build"


def edit_sdkconfig(project: Path, **changes: object) -> None:
    path = project / "hello_world/idf-build/config/sdkconfig.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config, indent=4, sort_keys=True))


def refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The build stopped with exit 2 and one error line holding ``words``; returns that line."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("scons: ***")]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_example(tmp_path_factory.mktemp("idf"))
    proc = scons(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return project


# --- the vendored build directory -----------------------------------------------------------


def test_vendored_build_is_what_esp_idf_makes(tmp_path: Path) -> None:
    """The app is elf2image --secure-pad-v2 of the ELF, the bootloader 4 KiB-padded, the table gen_esp32part's."""
    ref = tmp_path / "app.bin"
    run_oracle("esptool", "--chip", "esp32c61", "elf2image", *IDF_APP_ARGS, "--secure-pad-v2", "-o", ref, BUILD / "hello_world.elf")
    assert (BUILD / "hello_world.bin").read_bytes() == ref.read_bytes()
    boot = (BUILD / "bootloader/bootloader.bin").read_bytes()
    assert len(boot) % 4096 == 0
    info = run_oracle("esptool", "image-info", BUILD / "bootloader/bootloader.bin").stdout
    assert "Chip ID: 20 (ESP32-C61)" in info and "Checksum: 0x52 (valid)" in info
    table = run_oracle("esptool", "image-info", BUILD / "hello_world.bin").stdout
    assert "Project name: hello_world" in table and "MMU page size: 64 KB" in table


def test_load_idf_build() -> None:
    build = load_idf_build(str(BUILD))
    assert (build.target, build.project_name, build.app_offset, build.partition_table_offset) == ("esp32c61", "hello_world", 0x20000, 0x8000)
    assert (build.secure_boot_version, build.signing_scheme, build.flash_encryption) == (2, "ecdsa256", "release")
    assert (build.flash_mode, build.flash_freq, build.flash_size) == ("dio", "80m", "64MB")
    assert (build.min_rev_full, build.max_rev_full, build.secure_version) == (100, 199, 0)


# --- the release ----------------------------------------------------------------------------


def test_release_passes_the_reference_tools(released: Path, tmp_path: Path) -> None:
    rel, keys = released / "release", released / "keys"
    for image in ("app.bin", "bootloader.bin"):
        out = run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", keys / "secure_boot_ecdsa256.pem", rel / image)
        assert "Signature block 0 verification successful" in out.stdout
    # What was signed is exactly what ESP-IDF built.
    assert (rel / "app.bin").read_bytes()[:-4096] == (BUILD / "hello_world.bin").read_bytes()
    assert (rel / "bootloader.bin").read_bytes()[:-4096] == (BUILD / "bootloader/bootloader.bin").read_bytes()
    info = run_oracle("esptool", "image-info", rel / "app.bin").stdout
    assert "Validation hash" in info and "(valid)" in info
    assert (rel / "partition-table.bin").read_bytes() == (BUILD / "partition_table/partition-table.bin").read_bytes()
    for name, address in (("app.bin", "0x20000"), ("bootloader.bin", "0x0"), ("partition-table.bin", "0x8000")):
        ref = tmp_path / f"{name}.enc"
        run_oracle("espsecure", "encrypt-flash-data", "--aes-xts", "--keyfile", keys / "flash_encryption_key.bin",
                   "--address", address, "--output", ref, rel / name)  # fmt: skip
        assert (rel / "encrypted" / name).read_bytes() == ref.read_bytes(), name
    flash_args = (rel / "flash_args").read_text()
    assert "0x20000 encrypted/app.bin" in flash_args and "0xf000 encrypted/nvs_keys.bin" in flash_args
    merged = tmp_path / "factory.bin"
    run_oracle("esptool", "--chip", "esp32c61", "merge-bin", "-o", merged, f"@{rel / 'flash_args'}", cwd=rel)
    assert (rel / "factory-encrypted.bin").read_bytes() == merged.read_bytes()
    manifest = json.loads((rel / "manifest.json").read_text())
    assert manifest["chip"] == "esp32c61" and manifest["images"]["app.bin"]["app"]["project_name"] == "hello_world"


def test_release_passes_verify_release(released: Path) -> None:
    """esp-secure verify-release decrypts what the chip reads and checks the boot chain and NVS."""
    proc = subprocess.run([sys.executable, "-m", "esp_secure_build", "verify-release", "--flash-key",
                           str(released / "keys/flash_encryption_key.bin"), str(released / "release")],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("release: VERIFIED")
    for line in ("bootloader        ok", "app factory       ok", "nvs nvs           ok"):
        assert line in proc.stdout


def test_second_run_does_nothing(released: Path) -> None:
    assert steps(scons(released)) == []


# --- guards, on the ESP-IDF build (sdkconfig) -----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"SECURE_BOOT": False, "SECURE_BOOT_V2_ENABLED": False}, ("built without Secure Boot", "CONFIG_SECURE_BOOT_V2_ENABLED")),
        ({"SECURE_FLASH_ENC_ENABLED": False}, ("CONFIG_SECURE_FLASH_ENC_ENABLED is off", "ESP_FLASH_ENCRYPTION_KEY")),
        ({"NVS_ENCRYPTION": False}, ("CONFIG_NVS_ENCRYPTION is off",)),
        ({"NVS_SEC_KEY_PROTECT_USING_FLASH_ENC": False, "NVS_SEC_KEY_PROTECT_USING_HMAC": True},
         ("CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC", "ESP_NVS_HMAC_KEY")),
        ({"SECURE_FLASH_ENCRYPTION_AES128": False, "SECURE_FLASH_ENCRYPTION_AES256": True}, ("64-byte",)),
        ({"PARTITION_TABLE_OFFSET": 0x9000}, ("flasher_args.json", "CONFIG_PARTITION_TABLE_OFFSET=0x9000")),
        ({"SECURE_BOOT_BUILD_SIGNED_BINARIES": True}, ("CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES is on",)),
    ],
    ids=["no-secure-boot", "no-flash-encryption", "no-nvs-encryption", "nvs-hmac-scheme", "key-size", "table-offset",
         "signed-by-idf"],
)  # fmt: skip
def test_guard_refuses_sdkconfig(tmp_path: Path, changes: dict, words: tuple[str, ...]) -> None:
    project = copy_example(tmp_path)
    edit_sdkconfig(project, **changes)
    refused(scons(project), *words)
    assert not (project / "release").exists()


def test_guard_release_offset_differs_from_bootloader(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    sconstruct = project / "SConstruct"
    sconstruct.write_text(sconstruct.read_text().replace("\nenv.Default(", "\nenv['ESP_PARTITION_TABLE_OFFSET'] = 0xA000\nenv.Default(", 1))
    refused(scons(project), "ESP_PARTITION_TABLE_OFFSET=0xa000", "CONFIG_PARTITION_TABLE_OFFSET=0x8000")


def test_guard_signed_partition_table(tmp_path: Path) -> None:
    """PlatformIO's partitions-signed.bin: the table padded to 4 KiB and V2-signed, 8 KiB."""
    project = copy_example(tmp_path)
    table = project / "hello_world/idf-build/partition_table/partition-table.bin"
    key = tmp_path / "k.pem"
    run_oracle("espsecure", "generate-signing-key", "--version", "2", "--scheme", "ecdsa256", key)
    signed = tmp_path / "partitions-signed.bin"
    run_oracle("espsecure", "sign-data", "--version", "2", "--keyfile", key, "--output", signed, table)
    shutil.copy(signed, table)
    assert table.stat().st_size == 0x2000
    refused(scons(project), "partition-table.bin", "signed partition table", "0x2000")


def test_guard_unpadded_app(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    app = project / "hello_world/idf-build/hello_world.bin"
    run_oracle("esptool", "--chip", "esp32c61", "elf2image", *IDF_APP_ARGS, "-o", app, BUILD / "hello_world.elf")
    proc = scons(project)
    assert proc.returncode == 2 and "not padded for Secure Boot V2" in proc.stderr and "ESP_SECURE_PAD='v2'" in proc.stderr
    assert not (project / "release/app.bin").exists()


def test_guard_secure_version_below_previous_release(released: Path, tmp_path: Path) -> None:
    previous = tmp_path / "manifest.json"
    manifest = json.loads((released / "release/manifest.json").read_text())
    manifest["images"]["app.bin"]["app"]["secure_version"] = 3
    previous.write_text(json.dumps(manifest))
    project = copy_example(tmp_path / "p")
    proc = scons(project, f"ESP_PREVIOUS_MANIFEST={previous}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "secure version 0 is lower than 3" in proc.stderr and "CONFIG_BOOTLOADER_APP_SECURE_VERSION" in proc.stderr
    # The same release as the previous one is fine.
    assert scons(project, f"ESP_PREVIOUS_MANIFEST={released / 'release/manifest.json'}").returncode == 0


# --- guards, on bare binaries (no sdkconfig) ------------------------------------------------


def bare_release(tmp_path: Path, extra: str) -> subprocess.CompletedProcess:
    folder = tmp_path / "bare"
    folder.mkdir()
    key = folder / "k.pem"
    run_oracle("espsecure", "generate-signing-key", "--version", "2", "--scheme", "ecdsa256", key)
    (folder / "SConstruct").write_text(
        TOOL_HEADER
        + f"env.Replace(ESP_CHIP='esp32c61', ESP_FLASH_SIZE='64MB', ESP_SECURE_BOOT_VERSION=2, ESP_SIGNING_KEYS=['k.pem'])\n{extra}\n"
        f"env.EspRelease('rel', app={str(BUILD / 'hello_world.bin')!r}, bootloader={str(BUILD / 'bootloader/bootloader.bin')!r},\n"
        f"               partitions={str(BUILD / 'partition_table/partition-table.bin')!r})\n"
    )
    return scons(folder)


def test_bare_bootloader_must_be_declared(tmp_path: Path) -> None:
    refused(bare_release(tmp_path, ""), "ESP_BOOTLOADER_VERIFIES_APP is not set", "bootloader.bin")


def test_bare_bootloader_declared_without_secure_boot(tmp_path: Path) -> None:
    refused(bare_release(tmp_path, "env['ESP_BOOTLOADER_VERIFIES_APP'] = False"), "ESP_BOOTLOADER_VERIFIES_APP=False")


def test_bare_bootloader_declared_says_what_it_assumed(tmp_path: Path) -> None:
    proc = bare_release(tmp_path, "env['ESP_BOOTLOADER_VERIFIES_APP'] = True")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING: ASSUMED (ESP_BOOTLOADER_VERIFIES_APP=True)" in proc.stderr
    out = run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", tmp_path / "bare/k.pem", tmp_path / "bare/rel/app.bin")
    assert "verification successful" in out.stdout


def test_binary_table_gives_the_release_the_csv_gives(tmp_path: Path) -> None:
    """EspRelease takes the binary table: same partition table and factory image as from the CSV."""
    images = VECTORS / "esptool/secure_images"
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "partitions.csv").write_text("nvs, data, nvs, 0x9000, 0x6000,\nfactory, app, factory, 0x10000, 0x100000,\n")
    subprocess.run([sys.executable, "-m", "esp_secure_build", "partition-table", "partitions.csv", "partitions.bin"], cwd=folder, check=True)
    for name, table in (("csv", "partitions.csv"), ("bin", "partitions.bin")):
        (folder / "SConstruct").write_text(
            TOOL_HEADER + "env.Replace(ESP_CHIP='esp32')\n"
            f"env.EspRelease('rel-{name}', app={str(images / 'hello-world-signed.bin')!r}, "
            f"bootloader={str(images / 'bootloader.bin')!r}, partitions={table!r})\n"
        )
        assert scons(folder).returncode == 0
    for file in ("partition-table.bin", "factory.bin", "flash_args"):
        assert (folder / "rel-csv" / file).read_bytes() == (folder / "rel-bin" / file).read_bytes(), file


# --- the pure guards ------------------------------------------------------------------------


def test_guards_plain_arguments() -> None:
    """The API the PlatformIO helper calls: plain values, one refusal per line."""
    sdk = {"SECURE_BOOT": True, "SECURE_BOOT_V2_ENABLED": True, "PARTITION_TABLE_OFFSET": 0x8000}
    assert check_release(secure_boot_version=2, flash_encryption=False, partition_table_offset=0x8000, sdkconfig=sdk) == []
    with pytest.raises(EspSecureError, match="CONFIG_SECURE_FLASH_ENC_ENABLED is off"):
        check_release(secure_boot_version=2, flash_encryption=True, partition_table_offset=0x8000, sdkconfig=sdk)
    with pytest.raises(EspSecureError, match="CONFIG_NVS_ENCRYPTION is on"):
        check_release(secure_boot_version=2, flash_encryption=False, partition_table_offset=0x8000,
                      sdkconfig={**sdk, "NVS_ENCRYPTION": True}, nvs_plain=True)  # fmt: skip
    with pytest.raises(EspSecureError, match="CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC"):
        check_release(secure_boot_version=2, flash_encryption=True, partition_table_offset=0x8000, nvs_encrypted=True,
                      nvs_hmac=True, sdkconfig={**sdk, "SECURE_FLASH_ENC_ENABLED": True, "NVS_ENCRYPTION": True,
                                                "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC": True})  # fmt: skip
    with pytest.raises(EspSecureError, match="built with Secure Boot V1"):
        check_release(secure_boot_version=2, flash_encryption=False, partition_table_offset=0x8000,
                      sdkconfig={"SECURE_BOOT": True, "SECURE_BOOT_V1_ENABLED": True})  # fmt: skip
    with pytest.raises(EspSecureError, match="CONFIG_SECURE_BOOTLOADER_REFLASHABLE"):
        check_release(secure_boot_version=1, flash_encryption=False, partition_table_offset=0x8000,
                      sdkconfig={"SECURE_BOOT": True, "SECURE_BOOT_V1_ENABLED": True,
                                 "SECURE_BOOTLOADER_ONE_TIME_FLASH": True})  # fmt: skip
    assert check_release(secure_boot_version=1, flash_encryption=False, partition_table_offset=0x8000,
                         sdkconfig={"SECURE_BOOT": True, "SECURE_BOOT_V1_ENABLED": True,
                                    "SECURE_BOOTLOADER_REFLASHABLE": True}) == []  # fmt: skip
    notes = check_release(secure_boot_version=2, flash_encryption=False, partition_table_offset=0x8000,
                          bootloader_verifies_app=True, bootloader="boot.bin")  # fmt: skip
    assert len(notes) == 1 and "boot.bin" in notes[0]


def test_read_plain_sdkconfig(tmp_path: Path) -> None:
    path = tmp_path / "sdkconfig"
    path.write_text('CONFIG_SECURE_BOOT=y\n# CONFIG_NVS_ENCRYPTION is not set\nCONFIG_PARTITION_TABLE_OFFSET=0x8000\n'
                    'CONFIG_ESPTOOLPY_FLASHSIZE="4MB"\n')  # fmt: skip
    assert read_sdkconfig(path) == {"SECURE_BOOT": True, "NVS_ENCRYPTION": False, "PARTITION_TABLE_OFFSET": 0x8000,
                                    "ESPTOOLPY_FLASHSIZE": "4MB"}  # fmt: skip


def test_partition_table_binary_sizes() -> None:
    table = (BUILD / "partition_table/partition-table.bin").read_bytes()
    check_partition_table_binary(table, 2)
    check_partition_table_binary(table + b"\x00" * 68, 1)  # ESP-IDF signs the table under V1
    with pytest.raises(EspSecureError, match="enlarged partition table"):
        check_partition_table_binary(table + b"\xff" * 0x400, 2, "t.bin")


def test_padding_and_anti_rollback_pure(tmp_path: Path) -> None:
    app = (BUILD / "hello_world.bin").read_bytes()
    check_app_padding(app, "esp32c61", 2)
    check_app_padding(app[:-16], "esp32c61", 0)  # no Secure Boot: nothing to pad for
    unpadded = tmp_path / "unpadded.bin"
    run_oracle("esptool", "--chip", "esp32c61", "elf2image", *IDF_APP_ARGS, "-o", unpadded, BUILD / "hello_world.elf")
    with pytest.raises(EspSecureError, match="not padded"):
        check_app_padding(unpadded.read_bytes(), "esp32c61", 2)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"images": {"app.bin": {"app": {"secure_version": 2}}, "bootloader.bin": {}}}))
    check_secure_version(2, manifest)
    with pytest.raises(EspSecureError, match="lower than 2"):
        check_secure_version(1, manifest)
    manifest.write_text("{}")
    with pytest.raises(EspSecureError, match="not a release manifest"):
        check_secure_version(1, manifest)


def test_three_lines_from_the_readme(tmp_path: Path) -> None:
    """The README's lines, as written, make the release from the build directory."""
    text = (REPO / "README.md").read_text().split("## Using it with an ESP-IDF build", 1)[1]
    lines = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(lines.strip().splitlines()) == 4  # three statements, the Environment call on two lines
    (tmp_path / "keys").mkdir()
    run_oracle("espsecure", "generate-signing-key", "--version", "2", "--scheme", "ecdsa256", tmp_path / "keys/release.pem")
    (tmp_path / "keys/flash_key.bin").write_bytes(bytes(range(32)))
    lines = lines.replace("[{'pkcs11': 'hsm.ini'}]", "['keys/release.pem']").replace("firmware/build", str(BUILD))
    (tmp_path / "SConstruct").write_text(lines)
    run_env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = scons(tmp_path, "release", env=run_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", tmp_path / "keys/release.pem",
                     tmp_path / "build/release/app.bin")  # fmt: skip
    assert "verification successful" in out.stdout
    assert (tmp_path / "build/release/factory-encrypted.bin").exists()


def test_guard_signing_key_of_another_scheme(tmp_path: Path) -> None:
    """The bootloader verifies ECDSA P-256 (sdkconfig): an ECDSA P-384 key would brick the device."""
    project = copy_example(tmp_path)
    key = tmp_path / "p384.pem"
    run_oracle("espsecure", "generate-signing-key", "--version", "2", "--scheme", "ecdsa384", key)
    proc = scons(project, f"ESP_SIGNING_KEYS={key}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "a signing key is ecdsa384 but the bootloader verifies ecdsa256" in proc.stderr
    assert not (project / "release/app.bin").exists() and not (project / "release/bootloader.bin").exists()


def test_other_flasher_images_go_into_their_partition(tmp_path: Path) -> None:
    """An image flashed with the project (here into phy_init) is carried, encrypted where the device encrypts it;
    one in no partition is named, not dropped silently."""
    project = copy_example(tmp_path)
    build = project / "hello_world/idf-build"
    (build / "phy_init.bin").write_bytes(bytes(range(256)) * 16)
    flasher = json.loads((build / "flasher_args.json").read_text())
    flasher["phy_init"] = {"offset": "0x10000", "file": "phy_init.bin", "encrypted": "false"}
    flasher["storage"] = {"offset": "0x120000", "file": "storage.bin", "encrypted": "false"}
    (build / "flasher_args.json").write_text(json.dumps(flasher))
    proc = scons(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "storage" in proc.stderr and "at 0x120000) is in no partition: not part of the release" in proc.stderr
    assert "0x10000 phy_init.bin" in (project / "release/flash_args").read_text()  # phy data is not encrypted
    assert (project / "release/phy_init.bin").read_bytes() == (build / "phy_init.bin").read_bytes()


@pytest.mark.parametrize("version", [1, 2])
def test_padding_guard_agrees_with_esptool_on_esp32(tmp_path: Path, version: int) -> None:
    """ESP32 app-template: elf2image --secure-pad (V1) / --secure-pad-v2 passes, the unpadded image does not."""
    elf = VECTORS / "esptool/elf2image/esp32-app-template.elf"
    padded, plain = tmp_path / "padded.bin", tmp_path / "plain.bin"
    pad = "--secure-pad" if version == 1 else "--secure-pad-v2"
    run_oracle("esptool", "--chip", "esp32", "elf2image", pad, "-o", padded, elf)
    run_oracle("esptool", "--chip", "esp32", "elf2image", "-o", plain, elf)
    check_app_padding(padded.read_bytes(), "esp32", version)
    with pytest.raises(EspSecureError, match=f"not padded for Secure Boot V{version}"):
        check_app_padding(plain.read_bytes(), "esp32", version)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda b: (b / "flasher_args.json").unlink(), ("flasher_args.json", "not found", "run idf.py build first")),
        (lambda b: (b / "project_description.json").write_text("{"), ("project_description.json", "not valid JSON")),
        (lambda b: (b / "bootloader/bootloader.bin").unlink(), ("bootloader.bin", "bootloader binary not found")),
        (lambda b: (b / "config/sdkconfig.json").write_text("[]"), ("sdkconfig.json", "not a JSON object")),
    ],
    ids=["no-flasher-args", "bad-json", "no-bootloader", "sdkconfig-not-object"],
)  # fmt: skip
def test_broken_build_directory_is_one_line(tmp_path: Path, damage, words: tuple[str, ...]) -> None:
    project = copy_example(tmp_path)
    damage(project / "hello_world/idf-build")
    refused(scons(project), *words)


def test_nvs_hmac_keys_against_the_sdkconfig_scheme(tmp_path: Path) -> None:
    """NvsKeys(..., ESP_NVS_HMAC_KEY=...) is HMAC-derived: refused for CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC,
    built for CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC."""
    project = copy_example(tmp_path)
    (project / "hmac_key.bin").write_bytes(bytes(range(32, 64)))
    sconstruct = project / "SConstruct"
    sconstruct.write_text(sconstruct.read_text().replace('env.NvsKeys("keys/nvs_keys.bin")',
                                                         'env.NvsKeys("keys/nvs_keys.bin", ESP_NVS_HMAC_KEY="hmac_key.bin")'))  # fmt: skip
    refused(scons(project), "CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC", "ESP_NVS_HMAC_KEY")
    edit_sdkconfig(project, NVS_SEC_KEY_PROTECT_USING_FLASH_ENC=False, NVS_SEC_KEY_PROTECT_USING_HMAC=True)
    proc = scons(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
