"""``env.EspReleaseManifest(target, layout, images=[...], artifacts=[...], certificates=[...], plain={...}, release={...})``.

Writes the release manifest (:mod:`esp_secure_build.manifest`, schema in
docs/manifest.md) and prints its summary: app identity, signing keys, flash
encryption, the flash layout with SHA-256 of each file, and the CA
certificates' check results. ``layout`` is the same list of ``(region, node)``
pairs as ``EspFactoryImage``; addresses come from ``$ESP_PARTITION_TABLE``.
``plain`` maps a region to its plaintext node where the flashed file is its
ciphertext; ``release`` holds the values that are not files (Secure Boot
version, NVS encryption, build time source, development keys).
``ESP_MANIFEST_COMSTR`` ["ESP-MANIFEST $TARGET"].
"""

from __future__ import annotations

import os
import sys
from typing import Any

import SCons.Builder

from ..chips import get_chip
from ..fileio import write_text_atomic
from .common import core_action, env_int, env_str, first_node
from .partitions import load_table, region, table_node


def _kinds(table: Any) -> dict[str, str]:
    from ..partition_table import APP, DATA, SUBTYPE_NVS, SUBTYPE_NVS_KEYS, SUBTYPE_OTA

    kinds = {}
    for p in table:
        if p.type == APP:
            kinds[p.name] = "app"
        elif p.type == DATA and p.subtype in (SUBTYPE_OTA, SUBTYPE_NVS, SUBTYPE_NVS_KEYS):
            kinds[p.name] = {SUBTYPE_OTA: "otadata", SUBTYPE_NVS: "nvs", SUBTYPE_NVS_KEYS: "nvs-keys"}[p.subtype]
        else:
            kinds[p.name] = "data"
    return kinds


def flash_encryption_info(env: Any) -> dict[str, Any] | None:
    """Scheme and key size (never the key) of ``$ESP_FLASH_ENCRYPTION_KEY``, None without one."""
    from ..flash_encryption import scheme_for_chip

    key = env.get("ESP_FLASH_ENCRYPTION_KEY")
    if not key:
        return None
    chip = get_chip(env_str(env, "ESP_CHIP"))
    bits = os.path.getsize(env.File(first_node(key)).abspath) * 8
    if scheme_for_chip(chip) == "esp32":
        return {"scheme": "AES-256 with address tweak (ESP32)", "key_bits": 256,
                "flash_crypt_conf": env_int(env, "ESP_FLASH_CRYPT_CONF", 0xF)}  # fmt: skip
    return {"scheme": f"XTS-AES-{256 if bits == 512 else 128}", "key_bits": bits}


def _secure_boot(env: Any, version: int, pub_digests: list[str]) -> dict[str, Any] | None:
    if not version:
        return None
    from ..fileio import read_bytes
    from ..secure_boot.keys import load_public_key_bytes, scheme_of

    schemes = []
    for path in pub_digests:
        pem = path[: -len("_digest.bin")] + ".pub.pem"
        schemes.append(scheme_of(load_public_key_bytes(read_bytes(pem, "public key"), pem)))
    digests = [read_bytes(p, "key digest").hex() for p in pub_digests]
    return {"version": version, "scheme": schemes[0] if schemes else None, "key_digests": digests}


def _build_manifest(target: Any, source: Any, env: Any) -> None:
    from ..manifest import build_manifest, dumps, summary_lines
    from .certs import read_cert_summary

    chip = get_chip(env_str(env, "ESP_CHIP"))
    spec = source[0].read()
    nodes = iter(source[2:])
    layout_nodes = [next(nodes) for _ in spec["layout"]]
    plain = {name: next(nodes).get_abspath() for name in spec["plain"]}
    images = [next(nodes).get_abspath() for _ in range(spec["images"])]
    artifacts = [next(nodes).get_abspath() for _ in range(spec["artifacts"])]
    certs = [read_cert_summary(next(nodes).get_abspath()) for _ in range(spec["certificates"])]
    table = load_table(env)
    layout = [(name, region(env, table, name)[0], node.get_abspath()) for name, node in zip(spec["layout"], layout_nodes, strict=True)]
    release = dict(spec["release"])
    version = release.pop("secure_boot_version", 0)
    digests = sorted(p for p in artifacts if p.endswith("_digest.bin") and os.path.basename(p).startswith("secure_boot_key"))
    release["secure_boot"] = _secure_boot(env, version, digests)
    release["partition_table_offset"] = f"{table.offset:#x}"
    base = os.path.dirname(target[0].get_abspath())
    manifest = build_manifest(chip, base, layout, images, artifacts, certs, flash_encryption_info(env),
                              plain=plain, region_kinds=_kinds(table), release=release)  # fmt: skip
    write_text_atomic(target[0].get_abspath(), dumps(manifest))
    sys.stdout.write("\n".join(summary_lines(manifest)) + "\n")


def _manifest(env: Any, target: str, layout: list[tuple[str, Any]], images: list[Any] = (),  # type: ignore[assignment]
              artifacts: list[Any] = (), certificates: list[Any] = (),  # type: ignore[assignment]
              plain: dict[str, Any] | None = None, release: dict[str, Any] | None = None) -> Any:
    plain = plain or {}
    spec = {"layout": [name for name, _ in layout], "plain": list(plain), "images": len(images),
            "artifacts": len(artifacts), "certificates": len(certificates), "release": dict(release or {})}  # fmt: skip
    nodes = [env.File(first_node(n)) for _, n in layout] + [env.File(first_node(n)) for n in plain.values()]
    nodes += [env.File(first_node(n)) for n in images]
    nodes += [env.File(first_node(n)) for n in artifacts] + [env.File(first_node(n)) for n in certificates]
    return env["BUILDERS"]["_EspReleaseManifest"](env, target, [env.Value(spec), table_node(env), *nodes])


def generate(env: Any) -> None:
    env.SetDefault(ESP_MANIFEST_COMSTR="ESP-MANIFEST $TARGET")
    env["BUILDERS"]["_EspReleaseManifest"] = SCons.Builder.Builder(
        action=core_action(_build_manifest, "ESP_MANIFEST_COMSTR", ["ESP_CHIP", "ESP_FLASH_CRYPT_CONF"]))
    env.AddMethod(_manifest, "EspReleaseManifest")
