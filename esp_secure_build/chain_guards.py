"""Guards: refuse a chain of trust that cannot work on the device.

Each check raises :class:`EspSecureError` with one line naming the setting and the
fix. They take plain values (a chip name, integers, booleans, an sdkconfig as a
mapping of ``sdkconfig.json`` keys without the ``CONFIG_`` prefix), so any build
front end can call them: the SCons layer (``EspRelease``, ``EspIdfBuild``), the
PlatformIO helper, a script.

``sdkconfig`` is the configuration the *bootloader and app were built with*
(ESP-IDF builds both from one sdkconfig). ``None`` means "not known" (a bare
binary): the checks that need it then rely on what the user states.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .chips import get_chip
from .errors import EspSecureError
from .fileio import PathLike, read_bytes, read_text

TABLE_BINARY_LENGTH = 0xC00  # what gen_esp32part writes; the bootloader reads no more
V1_SIGNATURE_LENGTH = 68  # Secure Boot V1 signs the table too: 0xC00 + 68 bytes


def read_sdkconfig(path: PathLike) -> dict[str, Any]:
    """``config/sdkconfig.json`` (keys without ``CONFIG_``) or a plain ``sdkconfig`` file."""
    text = read_text(path, "sdkconfig")
    if str(path).endswith(".json") or text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise EspSecureError(f"sdkconfig.json is not valid JSON: {exc}", path) from None
        if not isinstance(data, dict):
            raise EspSecureError("sdkconfig.json is not a JSON object", path)
        return data
    config: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"# CONFIG_(\w+) is not set", line):
            config[m.group(1)] = False
        elif m := re.fullmatch(r"CONFIG_(\w+)=(.*)", line):
            value = m.group(2)
            if value in ("y", "n"):
                config[m.group(1)] = value == "y"
            elif value.startswith('"'):
                config[m.group(1)] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            else:
                try:
                    config[m.group(1)] = int(value, 0)
                except ValueError:
                    config[m.group(1)] = value
    return config


def config_bool(config: Mapping[str, Any], name: str) -> bool:
    """An sdkconfig option as a bool; options whose dependencies are unmet are absent (off)."""
    value = config.get(name, False)
    if isinstance(value, str):
        return value.lower() in ("y", "true", "1")
    return bool(value)


def config_secure_boot_version(config: Mapping[str, Any]) -> int:
    """0, 1 or 2: the Secure Boot the bootloader was built with."""
    if not config_bool(config, "SECURE_BOOT"):
        return 0
    if config_bool(config, "SECURE_BOOT_V2_ENABLED"):
        return 2
    return 1 if config_bool(config, "SECURE_BOOT_V1_ENABLED") else 0


def config_signing_scheme(config: Mapping[str, Any]) -> str | None:
    """The signature scheme the bootloader verifies: rsa3072, ecdsa192/256/384 (None without signed apps)."""
    if config_bool(config, "SECURE_SIGNED_APPS_RSA_SCHEME"):
        return "rsa3072"
    if config_bool(config, "SECURE_SIGNED_APPS_ECDSA_V2_SCHEME"):
        for bits in (192, 256, 384):
            if config_bool(config, f"SECURE_BOOT_ECDSA_KEY_LEN_{bits}_BITS"):
                return f"ecdsa{bits}"
        return "ecdsa256"
    return "ecdsa256" if config_bool(config, "SECURE_SIGNED_APPS_ECDSA_SCHEME") else None


def check_signing_schemes(schemes: list[str], sdkconfig: Mapping[str, Any] | None) -> None:
    """Every signing key must be of the scheme the bootloader was built to verify."""
    expected = config_signing_scheme(sdkconfig) if sdkconfig is not None else None
    for scheme in schemes:
        if expected and scheme != expected:
            raise EspSecureError(
                f"a signing key is {scheme} but the bootloader verifies {expected} signatures only "
                "(CONFIG_SECURE_SIGNED_APPS_*_SCHEME, CONFIG_SECURE_BOOT_ECDSA_KEY_LEN_*): the app would never boot; "
                f"sign with {expected} keys or rebuild the bootloader for {scheme}"
            )


def check_bootloader_secure_boot(
    secure_boot_version: int,
    sdkconfig: Mapping[str, Any] | None,
    bootloader_verifies_app: bool | None,
    bootloader: str = "the bootloader",
) -> str | None:
    """The bootloader must check the app's signature, or signing it protects nothing.

    With ``sdkconfig`` its Secure Boot settings decide; without, the user's
    ``bootloader_verifies_app`` (``ESP_BOOTLOADER_VERIFIES_APP``) must say so. Returns the
    loud note to print when the build relies on the user's word, else None.
    """
    if not secure_boot_version:
        return None
    if sdkconfig is not None:
        built = config_secure_boot_version(sdkconfig)
        if built != secure_boot_version:
            option = "CONFIG_SECURE_BOOT_V2_ENABLED" if secure_boot_version == 2 else "CONFIG_SECURE_BOOT_V1_ENABLED"
            state = f"built with Secure Boot V{built}" if built else "built without Secure Boot (CONFIG_SECURE_BOOT off)"
            raise EspSecureError(
                f"{bootloader} was {state}: the ROM would boot it and it would never check the app's signature; "
                f"enable {option} in menuconfig (Security features) and rebuild the bootloader"
            )
        if built == 1 and config_bool(sdkconfig, "SECURE_BOOTLOADER_ONE_TIME_FLASH"):
            raise EspSecureError(
                "CONFIG_SECURE_BOOTLOADER_ONE_TIME_FLASH: the bootloader makes its own key and digest on the device, "
                "but the release flashes a precomputed (reflashable) bootloader digest; select "
                "CONFIG_SECURE_BOOTLOADER_REFLASHABLE"
            )
        return None
    if bootloader_verifies_app is None:
        raise EspSecureError(
            f"ESP_BOOTLOADER_VERIFIES_APP is not set: nothing says whether {bootloader} was built with "
            f"Secure Boot V{secure_boot_version} (a bootloader without it never checks the app); give the build's "
            "sdkconfig (EspIdfBuild) or set ESP_BOOTLOADER_VERIFIES_APP=True once you know it was"
        )
    if not bootloader_verifies_app:
        raise EspSecureError(
            f"ESP_BOOTLOADER_VERIFIES_APP=False: {bootloader} never checks the app's signature, so Secure Boot "
            f"V{secure_boot_version} protects nothing; use a bootloader built with Secure Boot V{secure_boot_version}"
        )
    return (
        f"ASSUMED (ESP_BOOTLOADER_VERIFIES_APP=True): {bootloader} was built with Secure Boot V{secure_boot_version} "
        "and checks the app's signature; nothing in the binary proves it"
    )


def check_flash_encryption(release_encrypts: bool, sdkconfig: Mapping[str, Any] | None, key_bytes: int | None = None) -> None:
    """A pre-encrypted release needs a bootloader that enables flash encryption, with the key size it expects."""
    if sdkconfig is None or not release_encrypts:
        return
    if not config_bool(sdkconfig, "SECURE_FLASH_ENC_ENABLED"):
        raise EspSecureError(
            "ESP_FLASH_ENCRYPTION_KEY is set but the bootloader's CONFIG_SECURE_FLASH_ENC_ENABLED is off: the "
            "device would run the ciphertext as plaintext and never boot; enable flash encryption (Release mode) "
            "in menuconfig, or unset ESP_FLASH_ENCRYPTION_KEY"
        )
    if key_bytes is not None and key_bytes == 32 and config_bool(sdkconfig, "SECURE_FLASH_ENCRYPTION_AES256"):
        raise EspSecureError(
            "CONFIG_SECURE_FLASH_ENCRYPTION_AES256 wants a 64-byte XTS-AES-256 key but ESP_FLASH_ENCRYPTION_KEY "
            "holds 32 bytes; give a 64-byte key or select AES-128 in menuconfig"
        )
    if key_bytes == 64 and config_bool(sdkconfig, "SECURE_FLASH_ENCRYPTION_AES128"):
        raise EspSecureError(
            "CONFIG_SECURE_FLASH_ENCRYPTION_AES128 wants a 32-byte key but ESP_FLASH_ENCRYPTION_KEY holds 64 bytes "
            "(XTS-AES-256); give a 32-byte key or select AES-256 in menuconfig"
        )


def check_nvs(nvs_encrypted: bool, nvs_plain: bool, nvs_hmac: bool, sdkconfig: Mapping[str, Any] | None) -> None:
    """Encrypted NVS in the release must match ``CONFIG_NVS_ENCRYPTION`` and its key protection scheme.

    ``nvs_encrypted``: the release has encrypted NVS partitions; ``nvs_plain``: it has plain
    ones; ``nvs_hmac``: their keys come from an eFuse HMAC key (``ESP_NVS_HMAC_KEY``), not from
    a flash-encrypted ``nvs_keys`` partition.
    """
    if sdkconfig is None:
        return
    enabled = config_bool(sdkconfig, "NVS_ENCRYPTION")
    if nvs_encrypted and not enabled:
        raise EspSecureError(
            "the release encrypts NVS but the app's CONFIG_NVS_ENCRYPTION is off: it cannot read its NVS; "
            "enable NVS encryption in menuconfig, or give the NVS partition without keys"
        )
    if nvs_plain and enabled:
        raise EspSecureError(
            "the release has a plain NVS partition but the app's CONFIG_NVS_ENCRYPTION is on: it cannot read it; "
            "give the partition its keys (EspRelease nvs={name: (csv, keys)}) or disable NVS encryption"
        )
    if not nvs_encrypted:
        return
    app_hmac = config_bool(sdkconfig, "NVS_SEC_KEY_PROTECT_USING_HMAC")
    if app_hmac and not nvs_hmac:
        raise EspSecureError(
            "CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC: the app derives its NVS keys from an eFuse HMAC key, but the "
            "release made flash-encryption-protected keys (an nvs_keys partition); make the keys with "
            "ESP_NVS_HMAC_KEY, or select CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC"
        )
    if nvs_hmac and config_bool(sdkconfig, "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC"):
        raise EspSecureError(
            "CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC: the app reads its NVS keys from the nvs_keys partition, "
            "but the release derived them from ESP_NVS_HMAC_KEY; select CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC, or "
            "make the keys without ESP_NVS_HMAC_KEY"
        )


def check_partition_table_offset(release_offset: int, sdkconfig: Mapping[str, Any] | None) -> None:
    """The bootloader reads the table at ``CONFIG_PARTITION_TABLE_OFFSET``; the release must put it there."""
    configured = sdkconfig.get("PARTITION_TABLE_OFFSET") if sdkconfig is not None else None
    if isinstance(configured, str):
        try:
            configured = int(configured, 0)
        except ValueError:
            raise EspSecureError(f"CONFIG_PARTITION_TABLE_OFFSET={configured!r} is not a number") from None
    if configured is not None and configured != release_offset:
        raise EspSecureError(
            f"ESP_PARTITION_TABLE_OFFSET={release_offset:#x} but the bootloader reads the partition table at "
            f"CONFIG_PARTITION_TABLE_OFFSET={configured:#x}; use {configured:#x} (or rebuild with the new offset)"
        )


def check_partition_table_binary(data: bytes, secure_boot_version: int, path: PathLike | None = None) -> None:
    """A table binary must be what gen_esp32part writes: 0xC00 bytes, unsigned under Secure Boot V2."""
    if len(data) <= TABLE_BINARY_LENGTH:
        return
    if secure_boot_version == 1 and len(data) == TABLE_BINARY_LENGTH + V1_SIGNATURE_LENGTH:
        return  # ESP-IDF signs the table under Secure Boot V1
    signed = len(data) >= 0x2000 and data[0x1000] == 0xE7
    what = "a signed partition table (a Secure Boot V2 signature sector)" if signed else "an enlarged partition table"
    raise EspSecureError(
        f"is {len(data):#x} bytes, {what}: the bootloader reads {TABLE_BINARY_LENGTH:#x} bytes, never checks a "
        "signature on it, and the extra bytes overwrite the next partition; use the unsigned partition-table.bin "
        "ESP-IDF's gen_esp32part writes (or the CSV)",
        path,
    )


def _mmu_pages(chip_name: str, desc_page_log2: int) -> tuple[int, ...]:
    chip = get_chip(chip_name)
    if desc_page_log2:
        return (1 << desc_page_log2,)
    return chip.mmu_page_sizes if chip.configurable_mmu else (chip.default_mmu_page_size,)


def check_app_padding(data: bytes, chip: str, secure_boot_version: int, path: PathLike | None = None) -> None:
    """An app signed for Secure Boot must be padded so its signature starts a fresh MMU page.

    ESP-IDF always pads (``elf2image --secure-pad-v2``, ``--secure-pad`` for V1): the
    bootloader maps the app's last page, and without padding the signature lands in it.
    """
    from .image import read_image

    if not secure_boot_version:
        return
    info = read_image(data, str(path) if path is not None else None)
    page_log2 = info.app_desc.mmu_page_size_log2 if info.app_desc is not None else 0
    tail = 80 if secure_boot_version == 1 else 0  # V1: digest 32 + signature 68 + 12 end on the page
    if any((len(data) + tail) % page == 0 for page in _mmu_pages(chip, page_log2)):
        return
    option = "--secure-pad" if secure_boot_version == 1 else "--secure-pad-v2"
    raise EspSecureError(
        f"app image is not padded for Secure Boot V{secure_boot_version} ({len(data):#x} bytes): its signature "
        f"would share the app's last MMU page; make it with ESP_SECURE_PAD='v{secure_boot_version}' "
        f"(elf2image {option}, as ESP-IDF does)",
        path,
    )


def previous_secure_version(manifest_path: PathLike) -> int:
    """The highest app secure version (anti-rollback) a previous release's ``manifest.json`` records."""
    try:
        manifest = json.loads(read_bytes(manifest_path, "previous release manifest"))
        versions = [int(entry["app"]["secure_version"]) for entry in manifest["images"].values() if "app" in entry]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise EspSecureError("is not a release manifest (no images with an app secure_version)", manifest_path) from None
    if not versions:
        raise EspSecureError("records no app image (no secure_version to compare with)", manifest_path)
    return max(versions)


