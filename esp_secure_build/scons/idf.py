"""``env.EspIdfBuild(build_dir)``: an ``idf.py build`` directory as ``EspRelease``'s inputs.

::

    env = Environment(tools=['esp_secure'], ESP_SIGNING_KEYS=[{'pkcs11': 'hsm.ini'}],
                      ESP_FLASH_ENCRYPTION_KEY='keys/flash_key.bin')
    env.Alias('release', env.EspRelease('build/release', **env.EspIdfBuild('firmware/build')))

Reads the build directory (:mod:`esp_secure_build.idf_build`) when the SConstruct is
read and sets, from what ESP-IDF built:

``ESP_CHIP``, ``ESP_FLASH_MODE``, ``ESP_FLASH_FREQ``, ``ESP_FLASH_SIZE``
    ``project_description.json``'s target, ``flasher_args.json``'s flash settings.
``ESP_PARTITION_TABLE_OFFSET``, ``ESP_PROJECT_NAME``, ``ESP_PROJECT_VERSION``, ``ESP_SECURE_VERSION``
    From the sdkconfig and the project description.
``ESP_SECURE_BOOT_VERSION``
    The Secure Boot version the bootloader was built with, unless already set. Set it
    yourself to require one: a build made without it is then refused by ``EspRelease``.
``ESP_DEV_KEY_SCHEME``
    The scheme the bootloader verifies, for ``EspDevSigningKey``, unless already set.
``ESP_IDF_SDKCONFIG``
    ``config/sdkconfig.json``: ``EspRelease`` checks the chain of trust against it
    (:mod:`esp_secure_build.chain_guards`): Secure Boot and flash encryption in the
    bootloader, NVS encryption and its key scheme, the partition table offset.

Returns ``{'app': ..., 'bootloader': ..., 'partitions': ..., 'app_partition': ...,
'extra_images': ...}``: the unsigned app ESP-IDF padded (``--secure-pad-v2``), the
bootloader it padded to 4 KiB, its binary partition table, the partition at the app's
offset, and the other images ``flasher_args.json`` lists (a file system image flashed
with the project), by the partition at their offset. The build
must be made with ``CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=n``: the release signs.
Signing keys and the flash encryption key are yours to give: the sdkconfig's
``CONFIG_SECURE_BOOT_SIGNING_KEY`` is not used.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import SCons.Errors

from ..errors import EspSecureError


def esp_idf_build(env: Any, build_dir: str) -> dict[str, Any]:
    """Set the construction variables from ``build_dir`` and return ``EspRelease``'s keyword arguments."""
    from ..fileio import read_bytes
    from ..idf_build import load_idf_build
    from ..partition_table import parse_binary

    try:
        build = load_idf_build(env.Dir(build_dir).srcnode().abspath)
        table = parse_binary(read_bytes(build.partition_table_bin, "partition table"), build.partition_table_bin,
                             offset=build.partition_table_offset)  # fmt: skip
    except EspSecureError as exc:
        raise SCons.Errors.UserError(str(exc)) from None
    extra: dict[str, Any] = {}
    for name, (offset, path) in build.extra_images.items():
        part = next((p for p in table if p.offset == offset), None)
        if part is None:
            print(f"esp-secure: WARNING: {build.build_dir}/flasher_args.json: {name} ({path} at {offset:#x}) is in no "
                  "partition: not part of the release", file=sys.stderr)  # fmt: skip
            continue
        if not os.path.isfile(path):
            raise SCons.Errors.UserError(f"{path}: image {name!r} that flasher_args.json lists not found")
        extra[part.name] = env.File(path)
    app_partition = next((p.name for p in table if p.offset == build.app_offset), None)
    if app_partition is None:
        raise SCons.Errors.UserError(f"{build.partition_table_bin}: no partition at the app's offset {build.app_offset:#x}")
    env.Replace(
        ESP_CHIP=build.target,
        ESP_FLASH_MODE=build.flash_mode,
        ESP_FLASH_FREQ=build.flash_freq,
        ESP_FLASH_SIZE=build.flash_size,
        ESP_PARTITION_TABLE_OFFSET=build.partition_table_offset,
        ESP_PROJECT_NAME=build.project_name,
        ESP_PROJECT_VERSION=build.project_version,
        ESP_SECURE_VERSION=build.secure_version,
        ESP_MIN_REV_FULL=build.min_rev_full,
        ESP_MAX_REV_FULL=build.max_rev_full,
        ESP_IDF_SDKCONFIG=build.sdkconfig_path,
    )
    if not env.get("ESP_SECURE_BOOT_VERSION"):
        env["ESP_SECURE_BOOT_VERSION"] = build.secure_boot_version
        if not build.secure_boot_version:
            print(f"esp-secure: WARNING: {build.sdkconfig_path}: built without Secure Boot: the release is not signed",
                  file=sys.stderr)  # fmt: skip
    if build.signing_scheme and not env.get("ESP_DEV_KEY_SCHEME"):
        env["ESP_DEV_KEY_SCHEME"] = build.signing_scheme  # a development key the bootloader can verify
    return {
        "app": env.File(build.app_bin),
        "bootloader": env.File(build.bootloader_bin),
        "partitions": env.File(build.partition_table_bin),
        "app_partition": app_partition,
        "extra_images": extra,
    }


def generate(env: Any) -> None:
    env.AddMethod(esp_idf_build, "EspIdfBuild")
