"""The factory image (``.bin`` and Intel ``.hex``) and ESP-IDF's flash argument files.

``env.EspFactoryImage('build/release/factory', layout)`` and
``env.EspFlashArgs('build/release', layout)`` take the same ``layout``: a list
of ``(region name, node)`` pairs, where a region is a partition name of
``$ESP_PARTITION_TABLE`` or ``'bootloader'``, ``'partition-table'``,
``'secure-boot-v1-digest'``. Addresses come from the table; each file must fit
its region. The header flash settings are kept as built (``keep``): a signed or
encrypted bootloader must not be patched.

``EspFlashArgs`` writes ``flash_args`` (for ``esptool write-flash @flash_args``)
and ``flasher_args.json``, paths relative to the folder it writes them in.
The files are pre-encrypted where the layout says so, so nothing asks esptool
to encrypt again.

Construction variables: ``ESP_FACTORY_COMSTR`` ["ESP-FACTORY $TARGET"],
``ESP_FLASHARGS_COMSTR`` ["ESP-FLASHARGS $TARGET"]; ``ESP_FACTORY_PAD_TO_SIZE``
[unset] pads the raw image with 0xFF up to that size (e.g. ``4MB``).
"""

from __future__ import annotations

import os
from typing import Any

import SCons.Builder

from ..chips import get_chip
from ..errors import EspSecureError
from ..fileio import read_bytes, write_atomic, write_text_atomic
from .common import core_action, env_str, first_node
from .partitions import load_table, region, table_node

FACTORY_VARS = ["ESP_CHIP", "ESP_FACTORY_PAD_TO_SIZE", "ESP_PARTITION_TABLE_OFFSET"]


def _regions(env: Any, source: Any) -> list[tuple[str, int, Any]]:
    """(name, offset, node) for each layout entry, each checked against its region's size."""
    names = source[0].read()
    table = load_table(env)
    result = []
    for name, node in zip(names, source[2:], strict=True):
        offset, size, _ = region(env, table, name)
        length = os.path.getsize(node.get_abspath())
        if length > size:
            raise EspSecureError(f"is {length:#x} bytes, larger than {name!r} ({size:#x} bytes at {offset:#x})",
                                 node.get_abspath())  # fmt: skip
        result.append((name, offset, node))
    return result


def _build_factory(target: Any, source: Any, env: Any) -> None:
    from ..factory import Region, merge_bin

    chip = get_chip(env_str(env, "ESP_CHIP"))
    regions = [Region(offset, read_bytes(node.get_abspath()), node.get_abspath()) for _, offset, node in _regions(env, source)]
    pad = env_str(env, "ESP_FACTORY_PAD_TO_SIZE") or None
    write_atomic(target[0].get_abspath(), merge_bin(chip, regions, "raw", pad_to_size=pad))
    write_atomic(target[1].get_abspath(), merge_bin(chip, regions, "hex"))


def _build_flash_args(target: Any, source: Any, env: Any) -> None:
    from ..factory import FlashEntry, flash_args_text, flasher_args_json

    chip = get_chip(env_str(env, "ESP_CHIP"))
    table = load_table(env)
    entries = sorted(
        (FlashEntry(name, region(env, table, name)[0], path) for name, path in source[0].read()),
        key=lambda e: e.offset,
    )
    # Pre-encrypted and signed files: esptool must write them exactly as they are.
    write_text_atomic(target[0].get_abspath(), flash_args_text(entries, "keep", "keep", "keep"))
    write_text_atomic(target[1].get_abspath(), flasher_args_json(entries, chip, "keep", "keep", "keep", after="no_reset"))


def _layout_sources(env: Any, layout: list[tuple[str, Any]]) -> list[Any]:
    names = [name for name, _ in layout]
    if len(set(names)) != len(names):
        raise EspSecureError(f"a region appears twice in the layout: {names}")
    nodes = [env.File(first_node(node)) for _, node in layout]
    return [env.Value(names), table_node(env), *nodes]


def _factory_image(env: Any, target: str, layout: list[tuple[str, Any]]) -> Any:
    base = os.path.splitext(target)[0]
    return env["BUILDERS"]["_EspFactoryImage"](env, [base + ".bin", base + ".hex"], _layout_sources(env, layout))


def _flash_args(env: Any, folder: str, layout: list[tuple[str, Any]]) -> Any:
    # Names and paths only: new file contents (another key, a new app) change no argument.
    targets = [os.path.join(folder, "flash_args"), os.path.join(folder, "flasher_args.json")]
    base = env.Dir(folder).abspath
    entries = [(name, os.path.relpath(node.abspath, base)) for name, node in zip(
        [n for n, _ in layout], _layout_sources(env, layout)[2:], strict=True)]  # fmt: skip
    return env["BUILDERS"]["_EspFlashArgs"](env, targets, [env.Value(entries), table_node(env)])


def generate(env: Any) -> None:
    env.SetDefault(ESP_FACTORY_COMSTR="ESP-FACTORY $TARGET", ESP_FLASHARGS_COMSTR="ESP-FLASHARGS $TARGET")
    env["BUILDERS"]["_EspFactoryImage"] = SCons.Builder.Builder(
        action=core_action(_build_factory, "ESP_FACTORY_COMSTR", FACTORY_VARS))
    env["BUILDERS"]["_EspFlashArgs"] = SCons.Builder.Builder(
        action=core_action(_build_flash_args, "ESP_FLASHARGS_COMSTR", FACTORY_VARS))
    env.AddMethod(_factory_image, "EspFactoryImage")
    env.AddMethod(_flash_args, "EspFlashArgs")
