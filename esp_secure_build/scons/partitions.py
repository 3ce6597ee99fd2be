"""``PartitionTable`` (CSV -> binary) and the flash addresses later steps take from it.

Construction variables (defaults in brackets):

``ESP_PARTITION_TABLE_OFFSET`` [0x8000]
    Where the table lives in flash.
``ESP_PARTITION_TABLE`` [unset]
    The table node (or binary path) that ``EncryptedImage``, ``EspFactoryImage`` and
    ``EspFlashArgs`` read addresses and sizes from, so no address is typed twice.
``ESP_PARTITION_EXTRA_SUBTYPES`` [[]]
    ``type,name,value`` custom subtypes, as gen_esp32part's ``--extra-partition-subtypes``.
``ESP_PARTITION_COMSTR`` ["PARTITION-TABLE $TARGET"]

The table is checked as gen_esp32part checks it (plus: overlaps, alignment, one
factory app, ``nvs_keys`` encrypted) against ``ESP_FLASH_SIZE``, with app
alignment for ``ESP_SECURE_BOOT_VERSION``. It is encrypted later but never signed.
"""

from __future__ import annotations

import sys
from typing import Any

import SCons.Builder

from ..chips import get_chip
from ..errors import EspSecureError
from ..fileio import read_bytes, read_text, write_atomic
from .common import core_action, env_int, env_str, first_node

TABLE_VARS = ["ESP_CHIP", "ESP_PARTITION_TABLE_OFFSET", "ESP_FLASH_SIZE", "ESP_SECURE_BOOT_VERSION",
              "ESP_PARTITION_EXTRA_SUBTYPES"]  # fmt: skip

# Regions that are not rows of the table.
BOOTLOADER = "bootloader"
TABLE = "partition-table"
SECURE_BOOT_V1_DIGEST = "secure-boot-v1-digest"  # V1 reflashable digest image, flashed at 0x0


def _offset(env: Any) -> int:
    return env_int(env, "ESP_PARTITION_TABLE_OFFSET", 0x8000) or 0x8000


def _extra(env: Any) -> list[str]:
    return [env.subst(str(v)) for v in env.Flatten(env.get("ESP_PARTITION_EXTRA_SUBTYPES") or [])]


def _build_table(target: Any, source: Any, env: Any) -> None:
    from ..partition_table import csv_to_binary, flash_size_bytes

    src = source[0].get_abspath()
    version = env_int(env, "ESP_SECURE_BOOT_VERSION", 0)
    binary, _table, warnings = csv_to_binary(
        read_text(src, "partition table CSV"),
        src,
        secure={1: "v1", 2: "v2"}.get(version or 0),
        flash_size=flash_size_bytes(env_str(env, "ESP_FLASH_SIZE", "4MB")),
        offset=_offset(env),
        extra_subtypes=_extra(env),
    )
    for warning in warnings:
        print(f"esp-secure: warning: {src}: {warning}", file=sys.stderr)
    write_atomic(target[0].get_abspath(), binary)


def table_node(env: Any) -> Any:
    """The partition table binary named by ``ESP_PARTITION_TABLE``."""
    value = env.get("ESP_PARTITION_TABLE")
    if not value:
        raise EspSecureError("ESP_PARTITION_TABLE is not set: give the PartitionTable node the addresses come from")
    return env.File(first_node(value))


def load_table(env: Any) -> Any:
    """Parse the built table binary (at build time: it is a dependency of whoever asks)."""
    from ..partition_table import parse_binary

    node = table_node(env)
    return parse_binary(read_bytes(node.get_abspath(), "partition table"), node.get_abspath(), offset=_offset(env),
                        extra_subtypes=_extra(env))  # fmt: skip


def region(env: Any, table: Any, name: str) -> tuple[int, int, bool]:
    """(flash offset, size, flash-encrypted on the device) of a named region."""
    chip = get_chip(env_str(env, "ESP_CHIP"))
    if name == BOOTLOADER:
        return chip.bootloader_offset, table.offset - chip.bootloader_offset, True
    if name == SECURE_BOOT_V1_DIGEST:
        if not chip.secure_boot_v1:
            raise EspSecureError(f"{chip.title} has no Secure Boot V1 bootloader digest")
        return 0, table.offset, True
    if name == TABLE:
        return table.offset, 0x1000, True
    part = table.find(name)
    return part.offset, part.size, part.flash_encrypted


def generate(env: Any) -> None:
    env.SetDefault(ESP_PARTITION_TABLE_OFFSET=0x8000, ESP_PARTITION_EXTRA_SUBTYPES=[],
                   ESP_PARTITION_COMSTR="PARTITION-TABLE $TARGET")  # fmt: skip
    env["BUILDERS"]["PartitionTable"] = SCons.Builder.Builder(
        action=core_action(_build_table, "ESP_PARTITION_COMSTR", TABLE_VARS),
        suffix=".bin",
        src_suffix=".csv",
        single_source=True,
    )
