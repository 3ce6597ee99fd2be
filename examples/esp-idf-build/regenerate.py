#!/usr/bin/env python3
"""Regenerate hello_world/idf-build/ from its sources (see README.md for the provenance).

    python regenerate.py [ESPFLASH_GIT_REPOSITORY]

Files are read with ``git show`` at the pinned commit from the repository given (a clone,
bare or not), or from one commit fetched from GitHub when none is given. Needs
riscv64-unknown-elf-objcopy (Debian's gcc-riscv64-unknown-elf) and esp-secure-build
importable. Writes only hello_world/idf-build/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ESPFLASH = "https://github.com/esp-rs/espflash"
ESPFLASH_COMMIT = "ab24ed3f4a0f4f3a64a8ad457835ba8b61758e89"
BOOTLOADER = "espflash/resources/bootloaders/esp32c61-bootloader.bin"  # ESP-IDF release/v6.1
APP_ELF = "espflash/tests/data/esp32c61"  # ESP-IDF hello_world, built by espflash's maintainers

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "hello_world"
BUILD = PROJECT / "idf-build"  # idf.py names it build/; any name works
BUILT_AT = "/home/builder/esp/hello_world"  # where the JSON files say the build ran
IDF_VER = "v5.5.1-838-gd66ebb86d2-dirty"  # the app descriptor's idf_ver
FLASH = {"flash_mode": "dio", "flash_size": "64MB", "flash_freq": "80m"}  # as espflash built the bootloader

# The options esp-secure-build reads, as kconfgen writes them into config/sdkconfig.json
# (no CONFIG_ prefix, bools true/false, hex/int as numbers): hello_world configured for
# Secure Boot V2 (ECDSA P-256) with binaries signed outside the build, flash encryption in
# release mode and NVS encryption with flash-encryption-protected keys.
SDKCONFIG = {
    "IDF_TARGET": "esp32c61", "IDF_TARGET_ESP32C61": True, "IDF_FIRMWARE_CHIP_ID": 20,
    "ESP_REV_MIN_FULL": 100, "ESP_REV_MAX_FULL": 199,
    "APP_BUILD_TYPE_APP_2NDBOOT": True, "APP_BUILD_GENERATE_BINARIES": True, "APP_BUILD_BOOTLOADER": True,
    "BOOTLOADER_OFFSET_IN_FLASH": 0x0, "BOOTLOADER_APP_ANTI_ROLLBACK": False,
    "SECURE_SIGNED_ON_BOOT": True, "SECURE_SIGNED_ON_UPDATE": True, "SECURE_SIGNED_APPS": True,
    "SECURE_BOOT_V2_ECC_SUPPORTED": True, "SECURE_BOOT_V2_PREFERRED": True, "SECURE_BOOT_V2_ECDSA_ENABLED": True,
    "SECURE_SIGNED_APPS_NO_SECURE_BOOT": False, "SECURE_SIGNED_APPS_ECDSA_V2_SCHEME": True,
    "SECURE_BOOT_ECDSA_KEY_LEN_256_BITS": True, "SECURE_BOOT_ECDSA_KEY_LEN_384_BITS": False,
    "SECURE_BOOT": True, "SECURE_BOOT_V2_ENABLED": True, "SECURE_BOOT_BUILD_SIGNED_BINARIES": False,
    "SECURE_BOOT_ENABLE_AGGRESSIVE_KEY_REVOKE": False, "SECURE_BOOT_FLASH_BOOTLOADER_DEFAULT": False,
    "SECURE_FLASH_ENC_ENABLED": True, "SECURE_FLASH_ENCRYPTION_AES128": True,
    "SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT": False, "SECURE_FLASH_ENCRYPTION_MODE_RELEASE": True,
    "SECURE_FLASH_CHECK_ENC_EN_IN_APP": True,
    "ESPTOOLPY_FLASHMODE_DIO": True, "ESPTOOLPY_FLASHMODE": "dio",
    "ESPTOOLPY_FLASHFREQ_80M": True, "ESPTOOLPY_FLASHFREQ": "80m",
    "ESPTOOLPY_FLASHSIZE_64MB": True, "ESPTOOLPY_FLASHSIZE": "64MB",
    "ESPTOOLPY_BEFORE": "default-reset", "ESPTOOLPY_AFTER": "hard-reset", "ESPTOOLPY_MONITOR_BAUD": 115200,
    "PARTITION_TABLE_CUSTOM": True, "PARTITION_TABLE_CUSTOM_FILENAME": "partitions.csv",
    "PARTITION_TABLE_FILENAME": "partitions.csv", "PARTITION_TABLE_OFFSET": 0x8000, "PARTITION_TABLE_MD5": True,
    "MMU_PAGE_SIZE_64KB": True, "MMU_PAGE_MODE": "64KB", "MMU_PAGE_SIZE": 0x10000,
    "NVS_ENCRYPTION": True, "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC": True,
}  # fmt: skip


def run(*args: object) -> None:
    subprocess.run([str(a) for a in args], check=True)


def espflash_repository(argv: list[str], tmp: Path) -> Path:
    if argv:
        return Path(argv[0])
    repo = tmp / "espflash"
    run("git", "init", "-q", "--bare", repo)
    run("git", "-C", repo, "fetch", "-q", "--depth", "1", ESPFLASH, ESPFLASH_COMMIT)
    return repo


def espflash_file(repo: Path, path: str, dest: Path) -> bytes:
    data = subprocess.run(["git", "-C", str(repo), "show", f"{ESPFLASH_COMMIT}:{path}"], check=True,
                          capture_output=True).stdout  # fmt: skip
    dest.write_bytes(data)
    return data


def project_description() -> dict:
    """tools/cmake/project_description.json.in, filled as `idf.py build` fills it (component lists left empty)."""
    build = f"{BUILT_AT}/build"
    return {
        "version": "1.3", "project_name": "hello_world", "project_version": IDF_VER, "project_path": BUILT_AT,
        "idf_path": "/home/builder/esp/esp-idf", "build_dir": build, "config_file": f"{BUILT_AT}/sdkconfig",
        "config_defaults": "", "bootloader_elf": f"{build}/bootloader/bootloader.elf", "app_elf": "hello_world.elf",
        "app_bin": "hello_world.bin", "build_type": "flash_app", "git_revision": IDF_VER, "target": "esp32c61",
        "rev": "", "min_rev": "100", "max_rev": "199", "phy_data_partition": "", "monitor_baud": "115200",
        "monitor_toolprefix": "riscv32-esp-elf-", "c_compiler": "/home/builder/.espressif/tools/riscv32-esp-elf/bin/riscv32-esp-elf-gcc",
        "config_environment": {"COMPONENT_KCONFIGS": "", "COMPONENT_KCONFIGS_PROJBUILD": ""},
        "common_component_reqs": [], "build_components": [], "build_component_paths": [],
        "build_component_info": {}, "all_component_info": {},
        "gdbinit_files": {"01_symbols": "", "02_prefix_map": "", "03_py_extensions": "", "04_connect": ""},
        "debug_arguments_openocd": "", "hints_file": "",
    }  # fmt: skip


def flasher_args(app_offset: int) -> str:
    """components/esptool_py/flasher_args.json.in: Secure Boot keeps the bootloader out of `idf.py flash`,
    and release-mode flash encryption flashes nothing encrypted."""
    app = f'"app" : {{ "offset" : "{app_offset:#x}", "file" : "hello_world.bin", "encrypted" : "false" }}'
    table = '"partition-table" : { "offset" : "0x8000", "file" : "partition_table/partition-table.bin", "encrypted" : "false" }'
    return f"""{{
    "write_flash_args" : [ "--flash-mode", "{FLASH['flash_mode']}",
                           "--flash-size", "{FLASH['flash_size']}",
                           "--flash-freq", "{FLASH['flash_freq']}" ],
    "flash_settings" : {{
        "flash_mode": "{FLASH['flash_mode']}",
        "flash_size": "{FLASH['flash_size']}",
        "flash_freq": "{FLASH['flash_freq']}"
    }},
    "flash_files" : {{
        "0x8000" : "partition_table/partition-table.bin",
        "{app_offset:#x}" : "hello_world.bin"
    }},
    {table},
    {app},
    "extra_esptool_args" : {{
        "after"  : "hard-reset",
        "before" : "default-reset",
        "stub"   : true,
        "chip"   : "esp32c61"
    }}
}}
"""


def main(argv: list[str]) -> None:
    esp_secure = [sys.executable, "-m", "esp_secure_build"]
    with tempfile.TemporaryDirectory() as tmp:
        espflash = espflash_repository(argv, Path(tmp))
        shutil.rmtree(BUILD, ignore_errors=True)
        (BUILD / "bootloader").mkdir(parents=True)
        (BUILD / "partition_table").mkdir()
        (BUILD / "config").mkdir()
        # ESP-IDF with Secure Boot V2 and CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=n: elf2image
        # --pad-to-size 4KB, i.e. 0xFF up to the next 4 KiB for the external signer.
        boot = espflash_file(espflash, BOOTLOADER, Path(tmp) / "bootloader.bin")
        (BUILD / "bootloader" / "bootloader.bin").write_bytes(boot + b"\xff" * (-len(boot) % 4096))
        # Debug sections dropped to keep the example small (2.8 MB -> 0.25 MB); the image
        # sections are untouched.
        espflash_file(espflash, APP_ELF, Path(tmp) / "hello_world.elf")
        run("riscv64-unknown-elf-objcopy", "--strip-debug", Path(tmp) / "hello_world.elf", BUILD / "hello_world.elf")
        # elf2image as ESP-IDF runs it for the app (esptool_py/project_include.cmake).
        run(*esp_secure, "--chip", "esp32c61", "elf2image", "--flash-mode", FLASH["flash_mode"],
            "--flash-freq", FLASH["flash_freq"], "--flash-size", FLASH["flash_size"], "--min-rev-full", "100",
            "--max-rev-full", "199", "--elf-sha256-offset", "0xb0", "--flash-mmu-page-size", "64KB",
            "--secure-pad-v2", "-o", BUILD / "hello_world.bin", BUILD / "hello_world.elf")  # fmt: skip
        table = BUILD / "partition_table" / "partition-table.bin"
        run(*esp_secure, "partition-table", "--offset", "0x8000", "--flash-size", FLASH["flash_size"],
            "--secure", "v2", PROJECT / "partitions.csv", table)  # fmt: skip
    (BUILD / "project_description.json").write_text(json.dumps(project_description(), indent=4) + "\n")
    (BUILD / "flasher_args.json").write_text(flasher_args(0x20000))
    (BUILD / "config" / "sdkconfig.json").write_text(json.dumps(SDKCONFIG, indent=4, sort_keys=True) + "\n")
    print(f"wrote {os.path.relpath(BUILD)}")


if __name__ == "__main__":
    main(sys.argv[1:])
