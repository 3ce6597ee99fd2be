"""``env.EspReleaseManifest(target, layout, images=[...], artifacts=[...], certificates=[...])``.

Writes the release manifest (:mod:`esp_secure_build.manifest`) and prints its
summary: app identity, signing keys, flash encryption, the flash layout with
SHA-256 of each file, and the CA certificates' check results. ``layout`` is the
same list of ``(region, node)`` pairs as ``EspFactoryImage``; addresses come
from ``$ESP_PARTITION_TABLE``. ``ESP_MANIFEST_COMSTR`` ["ESP-MANIFEST $TARGET"].
"""

from __future__ import annotations

import os
import sys
from typing import Any

import SCons.Builder

from ..chips import get_chip
from ..fileio import write_text_atomic
from .common import core_action, env_str, first_node
from .partitions import load_table, region, table_node


def _build_manifest(target: Any, source: Any, env: Any) -> None:
    from ..flash_encryption import scheme_for_chip
    from ..manifest import build_manifest, dumps, summary_lines
    from .certs import read_cert_summary

    chip = get_chip(env_str(env, "ESP_CHIP"))
    spec = source[0].read()
    nodes = iter(source[2:])
    layout_nodes = [next(nodes) for _ in spec["layout"]]
    images = [next(nodes).get_abspath() for _ in range(spec["images"])]
    artifacts = [next(nodes).get_abspath() for _ in range(spec["artifacts"])]
    certs = [read_cert_summary(next(nodes).get_abspath()) for _ in range(spec["certificates"])]
    table = load_table(env)
    layout = [(name, region(env, table, name)[0], node.get_abspath()) for name, node in zip(spec["layout"], layout_nodes, strict=True)]
    key = env.get("ESP_FLASH_ENCRYPTION_KEY")
    fe = None
    if key:
        bits = os.path.getsize(env.File(first_node(key)).abspath) * 8
        fe = "AES-256 with address tweak (ESP32)" if scheme_for_chip(chip) == "esp32" else f"XTS-AES-{bits // 2 if bits > 128 else 128}"
    base = os.path.dirname(target[0].get_abspath())
    manifest = build_manifest(chip, base, layout, images, artifacts, certs, fe)
    write_text_atomic(target[0].get_abspath(), dumps(manifest))
    sys.stdout.write("\n".join(summary_lines(manifest)) + "\n")


def _manifest(env: Any, target: str, layout: list[tuple[str, Any]], images: list[Any] = (),  # type: ignore[assignment]
              artifacts: list[Any] = (), certificates: list[Any] = ()) -> Any:  # type: ignore[assignment]
    spec = {"layout": [name for name, _ in layout], "images": len(images), "artifacts": len(artifacts),
            "certificates": len(certificates)}  # fmt: skip
    nodes = [env.File(first_node(n)) for _, n in layout] + [env.File(first_node(n)) for n in images]
    nodes += [env.File(first_node(n)) for n in artifacts] + [env.File(first_node(n)) for n in certificates]
    return env["BUILDERS"]["_EspReleaseManifest"](env, target, [env.Value(spec), table_node(env), *nodes])


def generate(env: Any) -> None:
    env.SetDefault(ESP_MANIFEST_COMSTR="ESP-MANIFEST $TARGET")
    env["BUILDERS"]["_EspReleaseManifest"] = SCons.Builder.Builder(
        action=core_action(_build_manifest, "ESP_MANIFEST_COMSTR", ["ESP_CHIP"]))
    env.AddMethod(_manifest, "EspReleaseManifest")