def check_secure_version(app_secure_version: int, previous_manifest: PathLike | None) -> None:
    """The app's secure version must not go below the previous release's (anti-rollback)."""
    if previous_manifest is None:
        return
    previous = previous_secure_version(previous_manifest)
    if app_secure_version < previous:
        raise EspSecureError(
            f"the app's secure version {app_secure_version} is lower than {previous} in the previous release "
            f"({previous_manifest}): devices that installed it refuse this app (anti-rollback); raise "
            f"CONFIG_BOOTLOADER_APP_SECURE_VERSION / ESP_SECURE_VERSION to at least {previous}"
        )


def check_app_image(data: bytes, chip: str, secure_boot_version: int, previous_manifest: PathLike | None = None,
                    path: PathLike | None = None, require_padding: bool = True) -> None:  # fmt: skip
    """The checks on an unsigned app image: Secure Boot padding and anti-rollback."""
    from .image import read_image

    if require_padding:
        check_app_padding(data, chip, secure_boot_version, path)
    if previous_manifest is not None:
        info = read_image(data, str(path) if path is not None else None)
        if info.app_desc is None:
            raise EspSecureError("app image has no app descriptor: no secure version to compare", path)
        check_secure_version(info.app_desc.secure_version, previous_manifest)


def check_release(
    *,
    secure_boot_version: int,
    flash_encryption: bool,
    partition_table_offset: int,
    sdkconfig: Mapping[str, Any] | None = None,
    bootloader_verifies_app: bool | None = None,
    bootloader: str = "the bootloader",
    flash_encryption_key_bytes: int | None = None,
    nvs_encrypted: bool = False,
    nvs_plain: bool = False,
    nvs_hmac: bool = False,
) -> list[str]:
    """Every configuration guard at once; returns the notes to print loudly (assumptions made)."""
    notes = []
    note = check_bootloader_secure_boot(secure_boot_version, sdkconfig, bootloader_verifies_app, bootloader)
    if note:
        notes.append(note)
    check_flash_encryption(flash_encryption, sdkconfig, flash_encryption_key_bytes)
    check_nvs(nvs_encrypted, nvs_plain, nvs_hmac, sdkconfig)
    check_partition_table_offset(partition_table_offset, sdkconfig)
    return notes
