"""NVS partitions: CSV -> partition, keys partitions, XTS encryption, manufacturing.

Byte-compatible with esp-idf-nvs-partition-gen 0.3.0 and ESP-IDF's mfg_gen.py;
see docs/nvs.md for where and why this package is stricter.
"""

from .crypto import NvsKeys, decrypt_partition, encrypt_partition, random_hmac_key, xts_entry
from .csvfile import CsvRow, read_nvs_csv
from .generate import (
    NvsBuilder,
    generate_from_rows,
    generate_partition,
    load_hmac_key,
    load_keys,
    parse_size,
    referenced_files,
)
from .layout import NvsWriter
from .mfg import MfgConfig, MfgEncryption, MfgOptions, build_device, read_mfg_config, run_mfg

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
