"""``EncryptedImage``: ciphertext for the flash address the partition table gives.

``env.EncryptedImage(target, image, partition='factory')`` encrypts ``image`` for
the named partition of ``$ESP_PARTITION_TABLE`` (or ``'bootloader'``,
``'partition-table'``, ``'secure-boot-v1-digest'``): the address is never typed
twice. The image must fit the partition (checked after signing and padding), and
the partition must be one the device encrypts (an NVS data partition is not: it
has its own encryption). After encrypting, the build decrypts what it wrote and
compares it with the plaintext.

Construction variables (defaults in brackets):

``ESP_FLASH_ENCRYPTION_KEY`` [unset]
    The key file (32 bytes: ESP32 AES-256 or XTS-AES-128; 64 bytes: XTS-AES-256;
    as the chip allows). A dependency: changing it re-encrypts, nothing else.
``ESP_FLASH_CRYPT_CONF`` [0xF]
    ESP32 only: the ``FLASH_CRYPT_CONF`` eFuse value.
``ESP_ENCRYPT_COMSTR`` ["ESP-ENCRYPT $TARGET"]

``env.EspDevFlashEncryptionKey(path)`` makes a development key once (mode 0600, in a
0700 folder), when the SConstruct is read, records it as a development key
(:mod:`esp_secure_build.devkeys`) and never replaces it; with
``ESP_REQUIRE_PRODUCTION_KEYS`` it makes none.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import SCons.Builder
import SCons.Errors

from ..chips import get_chip
from ..errors import EspSecureError
from ..fileio import read_bytes, read_key_bytes, write_atomic, write_new
from .common import core_action, env_int, env_str, fail, first_node, refuse_known_key
from .partitions import load_table, region, table_node
from .production import new_key_folder, record_generated, refuse_generation

ENCRYPT_VARS = ["ESP_CHIP", "ESP_FLASH_CRYPT_CONF", "ESP_PARTITION", "ESP_PARTITION_TABLE_OFFSET"]


def key_node(env: Any) -> Any:
    value = env.get("ESP_FLASH_ENCRYPTION_KEY")
    if not value:
        raise EspSecureError("ESP_FLASH_ENCRYPTION_KEY is not set: name the flash encryption key file")
    return env.File(first_node(value))


def _build_encrypted(target: Any, source: Any, env: Any) -> None:
    from ..flash_encryption import check_key_for_chip, decrypt, encrypt, scheme_for_chip

    chip = get_chip(env_str(env, "ESP_CHIP"))
    name = env_str(env, "ESP_PARTITION")
    src = source[0].get_abspath()
    offset, size, encrypted = region(env, load_table(env), name)
    if not encrypted:
        raise EspSecureError(
            f"partition {name!r} is not flash-encrypted on the device (NVS data has its own encryption); "
            "flash it as it is",
            src,
        )
    data = read_bytes(src, "image")
    if len(data) > size:
        raise EspSecureError(f"is {len(data):#x} bytes, larger than {name!r} ({size:#x} bytes at {offset:#x})", src)
    key_path = key_node(env).get_abspath()
    key = read_key_bytes(key_path, "flash encryption key")
    check_key_for_chip(key, chip, key_path)
    refuse_known_key(env, "flash_encryption", key, key_path)
    scheme, conf = scheme_for_chip(chip), env_int(env, "ESP_FLASH_CRYPT_CONF", 0xF)
    ciphertext = encrypt(data, key, offset, scheme, conf, key_path)
    # Read back what we made: a wrong byte here is a device that does not boot.
    if decrypt(ciphertext, key, offset, scheme, conf, key_path)[: len(data)] != data:
        raise EspSecureError("decrypting the encrypted image did not give the plaintext back (internal error)", src)
    write_atomic(target[0].get_abspath(), ciphertext)


def _encrypted_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    key = key_node(env)
    env.NoCache(key)  # plaintext key material never goes into a shared cache
    return target, [source[0], table_node(env), key]


def _encrypted_image(env: Any, target: Any, source: Any, partition: str, **overrides: Any) -> Any:
    return env["BUILDERS"]["_EncryptedImage"](env, target, source, ESP_PARTITION=partition, **overrides)


def _dev_key(env: Any, target: str, bits: int | None = None) -> Any:
    """A development flash encryption key: made when the SConstruct is read if missing, then kept."""
    node = env.File(target)
    env.NoCache(node)
    if env.GetOption("clean") or env.GetOption("help") or os.path.lexists(node.abspath):
        return node
    from ..flash_encryption import generate_key

    chip = get_chip(env_str(env, "ESP_CHIP"))
    bits = bits or (256 if 256 in chip.flash_encryption_key_bits else chip.flash_encryption_key_bits[0])
    try:
        if bits not in chip.flash_encryption_key_bits:
            raise EspSecureError(f"{chip.title} takes {chip.flash_encryption_key_bits}-bit keys, not {bits}")
        refuse_generation(env, "flash encryption key", node.abspath, "ESP_FLASH_ENCRYPTION_KEY")
        new_key_folder(node.abspath)
        key = generate_key(bits)
        write_new(node.abspath, key, mode=0o600)  # exclusive: never replaces a key made meanwhile
        record_generated(node.abspath, "flash_encryption", key)
    except EspSecureError as exc:
        fail(exc)
    sys.stdout.write(
        f"{'!' * 78}\n!! DEVELOPMENT flash encryption key created: {os.path.relpath(node.abspath)} ({bits} bits).\n"
        "!! Anyone with this file reads the flash of devices that hold it. Keep production keys out of builds:\n"
        "!! set ESP_FLASH_ENCRYPTION_KEY to the key your factory burns.\n"
        f"{'!' * 78}\n"
    )
    return node


def generate(env: Any) -> None:
    env.SetDefault(ESP_FLASH_CRYPT_CONF=0xF, ESP_ENCRYPT_COMSTR="ESP-ENCRYPT $TARGET")
    env["BUILDERS"]["_EncryptedImage"] = SCons.Builder.Builder(
        action=core_action(_build_encrypted, "ESP_ENCRYPT_COMSTR", ENCRYPT_VARS),
        emitter=_encrypted_emitter,
        suffix=".bin",
    )
    env.AddMethod(_encrypted_image, "EncryptedImage")
    env.AddMethod(_dev_key, "EspDevFlashEncryptionKey")
