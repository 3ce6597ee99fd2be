"""The release manifest: what a release holds, where each file goes, and how it is protected.

A JSON document a factory or an auditor reads without the build, and that
``esp-secure verify-release`` checks the folder against: every file of the
release folder with its role, flash address, size, SHA-256, whether it is
encrypted and which keys sign it; the chip, flash settings, Secure Boot, flash
and NVS encryption schemes, the app's identity, the tool version and the build
time source. No key material goes in: only public-key digests and key sizes.
The schema is in docs/manifest.md (``schema`` is bumped on incompatible change).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__
from .chips import Chip
from .devkeys import KIND_TITLES
from .errors import EspSecureError
from .fileio import read_bytes
from .image import read_image

SCHEMA = 2
MANIFEST_NAME = "manifest.json"

# Role of every release file that is not a flash region's own file, by path pattern
# (relative to the release folder, "/" separators; at most one "*", which matches
# anything, "/" included); the first match wins. A new kind of release file is one row
# here: (pattern, role, encrypted).
FILE_ROLES: tuple[tuple[str, str, bool], ...] = (
    ("app.bin", "app", False),
    ("bootloader.bin", "bootloader", False),
    ("bootloader-reflash-digest.bin", "secure-boot-v1-digest", False),
    ("partition-table.bin", "partition-table", False),
    ("ota_data_initial.bin", "otadata", False),
    ("encrypted/*", "flash-encrypted", True),
    ("factory-encrypted.bin", "factory-image", True),
    ("factory-encrypted.hex", "factory-image-hex", True),
    ("factory.bin", "factory-image", False),
    ("factory.hex", "factory-image-hex", False),
    ("flash_args", "flash-args", False),
    ("flasher_args.json", "flasher-args", False),
    ("secure_boot_key*.pub.pem", "secure-boot-public-key", False),
    ("secure_boot_key*_digest.bin", "secure-boot-key-digest", False),
    ("provisioning/efuse-script.sh", "efuse-script", False),
    ("provisioning/README.txt", "provisioning-readme", False),
)


def _matches(rel: str, pattern: str) -> bool:
    # As fnmatch.fnmatchcase for these patterns, without compiling a regex per pattern per build.
    head, star, tail = pattern.partition("*")
    if not star:
        return rel == pattern
    return len(rel) >= len(head) + len(tail) and rel.startswith(head) and rel.endswith(tail)


def file_role(rel: str) -> tuple[str, bool]:
    """(role, encrypted) of a release file by its path in the folder; EspSecureError when unknown."""
    for pattern, role, encrypted in FILE_ROLES:
        if _matches(rel, pattern):
            return role, encrypted
    raise EspSecureError(f"release file {rel!r} has no role: add a row to esp_secure_build.manifest.FILE_ROLES")


def region_role(region: str, kinds: Mapping[str, str]) -> str:
    """Role of a flash region: ``kinds`` maps partition names to app/otadata/nvs/nvs-keys/data."""
    return kinds.get(region, region)


def sha256_file(path: str) -> tuple[int, str]:
    data = read_bytes(path)
    return len(data), hashlib.sha256(data).hexdigest()


def file_entry(path: str, base: str) -> dict[str, Any]:
    size, digest = sha256_file(path)
    return {"file": _rel(path, base), "size": size, "sha256": digest}


def _rel(path: str, base: str) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


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
    if info.bootloader_desc is not None or info.app_desc is None:
        entry["flash_settings"] = {"mode": info.flash_mode_name, "freq": info.flash_freq_name,
                                   "size": info.flash_size_name}  # fmt: skip
    return entry


def _signed_by(entry: Mapping[str, Any], v1_digest: str | None) -> list[str]:
    if "secure_boot_v2" in entry:
        return [b["public_key_digest"] for b in entry["secure_boot_v2"]]
    if "secure_boot_v1" in entry and v1_digest:
        return [v1_digest]
    return []


def build_manifest(
    chip: Chip,
    base: str,
    layout: Sequence[tuple[str, int, str]],
    images: Sequence[str],
    artifacts: Sequence[str],
    certificates: Sequence[dict[str, Any]],
    flash_encryption: dict[str, Any] | None,
    *,
    plain: Mapping[str, str] | None = None,
    region_kinds: Mapping[str, str] | None = None,
    release: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest; see docs/manifest.md.

    ``layout``: (region, flash offset, file) of what the factory flashes; ``plain``:
    region -> its plaintext file where that differs; ``images``: the plaintext app
    and bootloader; ``artifacts``: every file the build wrote in ``base``;
    ``region_kinds``: partition name -> app/otadata/nvs/nvs-keys/data;
    ``release``: secure_boot, nvs_encryption, source_date_epoch, build_time_source,
    development_keys, partition_table_offset (see the schema).
    """
    plain = dict(plain or {})
    kinds = dict(region_kinds or {})
    release = dict(release or {})
    image_entries = {_rel(p, base): image_entry(p) for p in images}
    secure_boot = release.get("secure_boot")
    v1_digest = (secure_boot or {}).get("key_digests", [None])[0] if (secure_boot or {}).get("version") == 1 else None
    signed = {name: _signed_by(e, v1_digest) for name, e in image_entries.items()}
    nvs_encrypted = {n["partition"] for n in release.get("nvs_encryption", [])}

    regions = {_rel(path, base): region for region, _, path in layout}  # flashed file -> its region
    regions.update({_rel(path, base): region for region, path in plain.items()})  # plaintext of a region
    files: dict[str, dict[str, Any]] = {}
    for path in artifacts:
        rel = _rel(path, base)
        if rel.startswith("../") or rel == MANIFEST_NAME:
            continue
        if rel in regions:
            role, encrypted = region_role(regions[rel], kinds), regions[rel] in nvs_encrypted
        else:
            role, encrypted = file_role(rel)
        size, digest = sha256_file(path)
        files[rel] = {"file": rel, "role": role, "offset": None, "size": size, "sha256": digest,
                      "encrypted": encrypted, "signed_by": signed.get(rel, [])}  # fmt: skip
        if rel in regions:
            files[rel]["region"] = regions[rel]
    flash = []
    for region, offset, path in sorted(layout, key=lambda r: r[1]):
        rel = _rel(path, base)
        source = _rel(plain.get(region, path), base)
        encrypted = rel != source or region in nvs_encrypted
        entry = files.setdefault(rel, {"file": rel})
        size, digest = sha256_file(path)
        entry.update(role=region_role(region, kinds), region=region, offset=f"{offset:#x}", size=size, sha256=digest,
                     encrypted=encrypted, signed_by=signed.get(source, []))  # fmt: skip
        if region in nvs_encrypted:
            entry["encryption"] = "nvs"
        elif encrypted:
            entry["encryption"] = "flash"
        flash.append({"region": region, "offset": f"{offset:#x}", "file": rel, "size": size, "sha256": digest,
                      "encrypted": encrypted})  # fmt: skip

    app = next((e["app"] for e in image_entries.values() if "app" in e), None)
    settings = next((e["flash_settings"] for e in image_entries.values() if "flash_settings" in e), None)
    return {
        "schema": SCHEMA,
        "generator": f"esp-secure-build {__version__}",
        "tool_version": __version__,
        "chip": chip.name,
        "flash_settings": settings,
        "partition_table_offset": release.get("partition_table_offset"),
        "secure_boot": secure_boot,
        "flash_encryption": flash_encryption,
        "nvs_encryption": list(release.get("nvs_encryption", [])),
        "app": app,
        "source_date_epoch": release.get("source_date_epoch"),
        "build_time_source": release.get("build_time_source"),
        **({"build_time_commit": release["build_time_commit"]} if release.get("build_time_commit") else {}),
        "development_keys": release.get("development_keys"),
        "development_key_kinds": list(release.get("development_key_kinds", [])),
        "images": image_entries,
        "flash": flash,
        "files": sorted(files.values(), key=lambda f: f["file"]),
        "certificates": list(certificates),
    }


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    """A few lines for the end of a build."""
    lines = [f"Release for {manifest['chip']} ({manifest['generator']})"]
    sb = manifest.get("secure_boot") or {}
    for name, entry in manifest["images"].items():
        app = entry.get("app")
        ident = f"{app['project_name']} {app['version']} (secure version {app['secure_version']})" if app else ""
        signed = ", ".join(f"{b['scheme']} key {b['public_key_digest'][:16]}…" for b in entry.get("secure_boot_v2", []))
        signed = signed or entry.get("secure_boot_v1", "")
        if not signed:
            signed = "protected by the Secure Boot V1 bootloader digest" if sb.get("version") == 1 else "not signed"
        lines.append(f"  {name}: {ident + '; ' if ident else ''}{signed}")
    fe = manifest.get("flash_encryption")
    if fe:
        lines.append(f"  flash encryption: {fe['scheme']}, pre-encrypted layout:")
    for item in manifest["flash"]:
        lines.append(f"    {item['offset']:>9}  {item['file']}  ({item['size']} bytes, sha256 {item['sha256'][:16]}…)")
    for cert in manifest["certificates"]:
        for c in cert.get("certificates", []):
            lines.append(f"  CA certificate: {c['subject']}, not after {c['not_after']}, SHA-256 {c['sha256'][:23]}…")
        for warning in cert.get("warnings", []):
            lines.append(f"  WARNING: {warning}")
    if manifest.get("source_date_epoch") is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(manifest["source_date_epoch"]))
        source = manifest.get("build_time_source")
        source = {"git": f"the last git commit {manifest.get('build_time_commit', '')[:12]}",
                  "fixed": "fixed: no SOURCE_DATE_EPOCH, not a git checkout"}.get(source, source)  # fmt: skip
        lines.append(f"  build time: {when} ({source})")
    if manifest.get("development_keys"):
        kinds = ", ".join(KIND_TITLES.get(k, k) for k in manifest.get("development_key_kinds", []))
        lines.append(f"  WARNING: built with DEVELOPMENT keys{f' ({kinds})' if kinds else ''}; never ship this release")
    return lines


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2) + "\n"


