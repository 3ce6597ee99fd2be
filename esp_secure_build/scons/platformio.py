"""PlatformIO: the secure release of a PlatformIO project, from an extra script.

``esp_secure.py`` (the whole extra script)::

    from esp_secure_build.scons.platformio import esp_secure_release
    esp_secure_release(DefaultEnvironment())

``platformio.ini``::

    extra_scripts = post:esp_secure.py
    custom_esp_secure_boot = 2
    custom_esp_signing_keys = keys/secure_boot_signing_key.pem
    custom_esp_flash_encryption_key = keys/flash_encryption_key.bin
    custom_esp_bootloader_verifies_app = yes

``pio run -t esp-release`` builds ``$BUILD_DIR/release`` with ``env.EspRelease``
(:mod:`esp_secure_build.scons.release`); ``pio run -t esp-flash-release`` flashes
its pre-encrypted images with esptool (``write_flash @flash_args``). The
platform's ``upload`` is left as it is.

What the platform already knows is read, never typed twice: the chip from the board's
``build.mcu``; flash mode, frequency and size as the platform writes them into its
images (board ``build.flash_mode``, ``build.f_flash``/``f_image``,
``upload.flash_size``); the app ELF ``$BUILD_DIR/${PROGNAME}.elf`` (not the
platform's unsigned ``${PROGNAME}.bin``); the partition table ``$PARTITIONS_TABLE_CSV``;
the app partition, the one at ``$ESP32_APP_OFFSET``; the bootloader and extra images
(``boot_app0.bin`` into ``otadata``) from ``$FLASH_EXTRA_IMAGES``, by offset; the
bootloader and partition table offsets from ESP-IDF's ``$BUILD_DIR/config/sdkconfig.json``
when the framework made one.

Options (``custom_esp_*`` in the ``[env]`` section; paths are relative to the project):

``custom_esp_secure_boot`` [0]
    0 (none), 1 (ESP32 only) or 2.
``custom_esp_signing_keys``
    Key files, one per line or comma-separated (up to 3 for V2); ``pkcs11:hsm.ini``
    names a key in a PKCS#11 token (espsecure's config format).
``custom_esp_flash_encryption_key`` [unset: no flash encryption]
    The key file the factory burns; the release is pre-encrypted with it.
``custom_esp_dev_keys`` [no]
    ``yes``: a signing or flash encryption key file that does not exist is made as a
    development key (loudly, once). Never for production.
``custom_esp_bootloader_verifies_app`` [unset]
    With Secure Boot and a bootloader binary nothing describes: ``yes`` states that it
    was built with Secure Boot and checks the app (the build prints that it assumed
    it); ``no`` refuses to sign. Unset, the build refuses.
``custom_esp_expected_key_digests``
    Hex SHA-256 public-key digests every signature must carry (``ESP_EXPECTED_KEY_DIGESTS``):
    the CI gate that a production release was signed by the production keys.
``custom_esp_previous_manifest``
    The last release's ``manifest.json``: an app whose secure version is lower is refused
    (anti-rollback, ``ESP_PREVIOUS_MANIFEST``).
``custom_esp_bootloader`` [the ``$FLASH_EXTRA_IMAGES`` entry at the bootloader offset]
    Another bootloader: an image (``.bin``) or an ELF.
``custom_esp_nvs``
    NVS partitions to make, one ``partition: file.csv`` per line.
``custom_esp_nvs_keys`` [unset: plain NVS]
    The NVS keys partition file (made once with random keys if missing, then kept).
``custom_esp_project_name`` [the project folder's name], ``custom_esp_project_version``
[1.0.0], ``custom_esp_secure_version`` [0]
    Fields of the app descriptor this module adds.
``custom_esp_app_desc`` [auto]
    ``yes``/``no``: link an app descriptor (``esp_app_desc``, ``.rodata_desc``) into the
    app. ``auto``: only when no framework is used (Arduino and ESP-IDF have their own).
``custom_esp_release_dir`` [``$BUILD_DIR/release``]
``custom_esp_keys_dir`` [``keys/$PIOENV``]
    Where the build writes the secrets it derives (the Secure Boot V1 eFuse key).
``custom_esp_flash_command`` [esptool ``write_flash @flash_args``]
    The command ``esp-flash-release`` runs in the release folder.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, NoReturn

import SCons.Action
import SCons.Errors
from SCons.Script import ARGUMENTS, Exit

from ..chips import get_chip
from ..errors import EspSecureError

RELEASE_TARGET = "esp-release"
FLASH_TARGET = "esp-flash-release"


def _fail(message: str) -> NoReturn:
    """One line and exit status 2, as PlatformIO's own scripts stop (a UserError would print a stack frame)."""
    sys.stderr.write(f"esp-secure: error: {message}\n")
    Exit(2)
    raise SystemExit(2)  # not reached: Exit raises it


