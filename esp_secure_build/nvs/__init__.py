"""NVS partitions: CSV -> partition, keys partitions, XTS encryption, manufacturing.

Byte-compatible with esp-idf-nvs-partition-gen 0.3.0 and ESP-IDF's mfg_gen.py;
see docs/nvs.md for where and why this package is stricter.
"""

from __future__ import annotations

import importlib

# Exported name -> submodule. Imported on first use (PEP 562), so that a plain
# `nvs generate` never loads the cryptography or multiprocessing modules.
_EXPORTS = {
    **dict.fromkeys(("NvsKeys", "decrypt_partition", "encrypt_partition", "random_hmac_key", "xts_entry"), "crypto"),
    **dict.fromkeys(("CsvRow", "read_nvs_csv"), "csvfile"),
    **dict.fromkeys(
        (
            "NvsBuilder", "generate_from_rows", "generate_partition", "load_hmac_key", "load_keys", "parse_size",
            "referenced_files",
        ),
        "generate",
    ),
    "NvsWriter": "layout",
    **dict.fromkeys(("MfgConfig", "MfgEncryption", "MfgOptions", "build_device", "read_mfg_config", "run_mfg"), "mfg"),
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "CsvRow",
    "MfgConfig",
    "MfgEncryption",
    "MfgOptions",
    "NvsBuilder",
    "NvsKeys",
    "NvsWriter",
    "build_device",
    "decrypt_partition",
    "encrypt_partition",
    "generate_from_rows",
    "generate_partition",
    "load_hmac_key",
    "load_keys",
    "parse_size",
    "random_hmac_key",
    "read_mfg_config",
    "read_nvs_csv",
    "referenced_files",
    "run_mfg",
    "xts_entry",
]
