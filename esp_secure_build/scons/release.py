"""``env.EspRelease(...)``: the whole secure release in one call.

::

    artifacts = env.EspRelease(
        "build/release",
        app=env.EspImage("build/app-unsigned.bin", app_elf, ESP_SECURE_PAD="v2"),
        bootloader=env.EspImage("build/bootloader-unsigned.bin", bootloader_elf),
        partitions="partitions.csv",
        nvs={"nvs": ("nvs.csv", env.NvsKeys("keys/nvs_keys.bin"))},
        certificates=[ca_cert_summary_json],
    )

Addresses and sizes come from the partition CSV, read when the SConstruct is read: the
app goes to the factory partition (else the first OTA slot), NVS partitions are made at
their table size, and an ``otadata`` partition gets an erased ``ota_data_initial.bin``.

In the hardware's order: sign app and bootloader (``$ESP_SECURE_BOOT_VERSION``; V1
digests the bootloader for reflashable mode), write the provisioning values, build the
partition table, make the encrypted NVS, flash-encrypt every region the device encrypts
at the address the table gives (when ``$ESP_FLASH_ENCRYPTION_KEY`` is set), then the
factory image (``.bin``/``.hex``), ``flash_args`` and ``manifest.json``. Returns every
artifact node; each step is an ordinary builder, so rebuilds stay exact.

Layout of ``folder``: ``app.bin``, ``bootloader.bin`` (signed plaintext),
``partition-table.bin``, NVS partitions, ``encrypted/`` (what the factory flashes),
``factory-encrypted.bin``/``.hex`` (or ``factory.bin``/``.hex`` without flash encryption),
``flash_args``, ``flasher_args.json``, ``secure_boot.txt`` and key digests,
``manifest.json``.
"""

from __future__ import annotations

import os
from typing import Any

import SCons.Builder
import SCons.Errors

from ..errors import EspSecureError
from .common import core_action, env_int


def _read_table(env: Any, partitions: str) -> Any:
    """The partition CSV, parsed when the SConstruct is read (it is a source file)."""
    from ..fileio import read_text
    from ..partition_table import parse_csv

    path = env.File(partitions).srcnode().abspath
    try:
        return parse_csv(read_text(path, "partition table CSV"), path,
                         offset=env_int(env, "ESP_PARTITION_TABLE_OFFSET", 0x8000) or 0x8000)  # fmt: skip
    except EspSecureError as exc:
        raise SCons.Errors.UserError(str(exc)) from None


def _first_app(table: Any) -> str:
    from ..partition_table import APP

    apps = [p for p in table if p.type == APP]
    factory = [p for p in apps if p.subtype == 0x00]
    if not apps:
        raise SCons.Errors.UserError("the partition table has no app partition")
    return (factory or apps)[0].name


def _build_erased(target: Any, source: Any, env: Any) -> None:
    from ..fileio import write_atomic

    write_atomic(target[0].get_abspath(), b"\xff" * source[0].read())