def load(path: str) -> dict[str, Any]:
    """A manifest file, checked for the fields verify-release relies on."""
    from .fileio import read_text

    try:
        data = json.loads(read_text(path, "manifest"))
    except json.JSONDecodeError as exc:
        raise EspSecureError(f"manifest is not JSON ({exc.msg}, line {exc.lineno})", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list) or not isinstance(data.get("flash"), list):
        raise EspSecureError("manifest has no 'files' and 'flash' lists (made by an older version? rebuild)", path)
    problem = _shape_problem(data)
    if problem:
        raise EspSecureError(f"manifest: {problem}", path)
    return data


def _is_hex(value: Any) -> bool:
    if not isinstance(value, str) or not value.startswith("0x"):
        return False
    try:
        return int(value, 16) >= 0
    except ValueError:
        return False


def _safe_path(value: Any) -> bool:
    """A relative path inside the release folder ("/" separators, no "..", nothing absolute)."""
    if not isinstance(value, str) or not value or value.startswith("/") or "\\" in value or "\0" in value:
        return False
    return all(part not in ("", ".", "..") for part in value.split("/"))


def _shape_problem(data: dict[str, Any]) -> str | None:
    """What in a manifest does not have the types verify-release reads (see docs/manifest.md), or None."""
    if not isinstance(data.get("chip"), str):
        return "'chip' is not a string"
    for entry in data["files"]:
        if not isinstance(entry, dict) or not _safe_path(entry.get("file")):
            return f"files entry {entry!r:.60} has no relative 'file' path inside the release"
        if not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
            return f"files entry {entry['file']!r} has no integer 'size' and 'sha256'"
        if entry.get("offset") is not None and not _is_hex(entry["offset"]):
            return f"files entry {entry['file']!r} has an 'offset' that is not a hex string"
    for entry in data["flash"]:
        if not isinstance(entry, dict) or not _safe_path(entry.get("file")) or not isinstance(entry.get("region"), str):
            return f"flash entry {entry!r:.60} has no 'region' and relative 'file'"
        if not _is_hex(entry.get("offset")):
            return f"flash entry {entry['region']!r} has no hex 'offset'"
    for name in ("secure_boot", "flash_encryption", "app"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            return f"'{name}' is not an object"
    sb = data.get("secure_boot") or {}
    if not isinstance(sb.get("version", 0), int) or not isinstance(sb.get("key_digests", []), list):
        return "'secure_boot' has no integer 'version' and 'key_digests' list"
    if not all(isinstance(d, str) for d in sb.get("key_digests", [])):
        return "'secure_boot.key_digests' holds something that is not a hex string"
    if data.get("partition_table_offset") is not None and not _is_hex(data["partition_table_offset"]):
        return "'partition_table_offset' is not a hex string"
    nvs = data.get("nvs_encryption", [])
    if not isinstance(nvs, list) or not all(isinstance(n, dict) for n in nvs):
        return "'nvs_encryption' is not a list of objects"
    conf = (data.get("flash_encryption") or {}).get("flash_crypt_conf", 0xF)
    if not isinstance(conf, int) or not 0 <= conf <= 0xF:
        return "'flash_encryption.flash_crypt_conf' is not 0..15"
    return None