class _Options:
    """The ``custom_esp_*`` options of the environment being built."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.project = env.subst("$PROJECT_DIR")

    def get(self, name: str, default: str = "") -> str:
        value = self.env.GetProjectOption(f"custom_esp_{name}", default)
        return str(value).strip() if value is not None else default

    def items(self, name: str) -> list[str]:
        return [v.strip() for v in re.split(r"[,\n]", self.get(name)) if v.strip()]

    def path(self, value: str) -> str:
        return os.path.normpath(os.path.join(self.project, self.env.subst(value)))

    def flag(self, name: str, default: bool | None = None) -> bool | None:
        text = self.get(name).lower()
        if not text:
            return default
        if text in ("1", "yes", "true", "on", "y"):
            return True
        if text in ("0", "no", "false", "off", "n"):
            return False
        _fail(f"custom_esp_{name} = {text!r}: use yes or no")

    def number(self, name: str, default: int) -> int:
        text = self.get(name)
        try:
            return int(text, 0) if text else default
        except ValueError:
            _fail(f"custom_esp_{name} = {text!r} is not a number")


def _sdkconfig(env: Any) -> tuple[str | None, dict[str, Any]]:
    """ESP-IDF's ``$BUILD_DIR/config/sdkconfig.json`` (the espidf framework writes it), else none."""
    path = os.path.join(env.subst("$BUILD_DIR"), "config", "sdkconfig.json")
    if not os.path.isfile(path):
        return None, {}
    try:
        with open(path, encoding="utf-8") as f:
            return path, json.load(f)
    except (OSError, ValueError) as exc:
        _fail(f"{path}: {exc}")


def _sdk_int(sdk: dict[str, Any], name: str, default: int) -> int:
    value = sdk.get(name, default)
    try:
        return value if isinstance(value, int) else int(str(value), 0)
    except ValueError:
        _fail(f"sdkconfig.json: {name} = {value!r} is not a number")


def _flash_settings(env: Any) -> tuple[str, str, str]:
    """Mode, frequency and size as the platform writes them into its own images."""
    board = env.BoardConfig()

    def mhz(value: Any) -> str:
        try:
            return f"{int(str(value).rstrip('L')) // 1_000_000}m"
        except ValueError:
            _fail(f"board {env.subst('$BOARD')}: flash frequency {value!r} is not a number of Hz")

    if "__get_board_flash_mode" in env:  # platform-espressif32's own helpers
        mode = env.subst("${__get_board_flash_mode(__env__)}")
    else:
        mode = board.get("build.flash_mode", "dio")
        mode = "dio" if mode in ("qio", "qout") else mode  # the bootloader switches to QIO itself
    if "__get_board_f_image" in env:
        freq = env.subst("${__get_board_f_image(__env__)}")
    else:
        freq = mhz(board.get("build.f_image", board.get("build.f_flash", "40000000L")))
    return mode, freq, board.get("upload.flash_size", "4MB")


