"""Human-readable report of a parsed image (``esp-secure image-info``)."""

from __future__ import annotations

from .image import ImageInfo


def format_image_info(info: ImageInfo, path: str) -> str:
    """A plain-text report: header, segments, checksum, digest and descriptors."""
    chip = info.chip.title if info.chip else f"unknown chip id {info.chip_id}"
    lines = [
        f"Image: {path}",
        f"Chip: {chip} (image chip id {info.chip_id})",
        f"Entry point: {info.entry:#010x}",
        f"Flash: mode {info.flash_mode_name}, size {info.flash_size_name}, frequency {info.flash_freq_name}",
        f"Chip revision: min {info.min_rev_full // 100}.{info.min_rev_full % 100}, "
        f"max {info.max_rev_full // 100}.{info.max_rev_full % 100} (legacy min_rev {info.min_rev})",
        f"Segments: {len(info.segments)}",
    ]
    for i, seg in enumerate(info.segments):
        kinds = ", ".join(seg.memory_types) or "-"
        lines.append(f"  {i:2d}  load {seg.addr:#010x}  len {len(seg.data):#08x}  file offset {seg.offset:#08x}  {kinds}")
    ok = "valid" if info.checksum_valid else f"INVALID (computed {info.computed_checksum:#04x})"
    lines.append(f"Checksum: {info.stored_checksum:#04x} ({ok})")
    if info.hash_appended:
        assert info.stored_digest is not None
        ok = "valid" if info.digest_valid else f"INVALID (computed {info.computed_digest.hex() if info.computed_digest else ''})"
        lines.append(f"SHA-256: {info.stored_digest.hex()} ({ok})")
    else:
        lines.append("SHA-256: not appended")
    if info.signature_blocks:
        lines.append(f"Secure Boot V2 signature sector at {info.signature_offset:#x}:")
        for block, digest_ok in info.signature_blocks:
            own = "verifies with its key" if block.verifies_with(block.public_key) else "DOES NOT verify"
            match = "image digest matches" if digest_ok else "IMAGE DIGEST MISMATCH (image changed after signing)"
            lines.append(f"  block {block.index}: {block.scheme}, key digest {block.key_digest.hex()}, {match}, {own}")
    elif info.v1_signature is not None:
        lines.append("Secure Boot V1 signature appended (64 bytes; verify with `verify-signature --version 1`)")
    elif info.trailing:
        lines.append(f"Trailing data: {len(info.trailing)} bytes after the image")
    desc = info.app_desc
    if desc is not None:
        lines += [
            "Application descriptor:",
            f"  project name: {desc.project_name}",
            f"  version: {desc.version}",
            f"  secure version: {desc.secure_version}",
            f"  compiled: {desc.date} {desc.time}",
            f"  IDF version: {desc.idf_ver}",
            f"  ELF SHA-256: {desc.app_elf_sha256.hex()}",
        ]
    boot = info.bootloader_desc
    if boot is not None:
        lines += [
            "Bootloader descriptor:",
            f"  version: {boot.version}",
            f"  IDF version: {boot.idf_ver}",
            f"  compiled: {boot.date_time}",
        ]
    return "\n".join(lines)
