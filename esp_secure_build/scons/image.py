"""Builders for images and descriptors: ``EspImage``, ``EspAppDesc``, ``EspBootloaderDesc``.

Construction variables (defaults in brackets):

``ESP_CHIP`` [esp32c3]
    Target chip, as esptool's ``--chip``.
``ESP_FLASH_MODE`` [dio], ``ESP_FLASH_SIZE`` [4MB], ``ESP_FLASH_FREQ`` [unset: header code 0]
    Flash settings written into the image header (esptool's -fm/-fs/-ff).
``ESP_MIN_REV_FULL`` [0], ``ESP_MAX_REV_FULL`` [65535]
    Chip revision range, major*100+minor.
``ESP_SECURE_PAD`` [unset]
    ``v1`` or ``v2``: pad apps so the Secure Boot signature lands on an MMU page boundary.
``ESP_ELF_SHA256_OFFSET`` [unset: automatic]
    Image offset of the ELF SHA-256; apps with ``.flash.appdesc`` get 0xB0 as in ESP-IDF.
``ESP_MMU_PAGE_SIZE`` [unset: from the chip and the app descriptor]
``ESP_APPEND_DIGEST`` [True], ``ESP_USE_SEGMENTS`` [False], ``ESP_RAM_ONLY_HEADER`` [False],
``ESP_PAD_TO_SIZE`` [unset]
    The remaining elf2image options.
``ESP_PROJECT_NAME`` [app], ``ESP_PROJECT_VERSION`` [1.0.0], ``ESP_SECURE_VERSION`` [0],
``ESP_IDF_VER`` [esp-secure-build <version>], ``ESP_BOOTLOADER_VERSION`` [1]
    Descriptor fields. The build date and time are reproducible (:func:`build_time`):
    ``SOURCE_DATE_EPOCH`` (construction or environment variable) when set, else the last
    git commit's time when the project is a git checkout, else 1980-01-01 00:00:00 UTC.
``ESP_IMAGE_COMSTR``, ``ESP_APPDESC_COMSTR``, ``ESP_BOOTDESC_COMSTR``
    The one line printed per step.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import SCons.Builder

from .. import __version__
from ..chips import get_chip
from ..descriptors import build_app_desc, build_bootloader_desc, data_asm
from ..errors import EspSecureError
from ..fileio import write_atomic, write_text_atomic
from .common import core_action, env_bool, env_int, env_str, fail

IMAGE_VARS = [
    "ESP_CHIP", "ESP_FLASH_MODE", "ESP_FLASH_FREQ", "ESP_FLASH_SIZE", "ESP_MIN_REV_FULL",
    "ESP_MAX_REV_FULL", "ESP_SECURE_PAD", "ESP_ELF_SHA256_OFFSET", "ESP_MMU_PAGE_SIZE",
    "ESP_APPEND_DIGEST", "ESP_USE_SEGMENTS", "ESP_RAM_ONLY_HEADER", "ESP_PAD_TO_SIZE",
]  # fmt: skip


def image_options(env: Any) -> Any:
    """The :class:`ImageOptions` the construction variables describe."""
    from ..image import ImageOptions, parse_size

    pad = env_str(env, "ESP_SECURE_PAD").lower()
    if pad not in ("", "v1", "v2", "1", "2", "none"):
        raise EspSecureError(f"ESP_SECURE_PAD={pad!r}: use 'v1', 'v2' or leave it unset")
    mmu = env_str(env, "ESP_MMU_PAGE_SIZE")
    pad_to = env_str(env, "ESP_PAD_TO_SIZE")
    try:
        mmu_size = parse_size(mmu) if mmu else None
        pad_size = parse_size(pad_to) if pad_to else None
    except ValueError as exc:
        raise EspSecureError(f"bad size in ESP_MMU_PAGE_SIZE/ESP_PAD_TO_SIZE: {exc}") from None
    return ImageOptions(
        flash_mode=env_str(env, "ESP_FLASH_MODE", "dio"),
        flash_freq=env_str(env, "ESP_FLASH_FREQ") or None,
        flash_size=env_str(env, "ESP_FLASH_SIZE", "4MB"),
        min_rev_full=env_int(env, "ESP_MIN_REV_FULL", 0) or 0,
        max_rev_full=env_int(env, "ESP_MAX_REV_FULL", 0xFFFF) or 0,
        secure_pad=pad in ("v1", "1"),
        secure_pad_v2=pad in ("v2", "2"),
        elf_sha256_offset=env_int(env, "ESP_ELF_SHA256_OFFSET"),
        append_digest=env_bool(env, "ESP_APPEND_DIGEST", True),
        use_segments=env_bool(env, "ESP_USE_SEGMENTS"),
        mmu_page_size=mmu_size,
        pad_to_size=pad_size,
        ram_only_header=env_bool(env, "ESP_RAM_ONLY_HEADER"),
    )


def _warn(message: str) -> None:
    print(f"esp-secure: warning: {message}", file=sys.stderr)


def _build_image(target: Any, source: Any, env: Any) -> None:
    from ..elf import read_elf
    from ..image import elf_to_image

    chip = get_chip(env_str(env, "ESP_CHIP"))
    image = elf_to_image(read_elf(source[0].get_abspath()), chip, image_options(env), warn=_warn)
    write_atomic(target[0].get_abspath(), image)


_BUILD_TIMES: dict[tuple[str, str], Any] = {}


def build_time(env: Any) -> Any:
    """The project's :class:`~esp_secure_build.buildtime.BuildTime`, never the clock (one git call per build)."""
    from ..buildtime import build_time as resolve

    text = env_str(env, "SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH", "")
    top = env.Dir("#").abspath
    if (top, text) not in _BUILD_TIMES:
        try:
            _BUILD_TIMES[top, text] = resolve(top, text)
        except EspSecureError as exc:
            fail(exc)
    return _BUILD_TIMES[top, text]


