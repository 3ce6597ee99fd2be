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

from ..errors import EspSecureError
from .common import env_int


def esp_release(
    env: Any,
    folder: str,
    app: Any,
    bootloader: Any,
    partitions: str,
    nvs: dict[str, tuple[str, Any]] | None = None,
    app_partition: str = "factory",
    certificates: list[Any] | None = None,
) -> list[Any]:
    """Build the release in ``folder``; see the module docstring."""
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
        if keys is None:
            node = env.NvsPartition(path(f"{name}.bin"), csv)
        else:
            node = env.EncryptedNvs(path(f"{name}.bin"), csv, ESP_NVS_KEYS=keys)
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
    layout.append((app_partition, flash(app_partition, app_bin, "app.bin")))
    if encrypt:
        artifacts += [node for region, node in layout if region not in {n for n, _, _ in nvs_parts}]

    artifacts.append(env.EspFactoryImage(path("factory-encrypted" if encrypt else "factory"), layout))
    artifacts.append(env.EspFlashArgs(folder, layout))
    artifacts.append(env.EspReleaseManifest(path("manifest.json"), layout, images=[app_bin, boot_bin],
                                            artifacts=list(artifacts), certificates=list(certificates or [])))  # fmt: skip
    return artifacts


def generate(env: Any) -> None:
    env.AddMethod(esp_release, "EspRelease")