def esp_release(
    env: Any,
    folder: str,
    app: Any,
    bootloader: Any,
    partitions: str,
    nvs: dict[str, tuple[str, Any]] | None = None,
    app_partition: str | None = None,
    certificates: list[Any] | None = None,
) -> list[Any]:
    """Build the release in ``folder``; see the module docstring.

    The app goes to ``app_partition`` (default: the factory app, else the first OTA
    slot); each NVS partition is made at its size in the table; an ``otadata``
    partition gets ESP-IDF's erased ``ota_data_initial.bin``.
    """
    from ..partition_table import DATA, SUBTYPE_OTA

    table_csv = _read_table(env, partitions)
    app_partition = app_partition or _first_app(table_csv)
    version = env_int(env, "ESP_SECURE_BOOT_VERSION", 0) or 0
    if version not in (0, 1, 2):
        raise EspSecureError(f"ESP_SECURE_BOOT_VERSION must be 1 or 2 (or unset), not {version}")
    def path(name: str) -> str:
        return os.path.join(folder, name)

    artifacts: list[Any] = []
    # V1 signs only the app; the bootloader is protected by the digest below.
    app_bin = env.SignedImage(path("app.bin"), app) if version else env.InstallAs(path("app.bin"), app)
    sign_boot = version == 2
    boot_bin = env.SignedImage(path("bootloader.bin"), bootloader) if sign_boot else env.InstallAs(path("bootloader.bin"), bootloader)
    artifacts += [app_bin, boot_bin]
    boot_region, boot_flash = "bootloader", boot_bin
    if version == 1:
        # The ROM checks a digest made with a key derived from the signing key; the
        # digest image (flashed at 0x0) carries the bootloader as well.
        digest = env.EspBootloaderDigest(path("bootloader-reflash-digest.bin"), bootloader)
        artifacts.append(digest)
        env["ESP_V1_KEY_FILE"] = digest[1].path
        boot_region, boot_flash = "secure-boot-v1-digest", digest[0]
    if version:
        artifacts.append(env.EspSecureBootKeys(path("secure_boot.txt")))

    table = env.PartitionTable(path("partition-table.bin"), partitions)
    env["ESP_PARTITION_TABLE"] = table
    artifacts.append(table)

    nvs_parts: list[tuple[str, Any, Any]] = []  # (partition, partition node, keys node)
    for name, (csv, keys) in (nvs or {}).items():
        try:
            size = table_csv.find(name).size
        except EspSecureError as exc:
            raise SCons.Errors.UserError(f"{partitions}: {exc}") from None
        if keys is None:
            node = env.NvsPartition(path(f"{name}.bin"), csv, ESP_NVS_SIZE=size)
        else:
            node = env.EncryptedNvs(path(f"{name}.bin"), csv, ESP_NVS_KEYS=keys, ESP_NVS_SIZE=size)
        artifacts.append(node)
        nvs_parts.append((name, node, keys))

    encrypt = bool(env.get("ESP_FLASH_ENCRYPTION_KEY"))

    def flash(region: str, node: Any, base: str) -> Any:
        if not encrypt:
            return node
        return env.EncryptedImage(os.path.join(folder, "encrypted", base), node, partition=region)

    layout = [(boot_region, flash(boot_region, boot_flash, "bootloader.bin")),
              ("partition-table", flash("partition-table", table, "partition-table.bin"))]  # fmt: skip
    for name, node, keys in nvs_parts:
        layout.append((name, node))  # NVS has its own encryption; the device never flash-encrypts it
        if keys is not None and encrypt and "nvs_keys" not in {r for r, _ in layout}:
            layout.append(("nvs_keys", flash("nvs_keys", keys, "nvs_keys.bin")))
    for part in table_csv.find_type(DATA, SUBTYPE_OTA):  # otadata starts erased: boot the first app
        erased = env["BUILDERS"]["_EspErased"](env, path("ota_data_initial.bin"), env.Value(part.size))
        artifacts.append(erased)
        layout.append((part.name, flash(part.name, erased, "ota_data_initial.bin")))
    layout.append((app_partition, flash(app_partition, app_bin, "app.bin")))
    if encrypt:
        artifacts += [node for region, node in layout if region not in {n for n, _, _ in nvs_parts}]

    artifacts.append(env.EspFactoryImage(path("factory-encrypted" if encrypt else "factory"), layout))
    artifacts.append(env.EspFlashArgs(folder, layout))
    artifacts.append(env.EspReleaseManifest(path("manifest.json"), layout, images=[app_bin, boot_bin],
                                            artifacts=list(artifacts), certificates=list(certificates or [])))  # fmt: skip
    return artifacts


def generate(env: Any) -> None:
    env.SetDefault(ESP_ERASED_COMSTR="ESP-ERASED $TARGET")
    env["BUILDERS"]["_EspErased"] = SCons.Builder.Builder(action=core_action(_build_erased, "ESP_ERASED_COMSTR", []))
    env.AddMethod(esp_release, "EspRelease")