def source_date_epoch(env: Any) -> int:
    """The build time the descriptors hold (seconds since 1970, UTC): see :func:`build_time`."""
    return build_time(env).epoch


def _app_desc_params(env: Any) -> dict[str, Any]:
    chip = get_chip(env_str(env, "ESP_CHIP"))
    return {
        "project_name": env_str(env, "ESP_PROJECT_NAME", "app"),
        "version": env_str(env, "ESP_PROJECT_VERSION", "1.0.0"),
        "secure_version": env_int(env, "ESP_SECURE_VERSION", 0),
        "idf_ver": env_str(env, "ESP_IDF_VER", f"esp-secure-build {__version__}"),
        "source_date_epoch": source_date_epoch(env),
        "mmu_page_size": env_int(env, "ESP_MMU_PAGE_SIZE") or chip.default_mmu_page_size,
    }


def _build_app_desc(target: Any, source: Any, env: Any) -> None:
    params = source[0].read()
    write_text_atomic(target[0].get_abspath(), data_asm(".rodata_desc", "esp_app_desc", build_app_desc(**params)))


def _build_bootloader_desc(target: Any, source: Any, env: Any) -> None:
    params = source[0].read()
    data = build_bootloader_desc(**params)
    write_text_atomic(target[0].get_abspath(), data_asm(".data_bootloader_desc", "esp_bootloader_desc", data))


def _app_desc_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    # The descriptor's inputs are values, not files: a Value node makes a change
    # of name, version or SOURCE_DATE_EPOCH rebuild it, and nothing else does.
    return target, [env.Value(_app_desc_params(env))]


def _bootloader_desc_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    params = {
        "version": env_int(env, "ESP_BOOTLOADER_VERSION", 1),
        "idf_ver": env_str(env, "ESP_IDF_VER", f"esp-secure-build {__version__}"),
        "source_date_epoch": source_date_epoch(env),
    }
    return target, [env.Value(params)]


def generate(env: Any) -> None:
    env.SetDefault(
        ESP_CHIP="esp32c3",
        ESP_FLASH_MODE="dio",
        ESP_FLASH_SIZE="4MB",
        ESP_MIN_REV_FULL=0,
        ESP_MAX_REV_FULL=65535,
        ESP_APPEND_DIGEST=True,
        ESP_PROJECT_NAME="app",
        ESP_PROJECT_VERSION="1.0.0",
        ESP_SECURE_VERSION=0,
        ESP_IMAGE_COMSTR="ESP-IMAGE $TARGET",
        ESP_APPDESC_COMSTR="ESP-APPDESC $TARGET",
        ESP_BOOTDESC_COMSTR="ESP-BOOTDESC $TARGET",
        INSTALLSTR="INSTALL $TARGET",
    )
    env["BUILDERS"]["EspImage"] = SCons.Builder.Builder(
        action=core_action(_build_image, "ESP_IMAGE_COMSTR", IMAGE_VARS),
        suffix=".bin",
        src_suffix=".elf",
        single_source=True,
    )
    env["BUILDERS"]["EspAppDesc"] = SCons.Builder.Builder(
        action=core_action(_build_app_desc, "ESP_APPDESC_COMSTR", []),
        emitter=_app_desc_emitter,
        suffix=".S",
    )
    env["BUILDERS"]["EspBootloaderDesc"] = SCons.Builder.Builder(
        action=core_action(_build_bootloader_desc, "ESP_BOOTDESC_COMSTR", []),
        emitter=_bootloader_desc_emitter,
        suffix=".S",
    )
