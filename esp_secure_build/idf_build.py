"""Reading an ``idf.py build`` directory: what ESP-IDF built, where it goes, how it was configured.

The files, as ESP-IDF writes them (``tools/cmake/project_description.json.in``,
``components/esptool_py/flasher_args.json.in``, kconfgen's ``config/sdkconfig.json``):

* ``project_description.json``: ``target``, ``project_name``, ``project_version``,
  ``app_bin``/``app_elf`` (names in the build folder), ``bootloader_elf``, ``min_rev``/``max_rev``;
* ``flasher_args.json``: ``flash_settings`` and one entry per image (``app``,
  ``partition-table``, ``bootloader`` unless Secure Boot keeps it out of ``idf.py flash``)
  with its ``offset``;
* ``config/sdkconfig.json``: every visible option without the ``CONFIG_`` prefix (bools as
  true/false, hex and int options as numbers);
* ``bootloader/bootloader.bin``, ``partition_table/partition-table.bin`` and the app binary.

Paths inside the JSON files are those of the machine that built; files are looked up
in the folder given, so a build directory may be moved or vendored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .chain_guards import (
    config_bool,
    config_secure_boot_version,
    config_signing_scheme,
    read_sdkconfig,
)
from .chips import get_chip
from .errors import EspSecureError
from .fileio import read_bytes


@dataclass(frozen=True)
class IdfBuild:
    """One ``idf.py build`` directory, read and cross-checked."""

    build_dir: str
    target: str
    project_name: str
    project_version: str
    app_bin: str
    app_elf: str | None
    bootloader_bin: str
    partition_table_bin: str
    sdkconfig_path: str
    sdkconfig: dict[str, Any] = field(repr=False)
    flash_mode: str
    flash_freq: str
    flash_size: str
    app_offset: int
    partition_table_offset: int
    bootloader_offset: int
    min_rev_full: int
    max_rev_full: int
    # Other images flasher_args.json lists (e.g. a SPIFFS image flashed with the project): name -> (offset, file)
    extra_images: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def secure_boot_version(self) -> int:
        return config_secure_boot_version(self.sdkconfig)

    @property
    def signing_scheme(self) -> str | None:
        """The signature scheme the bootloader verifies: rsa3072, ecdsa192/256/384 (None without Secure Boot)."""
        return config_signing_scheme(self.sdkconfig)

    @property
    def flash_encryption(self) -> str | None:
        """None, "development" or "release"."""
        if not config_bool(self.sdkconfig, "SECURE_FLASH_ENC_ENABLED"):
            return None
        return "release" if config_bool(self.sdkconfig, "SECURE_FLASH_ENCRYPTION_MODE_RELEASE") else "development"

    @property
    def secure_version(self) -> int:
        """The app's anti-rollback secure version (0 without anti-rollback)."""
        if not config_bool(self.sdkconfig, "BOOTLOADER_APP_ANTI_ROLLBACK"):
            return 0
        return int(self.sdkconfig.get("BOOTLOADER_APP_SECURE_VERSION", 0))