def _add_app_desc(env: Any, renv: Any, opts: _Options) -> None:
    """Link ``esp_app_desc`` into the program when the framework has none.

    A post script runs after the program is declared, so the object goes in as a
    File node in ``$LIBS``: SCons puts it on the link line as it is and its program
    scanner makes it a dependency of the ELF.
    """
    mode = opts.get("app_desc", "auto").lower()
    if mode not in ("auto", "yes", "no"):
        _fail(f"custom_esp_app_desc = {mode!r}: use auto, yes or no")
    if mode == "no" or (mode == "auto" and env.get("PIOFRAMEWORK")):
        return
    source = renv.EspAppDesc(os.path.join(env.subst("$BUILD_DIR"), "esp_secure", "esp_app_desc.S"))
    env.Append(LIBS=env.Object(source))


def _image(renv: Any, path: str, name: str) -> Any:
    """A bootloader given as an ELF becomes an image; an image is used as it is."""
    if path.endswith(".elf"):
        return renv.EspImage(os.path.join(renv.subst("$BUILD_DIR"), "esp_secure", f"{name}-unsigned.bin"), path)
    return renv.File(path)


def _split_extra_images(env: Any, table: Any, chip: Any, boot_offset: int, table_offset: int) -> tuple[str | None, dict[str, str]]:
    """``$FLASH_EXTRA_IMAGES`` as (bootloader path, {partition: path}); the platform's table is left out."""
    bootloader, extra = None, {}
    for entry in env.get("FLASH_EXTRA_IMAGES", []):
        try:
            offset, path = int(env.subst(str(entry[0])), 0), env.subst(str(entry[1]))
        except (ValueError, IndexError, TypeError):
            _fail(f"FLASH_EXTRA_IMAGES entry {entry!r} is not (offset, path)")
        if offset == boot_offset:
            bootloader = path
        elif offset == table_offset:
            continue  # the release makes its own table from $PARTITIONS_TABLE_CSV
        else:
            part = next((p for p in table if p.offset == offset), None)
            if part is None:
                _fail(f"FLASH_EXTRA_IMAGES: {path} at {offset:#x} is neither the {chip.title} bootloader "
                      f"({boot_offset:#x}), the partition table ({table_offset:#x}) nor a partition of "
                      f"{env.subst('$PARTITIONS_TABLE_CSV')}")  # fmt: skip
            extra[part.name] = path
    return bootloader, extra


def _signing_keys(renv: Any, opts: _Options, version: int, dev: bool) -> list[Any]:
    keys: list[Any] = []
    if not version:  # nothing is signed: no development key is made either
        return keys
    for item in opts.items("signing_keys"):
        if item.startswith("pkcs11:"):
            keys.append({"pkcs11": opts.path(item[len("pkcs11:"):])})
        else:  # a File node either way, so that making a development key changes no signature
            keys.append(renv.EspDevSigningKey(opts.path(item)) if dev else renv.File(opts.path(item)))
    if version and not keys:
        _fail(f"custom_esp_secure_boot = {version} needs custom_esp_signing_keys (key files or pkcs11:config)")
    return keys


def _check_bootloader(version: int, verifies: bool | None, sdk: dict[str, Any], bootloader: str) -> None:
    """Signing an app for a bootloader that never checks it protects nothing (:mod:`..chain_guards`).

    Checked here too, so that the message names the ``platformio.ini`` option;
    ``EspRelease`` prints the note when the build relies on the user's word.
    """
    from ..chain_guards import check_bootloader_secure_boot

    try:
        check_bootloader_secure_boot(version, sdk or None, verifies, bootloader)
    except EspSecureError as exc:
        message = str(exc).replace("ESP_BOOTLOADER_VERIFIES_APP=False", "custom_esp_bootloader_verifies_app = no")
        message = message.replace("ESP_BOOTLOADER_VERIFIES_APP=True", "custom_esp_bootloader_verifies_app = yes")
        _fail(message.replace("ESP_BOOTLOADER_VERIFIES_APP", "custom_esp_bootloader_verifies_app"))


