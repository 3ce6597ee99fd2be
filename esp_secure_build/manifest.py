"""The release manifest: what a release holds, where each file goes, and how it is protected.

A JSON document a factory or an auditor reads without the build: chip, app
identity (from the app descriptor), Secure Boot scheme and the public-key digest
of every signature block, flash encryption scheme, the flash layout with
addresses, sizes and SHA-256 of each file, and the embedded CA certificates.
No key material goes in: only public-key digests.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from . import __version__
from .chips import Chip
from .fileio import read_bytes
from .image import read_image


def file_entry(path: str, base: str) -> dict[str, Any]:
    data = read_bytes(path)
    return {"file": os.path.relpath(path, base), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def image_entry(path: str) -> dict[str, Any]:
    """Identity and signatures of a plaintext app or bootloader image."""
    info = read_image(read_bytes(path, "image"), path)
    entry: dict[str, Any] = {}
    if info.app_desc is not None:
        d = info.app_desc
        entry["app"] = {"project_name": d.project_name, "version": d.version, "secure_version": d.secure_version,
                        "compiled": f"{d.date} {d.time}", "elf_sha256": d.app_elf_sha256.hex()}  # fmt: skip
    if info.signature_blocks:
        entry["secure_boot_v2"] = [
            {"scheme": block.scheme, "public_key_digest": block.key_digest.hex(), "digest_matches": ok}
            for block, ok in info.signature_blocks
        ]
    elif info.v1_signature is not None:
        entry["secure_boot_v1"] = "ECDSA P-256 signature appended"
    return entry


def build_manifest(
    chip: Chip,
    base: str,
    layout: Sequence[tuple[str, int, str]],
    images: Sequence[str],
    artifacts: Sequence[str],
    certificates: Sequence[dict[str, Any]],
    flash_encryption: str | None,
) -> dict[str, Any]:
    """The manifest; ``layout`` is (region, flash offset, file) of what the factory flashes."""
    return {
        "generator": f"esp-secure-build {__version__}",
        "chip": chip.name,
        "flash_encryption": flash_encryption,
        "images": {os.path.relpath(p, base): image_entry(p) for p in images},
        "flash": [{"region": name, "offset": f"{offset:#x}", **file_entry(path, base)}
                  for name, offset, path in sorted(layout, key=lambda r: r[1])],
        "artifacts": [file_entry(p, base) for p in artifacts],
        "certificates": list(certificates),
    }


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    """A few lines for the end of a build."""
    lines = [f"Release for {manifest['chip']} ({manifest['generator']})"]
    for name, entry in manifest["images"].items():
        app = entry.get("app")
        ident = f"{app['project_name']} {app['version']} (secure version {app['secure_version']})" if app else ""
        signed = ", ".join(f"{b['scheme']} key {b['public_key_digest'][:16]}…" for b in entry.get("secure_boot_v2", []))
        signed = signed or entry.get("secure_boot_v1", "not signed")
        lines.append(f"  {name}: {ident + '; ' if ident else ''}{signed}")
    if manifest["flash_encryption"]:
        lines.append(f"  flash encryption: {manifest['flash_encryption']}, pre-encrypted layout:")
    for item in manifest["flash"]:
        lines.append(f"    {item['offset']:>9}  {item['file']}  ({item['size']} bytes, sha256 {item['sha256'][:16]}…)")
    for cert in manifest["certificates"]:
        for c in cert.get("certificates", []):
            lines.append(f"  CA certificate: {c['subject']}, not after {c['not_after']}, SHA-256 {c['sha256'][:23]}…")
        for warning in cert.get("warnings", []):
            lines.append(f"  WARNING: {warning}")
    return lines


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2) + "\n"