def _json(path: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(read_bytes(path, what))
    except ValueError as exc:
        raise EspSecureError(f"{what} is not valid JSON: {exc}", path) from None
    if not isinstance(data, dict):
        raise EspSecureError(f"{what} is not a JSON object", path)
    return data


def _offset(value: Any, what: str, path: str) -> int:
    try:
        return value if isinstance(value, int) else int(str(value), 0)
    except ValueError:
        raise EspSecureError(f"{what} offset {value!r} is not a number", path) from None


def _file(build_dir: str, name: str, what: str) -> str:
    path = os.path.join(build_dir, name)
    if not os.path.isfile(path):
        raise EspSecureError(f"{what} not found (run idf.py build first)", path)
    return path


def _section(doc: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    """``doc[name]`` as an object ({} when absent or null); anything else is a broken file."""
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EspSecureError(f"{name!r} is not a JSON object", path)
    return value


def _rev(value: Any, default: int) -> int:
    try:
        return int(str(value), 0) if str(value).strip() else default
    except ValueError:
        return default


def load_idf_build(build_dir: str) -> IdfBuild:
    """Read and cross-check an ``idf.py build`` directory; one-line errors naming the file."""
    build_dir = os.path.abspath(build_dir)
    if not os.path.isdir(build_dir):
        raise EspSecureError("ESP-IDF build directory not found", build_dir)
    desc_path = _file(build_dir, "project_description.json", "project_description.json")
    desc = _json(desc_path, "project_description.json")
    args_path = _file(build_dir, "flasher_args.json", "flasher_args.json")
    flasher = _json(args_path, "flasher_args.json")
    sdk_path = _file(build_dir, os.path.join("config", "sdkconfig.json"), "config/sdkconfig.json")
    sdkconfig = read_sdkconfig(sdk_path)

    target = str(desc.get("target", ""))
    try:
        chip = get_chip(target)
    except EspSecureError:
        raise EspSecureError(f"target {target!r} is not a chip esp-secure-build knows", desc_path) from None
    flasher_chip = _section(flasher, "extra_esptool_args", args_path).get("chip")
    if flasher_chip and flasher_chip != target:
        raise EspSecureError(f"chip {flasher_chip!r} differs from project_description.json's target {target!r}", args_path)
    if config_bool(sdkconfig, "SECURE_BOOT_BUILD_SIGNED_BINARIES"):
        raise EspSecureError(
            "CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES is on: ESP-IDF signed the binaries itself; turn it off "
            "(ESP-IDF then pads the app and bootloader for an external signer) and let the release sign",
            sdk_path,
        )
    for name in ("app_bin",):
        if not desc.get(name):
            raise EspSecureError(f"has no {name!r} (a bootloader-only or RAM build?)", desc_path)

    settings = _section(flasher, "flash_settings", args_path)
    app_entry = _section(flasher, "app", args_path)
    table_entry = _section(flasher, "partition-table", args_path)
    if "offset" not in app_entry or "offset" not in table_entry:
        raise EspSecureError("has no 'app' or 'partition-table' entry with an offset", args_path)
    table_offset = _offset(table_entry["offset"], "partition-table", args_path)
    configured = sdkconfig.get("PARTITION_TABLE_OFFSET")
    if configured is not None and _offset(configured, "CONFIG_PARTITION_TABLE_OFFSET", sdk_path) != table_offset:
        raise EspSecureError(
            f"puts the partition table at {table_offset:#x} but the bootloader reads it at "
            f"CONFIG_PARTITION_TABLE_OFFSET={_offset(configured, '', sdk_path):#x}: the build directory is "
            "inconsistent; run idf.py build again",
            args_path,
        )
    boot_offset = _offset(sdkconfig.get("BOOTLOADER_OFFSET_IN_FLASH", chip.bootloader_offset), "bootloader", sdk_path)
    if "bootloader" in flasher:
        boot_offset = _offset(_section(flasher, "bootloader", args_path).get("offset"), "bootloader", args_path)
    if boot_offset != chip.bootloader_offset:
        raise EspSecureError(
            f"bootloader offset {boot_offset:#x} is not where the {chip.title} ROM loads it ({chip.bootloader_offset:#x})",
            sdk_path,
        )
    app_elf = desc.get("app_elf")
    known = {"write_flash_args", "flash_settings", "flash_files", "extra_esptool_args", "app", "partition-table",
             "bootloader", "otadata"}  # otadata: the release writes its own erased one
    extra = {name: (_offset(entry.get("offset"), name, args_path), os.path.join(build_dir, str(entry.get("file"))))
             for name, entry in flasher.items() if name not in known and isinstance(entry, dict) and "offset" in entry}  # fmt: skip
    return IdfBuild(
        build_dir=build_dir,
        target=target,
        project_name=str(desc.get("project_name", "")),
        project_version=str(desc.get("project_version", "")),
        app_bin=_file(build_dir, str(app_entry.get("file") or desc["app_bin"]), "app binary"),
        app_elf=os.path.join(build_dir, str(app_elf)) if app_elf else None,
        bootloader_bin=_file(build_dir, os.path.join("bootloader", "bootloader.bin"), "bootloader binary"),
        partition_table_bin=_file(build_dir, str(table_entry.get("file") or "partition_table/partition-table.bin"),
                                  "partition table binary"),
        sdkconfig_path=sdk_path,
        sdkconfig=sdkconfig,
        flash_mode=str(settings.get("flash_mode") or sdkconfig.get("ESPTOOLPY_FLASHMODE", "dio")),
        flash_freq=str(settings.get("flash_freq") or sdkconfig.get("ESPTOOLPY_FLASHFREQ", "")),
        # flasher_args says "keep"/"detect" for RSA Secure Boot or header updates; the images carry the sdkconfig's
        flash_size=str(sdkconfig.get("ESPTOOLPY_FLASHSIZE") or settings.get("flash_size") or "4MB"),
        app_offset=_offset(app_entry["offset"], "app", args_path),
        partition_table_offset=table_offset,
        bootloader_offset=boot_offset,
        min_rev_full=_rev(desc.get("min_rev"), 0),
        max_rev_full=_rev(desc.get("max_rev"), 0xFFFF),
        extra_images=extra,
    )