def _flash_command(env: Any, chip: str, secure: bool) -> str:
    uploader = env.subst("$UPLOADER")
    esptool = '"$PYTHONEXE" "$UPLOADER"' if os.path.basename(uploader).startswith("esptool") else '"$PYTHONEXE" -m esptool'
    before = env.BoardConfig().get("upload.before_reset", "default_reset")
    # Underscored names: the platform's esptool.py (4.x) knows no other; esptool 5 still takes them.
    # ESP-IDF does not reset into a device that Secure Boot or flash encryption is about to lock.
    after = "no_reset" if secure else env.BoardConfig().get("upload.after_reset", "hard_reset")
    return (f'{esptool} --chip {chip} --port "$UPLOAD_PORT" --baud $UPLOAD_SPEED --before {before} --after {after} '
            "write_flash @flash_args")  # fmt: skip


def esp_secure_release(env: Any) -> list[Any]:
    """Declare ``esp-release`` and ``esp-flash-release`` for a PlatformIO environment; see the module docstring."""
    from ..fileio import read_text
    from ..partition_table import parse_csv
    from . import generate as esp_secure_tool

    if "PIOMAINPROG" not in env:  # a pre: script runs before the platform declares the program and its images
        _fail("call esp_secure_release from a post: extra script (extra_scripts = post:esp_secure.py)")
    opts = _Options(env)
    board = env.BoardConfig()
    try:
        chip = get_chip(board.get("build.mcu", ""))
    except EspSecureError as exc:
        _fail(f"board {env.subst('$BOARD')}: build.mcu: {exc}")
    sdk_path, sdk = _sdkconfig(env)
    version = opts.number("secure_boot", 0)
    if version not in (0, 1, 2):
        _fail(f"custom_esp_secure_boot = {version}: use 0, 1 or 2")
    mode, freq, size = _flash_settings(env)

    renv = env.Clone()  # the release's variables stay out of the platform's environment
    esp_secure_tool(renv)
    renv.Replace(
        ESP_CHIP=chip.name,
        ESP_FLASH_MODE=mode,
        ESP_FLASH_FREQ=freq,
        ESP_FLASH_SIZE=size,
        ESP_PROJECT_NAME=opts.get("project_name") or os.path.basename(os.path.normpath(opts.project)),
        ESP_PROJECT_VERSION=opts.get("project_version", "1.0.0"),
        ESP_SECURE_VERSION=opts.number("secure_version", 0),
        ESP_PARTITION_TABLE_OFFSET=opts.number("partition_table_offset", _sdk_int(sdk, "PARTITION_TABLE_OFFSET", 0x8000)),
    )
    if version:
        renv["ESP_SECURE_BOOT_VERSION"] = version
    verifies = opts.flag("bootloader_verifies_app")
    if verifies is not None:
        renv["ESP_BOOTLOADER_VERIFIES_APP"] = verifies
    if sdk_path:
        renv["ESP_IDF_SDKCONFIG"] = sdk_path
    renv["ESP_EXPECTED_KEY_DIGESTS"] = opts.items("expected_key_digests")
    if opts.get("previous_manifest"):
        renv["ESP_PREVIOUS_MANIFEST"] = renv.File(opts.path(opts.get("previous_manifest")))
    # Derived secrets (the Secure Boot V1 eFuse key) are named after the release folder, which is
    # "release" in every environment: one folder per environment keeps two from sharing a file.
    renv["ESP_KEYS_DIR"] = renv.Dir(opts.path(opts.get("keys_dir") or os.path.join("keys", "$PIOENV")))

    csv = env.subst("$PARTITIONS_TABLE_CSV")
    if not csv:
        _fail("the platform set no PARTITIONS_TABLE_CSV: name the table with board_build.partitions")
    table_offset = renv["ESP_PARTITION_TABLE_OFFSET"]
    try:
        table = parse_csv(read_text(csv, "partition table CSV"), csv, offset=table_offset)
    except EspSecureError as exc:
        _fail(str(exc))
    boot_offset = _sdk_int(sdk, "BOOTLOADER_OFFSET_IN_FLASH", chip.bootloader_offset)
    bootloader, extra = _split_extra_images(env, table, chip, boot_offset, table_offset)
    if opts.get("bootloader"):
        bootloader = opts.path(opts.get("bootloader"))
    if not bootloader:
        _fail(f"no bootloader: FLASH_EXTRA_IMAGES has no image at {boot_offset:#x}; name one with custom_esp_bootloader")
    _check_bootloader(version, verifies, sdk, os.path.relpath(str(bootloader), opts.project))

    app_offset = int(env.subst("$ESP32_APP_OFFSET") or "0x10000", 0)
    app_part = next((p for p in table if p.offset == app_offset), None)
    if app_part is None or app_part.type != 0x00:
        _fail(f"ESP32_APP_OFFSET {app_offset:#x} (board upload.offset_address) is not an app partition of {csv}")

    dev = bool(opts.flag("dev_keys", False))
    renv["ESP_SIGNING_KEYS"] = _signing_keys(renv, opts, version, dev)
    fe_key = opts.get("flash_encryption_key")
    if fe_key:
        path = opts.path(fe_key)
        renv["ESP_FLASH_ENCRYPTION_KEY"] = renv.EspDevFlashEncryptionKey(path) if dev else renv.File(path)

    _add_app_desc(env, renv, opts)

    nvs: dict[str, tuple[str, Any]] = {}
    nvs_keys_file = opts.get("nvs_keys")
    keys = renv.NvsKeys(opts.path(nvs_keys_file)) if nvs_keys_file else None
    for line in opts.items("nvs"):
        name, sep, nvs_csv = line.partition(":")
        if not sep or not name.strip() or not nvs_csv.strip():
            _fail(f"custom_esp_nvs: {line!r}: write one 'partition: file.csv' per line")
        nvs[name.strip()] = (opts.path(nvs_csv.strip()), keys)

    elf = env.File(env.subst(os.path.join("$BUILD_DIR", "${PROGNAME}.elf")))
    pad = {1: "v1", 2: "v2"}.get(version)
    app = renv.EspImage(os.path.join(env.subst("$BUILD_DIR"), "esp_secure", "app-unsigned.bin"), elf,
                        **({"ESP_SECURE_PAD": pad} if pad else {}))  # fmt: skip
    folder = opts.path(opts.get("release_dir") or os.path.join("$BUILD_DIR", "release"))
    try:
        artifacts = renv.EspRelease(
            folder,
            app=app,
            bootloader=_image(renv, bootloader, "bootloader"),
            partitions=csv,
            nvs=nvs,
            app_partition=app_part.name,
            extra_images={name: renv.File(path) for name, path in extra.items()},
        )
    except (EspSecureError, SCons.Errors.UserError) as exc:
        _fail(str(exc))

    what = ", ".join([f"Secure Boot V{version}"] * bool(version) + ["pre-encrypted"] * bool(fe_key)) or "plain"
    env.AddCustomTarget(RELEASE_TARGET, artifacts, None, title="ESP Secure Release",
                        description=f"Release ({what}) in {os.path.relpath(folder, opts.project)}",
                        always_build=False)  # fmt: skip
    command = opts.get("flash_command") or _flash_command(env, chip.name, bool(version or fe_key))
    actions = []
    if "$UPLOAD_PORT" in command and hasattr(env, "AutodetectUploadPort"):
        actions.append(env.VerboseAction(lambda target, source, env: env.AutodetectUploadPort(), "Looking for upload port..."))
    verbose = int(ARGUMENTS.get("PIOVERBOSE", 0) or 0)
    actions.append(SCons.Action.Action(command, None if verbose else f"Flashing {os.path.relpath(folder, opts.project)}",
                                       chdir=folder))  # fmt: skip
    env.AddCustomTarget(FLASH_TARGET, artifacts, actions, title="ESP Flash Release",
                        description="Flash the pre-encrypted release with esptool write_flash @flash_args")  # fmt: skip
    return artifacts
