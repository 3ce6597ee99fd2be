"""The chip table: everything that differs between ESP32-family chips.

Values follow esptool 5.6.0's targets and ESP-IDF's documentation. A new chip
is one entry in :data:`CHIPS`.
"""

from __future__ import annotations

from collections import namedtuple

from .errors import EspSecureError
from .fileio import MAX_FLASH_SIZE as MAX_FLASH_SIZE  # the largest size FLASH_SIZES names

KB = 1024
MB = 1024 * 1024

# Header byte 2 (all chips).
FLASH_MODES: dict[str, int] = {"qio": 0, "qout": 1, "dio": 2, "dout": 3}
# High nibble of header byte 3 (all chips).
FLASH_SIZES: dict[str, int] = {
    "1MB": 0x00, "2MB": 0x10, "4MB": 0x20, "8MB": 0x30,
    "16MB": 0x40, "32MB": 0x50, "64MB": 0x60, "128MB": 0x70,
}  # fmt: skip

_FREQ_STD = {"80m": 0xF, "40m": 0x0, "26m": 0x1, "20m": 0x2}
_FREQ_NO26 = {"80m": 0xF, "40m": 0x0, "20m": 0x2}
_FREQ_48 = {"48m": 0xF, "24m": 0x0, "16m": 0x1, "12m": 0x2}
_FREQ_48_24 = {"48m": 0xF, "24m": 0x0}

# Memory-type maps used to decide which neighbouring sections merge and what
# image-info calls a segment. (start, end, name), end exclusive.
MemoryMap = tuple[tuple[int, int, str], ...]

_RISCV_MAP_C6 = (
    (0x0, 0x10000, "PADDING"), (0x42000000, 0x43000000, "DROM"),
    (0x40800000, 0x40880000, "DRAM"), (0x40800000, 0x40880000, "BYTE_ACCESSIBLE"),
    (0x4004AC00, 0x40050000, "DROM_MASK"), (0x40000000, 0x4004AC00, "IROM_MASK"),
    (0x42000000, 0x43000000, "IROM"), (0x40800000, 0x40880000, "IRAM"),
    (0x50000000, 0x50004000, "RTC_IRAM"), (0x50000000, 0x50004000, "RTC_DRAM"),
    (0x600FE000, 0x60100000, "MEM_INTERNAL2"),
)  # fmt: skip


# A namedtuple, not a dataclass: importing dataclasses costs every CLI call ~6 ms.
_ChipFields = namedtuple(
    "_ChipFields",
    [
        "name", "title", "image_chip_id", "arch", "bootloader_offset", "irom_map", "drom_map",
        "memory_map", "flash_freqs", "mmu_page_sizes", "secure_boot_v1", "secure_boot_v2",
        "max_signatures", "flash_encryption", "flash_encryption_key_bits", "encrypted_write_align",
        "riscv_march",
    ],
    defaults=((64 * KB,), False, ("rsa3072",), 3, "xts", (256,), 16, None),
)  # fmt: skip


class Chip(_ChipFields):
    """One ESP32-family chip as the image, signing and encryption code see it.

    Fields: ``name`` (esptool's --chip), ``title``, ``image_chip_id`` (header bytes
    12-13), ``arch`` ("xtensa" or "riscv"), ``bootloader_offset`` (flash),
    ``irom_map``/``drom_map`` (flash-mapped windows), ``memory_map`` ((start, end,
    name) regions), ``flash_freqs`` (name -> header code), ``mmu_page_sizes``
    (allowed sizes, ascending; the default is 64 KiB), ``secure_boot_v1`` (ESP32 only),
    ``secure_boot_v2`` (schemes the ROM accepts), ``max_signatures`` (V2 blocks the
    ROM honours), ``flash_encryption`` ("esp32-aes" or "xts"),
    ``flash_encryption_key_bits`` (key file sizes), ``encrypted_write_align``,
    ``riscv_march`` (-march for the RISC-V toolchain helper).
    """

    __slots__ = ()
    name: str
    title: str
    image_chip_id: int
    arch: str
    bootloader_offset: int
    irom_map: tuple[int, int]
    drom_map: tuple[int, int]
    memory_map: MemoryMap
    flash_freqs: dict[str, int]
    mmu_page_sizes: tuple[int, ...]
    secure_boot_v1: bool
    secure_boot_v2: tuple[str, ...]
    max_signatures: int
    flash_encryption: str
    flash_encryption_key_bits: tuple[int, ...]
    encrypted_write_align: int
    riscv_march: str | None

    @property
    def default_mmu_page_size(self) -> int:
        # 64 KiB on every chip (esptool's IROM_ALIGN), even where larger pages exist (ESP32-S31).
        return 64 * KB if 64 * KB in self.mmu_page_sizes else self.mmu_page_sizes[-1]

    @property
    def configurable_mmu(self) -> bool:
        return len(self.mmu_page_sizes) > 1

    def is_flash_address(self, addr: int) -> bool:
        """True where the address lies in the flash-mapped IROM or DROM window."""
        return self.irom_map[0] <= addr < self.irom_map[1] or self.drom_map[0] <= addr < self.drom_map[1]

    def memory_types(self, addr: int) -> list[str]:
        """Names of every memory region containing ``addr`` (in table order)."""
        return [name for start, end, name in self.memory_map if start <= addr < end]


CHIPS: dict[str, Chip] = {
    c.name: c
    for c in (
        Chip(
            "esp32", "ESP32", 0, "xtensa", 0x1000,
            irom_map=(0x400D0000, 0x40400000), drom_map=(0x3F400000, 0x3F800000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x3F400000, 0x3F800000, "DROM"),
                (0x3F800000, 0x3FC00000, "EXTRAM_DATA"), (0x3FF80000, 0x3FF82000, "RTC_DRAM"),
                (0x3FF90000, 0x40000000, "BYTE_ACCESSIBLE"), (0x3FFAE000, 0x40000000, "DRAM"),
                (0x3FFE0000, 0x3FFFFFFC, "DIRAM_DRAM"), (0x40000000, 0x40070000, "IROM"),
                (0x40070000, 0x40078000, "CACHE_PRO"), (0x40078000, 0x40080000, "CACHE_APP"),
                (0x40080000, 0x400A0000, "IRAM"), (0x400A0000, 0x400BFFFC, "DIRAM_IRAM"),
                (0x400C0000, 0x400C2000, "RTC_IRAM"), (0x400D0000, 0x40400000, "IROM"),
                (0x50000000, 0x50002000, "RTC_DATA"),
            ),
            flash_freqs=_FREQ_STD,
            secure_boot_v1=True, secure_boot_v2=("rsa3072",), max_signatures=1,
            flash_encryption="esp32-aes", flash_encryption_key_bits=(256, 192),
            encrypted_write_align=32,
        ),
        Chip(
            "esp32s2", "ESP32-S2", 2, "xtensa", 0x1000,
            irom_map=(0x40080000, 0x40B80000), drom_map=(0x3F000000, 0x3F3F0000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x3F000000, 0x3FF80000, "DROM"),
                (0x3F500000, 0x3FF80000, "EXTRAM_DATA"), (0x3FF9E000, 0x3FFA0000, "RTC_DRAM"),
                (0x3FF9E000, 0x40000000, "BYTE_ACCESSIBLE"), (0x3FF9E000, 0x40072000, "MEM_INTERNAL"),
                (0x3FFB0000, 0x40000000, "DRAM"), (0x40000000, 0x4001A100, "IROM_MASK"),
                (0x40020000, 0x40070000, "IRAM"), (0x40070000, 0x40072000, "RTC_IRAM"),
                (0x40080000, 0x40800000, "IROM"), (0x50000000, 0x50002000, "RTC_DATA"),
            ),
            flash_freqs=_FREQ_STD, flash_encryption_key_bits=(256, 512),
        ),
        Chip(
            "esp32s3", "ESP32-S3", 9, "xtensa", 0x0,
            irom_map=(0x42000000, 0x44000000), drom_map=(0x3C000000, 0x3E000000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x3C000000, 0x3D000000, "DROM"),
                (0x3D000000, 0x3E000000, "EXTRAM_DATA"), (0x600FE000, 0x60100000, "RTC_DRAM"),
                (0x3FC88000, 0x3FD00000, "BYTE_ACCESSIBLE"), (0x3FC88000, 0x403E2000, "MEM_INTERNAL"),
                (0x3FC88000, 0x3FD00000, "DRAM"), (0x40000000, 0x4001A100, "IROM_MASK"),
                (0x40370000, 0x403E0000, "IRAM"), (0x600FE000, 0x60100000, "RTC_IRAM"),
                (0x42000000, 0x42800000, "IROM"), (0x50000000, 0x50002000, "RTC_DATA"),
            ),
            flash_freqs=_FREQ_STD, flash_encryption_key_bits=(256, 512),
        ),
        Chip(
            "esp32c2", "ESP32-C2", 12, "riscv", 0x0,
            irom_map=(0x42000000, 0x42400000), drom_map=(0x3C000000, 0x3C400000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x3C000000, 0x3C400000, "DROM"),
                (0x3FCA0000, 0x3FCE0000, "DRAM"), (0x3FC88000, 0x3FD00000, "BYTE_ACCESSIBLE"),
                (0x3FF00000, 0x3FF50000, "DROM_MASK"), (0x40000000, 0x40090000, "IROM_MASK"),
                (0x42000000, 0x42400000, "IROM"), (0x4037C000, 0x403C0000, "IRAM"),
            ),
            flash_freqs={"60m": 0xF, "30m": 0x0, "20m": 0x1, "15m": 0x2},
            mmu_page_sizes=(16 * KB, 32 * KB, 64 * KB),
            secure_boot_v2=("ecdsa192", "ecdsa256"), max_signatures=1,
            # The C2 has 128 eFuse key bits: a 16-byte key is SHA-256'd into XTS-AES-128.
            flash_encryption_key_bits=(128, 256),
            riscv_march="rv32imc",
        ),
        Chip(
            "esp32c3", "ESP32-C3", 5, "riscv", 0x0,
            irom_map=(0x42000000, 0x42800000), drom_map=(0x3C000000, 0x3C800000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x3C000000, 0x3C800000, "DROM"),
                (0x3FC80000, 0x3FCE0000, "DRAM"), (0x3FC88000, 0x3FD00000, "BYTE_ACCESSIBLE"),
                (0x3FF00000, 0x3FF20000, "DROM_MASK"), (0x40000000, 0x40060000, "IROM_MASK"),
                (0x42000000, 0x42800000, "IROM"), (0x4037C000, 0x403E0000, "IRAM"),
                (0x50000000, 0x50002000, "RTC_IRAM"), (0x50000000, 0x50002000, "RTC_DRAM"),
                (0x600FE000, 0x60100000, "MEM_INTERNAL2"),
            ),
            flash_freqs=_FREQ_STD, riscv_march="rv32imc",
        ),
        Chip(
            "esp32c6", "ESP32-C6", 13, "riscv", 0x0,
            irom_map=(0x42000000, 0x42800000), drom_map=(0x42800000, 0x43000000),
            memory_map=_RISCV_MAP_C6,
            # The C6 ROM misreads the 80 MHz code, so esptool writes 0 (40m) for it.
            flash_freqs={"80m": 0x0, "40m": 0x0, "20m": 0x2},
            mmu_page_sizes=(8 * KB, 16 * KB, 32 * KB, 64 * KB),
            secure_boot_v2=("rsa3072", "ecdsa192", "ecdsa256"),
            riscv_march="rv32imac",
        ),
        Chip(
            "esp32h2", "ESP32-H2", 16, "riscv", 0x0,
            irom_map=(0x42000000, 0x42800000), drom_map=(0x42800000, 0x43000000),
            memory_map=_RISCV_MAP_C6,
            flash_freqs=_FREQ_48,
            mmu_page_sizes=(8 * KB, 16 * KB, 32 * KB, 64 * KB),
            secure_boot_v2=("rsa3072", "ecdsa192", "ecdsa256"),
            riscv_march="rv32imac",
        ),
        Chip(
            "esp32c5", "ESP32-C5", 23, "riscv", 0x2000,
            irom_map=(0x42000000, 0x44000000), drom_map=(0x42000000, 0x44000000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x42000000, 0x44000000, "DROM"),
                (0x40800000, 0x40860000, "DRAM"), (0x40800000, 0x40860000, "BYTE_ACCESSIBLE"),
                (0x4003A000, 0x40040000, "DROM_MASK"), (0x40000000, 0x4003A000, "IROM_MASK"),
                (0x42000000, 0x44000000, "IROM"), (0x40800000, 0x40860000, "IRAM"),
                (0x50000000, 0x50004000, "RTC_IRAM"), (0x50000000, 0x50004000, "RTC_DRAM"),
                (0x600FE000, 0x60100000, "MEM_INTERNAL2"),
            ),
            flash_freqs=_FREQ_NO26,
            secure_boot_v2=("rsa3072", "ecdsa256", "ecdsa384"),
            flash_encryption_key_bits=(256, 512),
            riscv_march="rv32imac",
        ),
        Chip(
            "esp32c61", "ESP32-C61", 20, "riscv", 0x0,
            irom_map=(0x42000000, 0x42800000), drom_map=(0x42800000, 0x43000000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x42000000, 0x44000000, "DROM"),
                (0x40800000, 0x40860000, "DRAM"), (0x40800000, 0x40860000, "BYTE_ACCESSIBLE"),
                (0x4004AC00, 0x40050000, "DROM_MASK"), (0x40000000, 0x4004AC00, "IROM_MASK"),
                (0x42000000, 0x44000000, "IROM"), (0x40800000, 0x40860000, "IRAM"),
                (0x50000000, 0x50004000, "RTC_IRAM"), (0x50000000, 0x50004000, "RTC_DRAM"),
                (0x600FE000, 0x60100000, "MEM_INTERNAL2"),
            ),
            flash_freqs=_FREQ_NO26,
            mmu_page_sizes=(8 * KB, 16 * KB, 32 * KB, 64 * KB),
            secure_boot_v2=("ecdsa256", "ecdsa384"),
            riscv_march="rv32imac",
        ),
        Chip(
            "esp32p4", "ESP32-P4", 18, "riscv", 0x2000,
            irom_map=(0x40000000, 0x4C000000), drom_map=(0x40000000, 0x4C000000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x40000000, 0x4C000000, "DROM"),
                (0x4FF00000, 0x4FFA0000, "DRAM"), (0x4FF00000, 0x4FFA0000, "BYTE_ACCESSIBLE"),
                (0x4FC00000, 0x4FC20000, "DROM_MASK"), (0x4FC00000, 0x4FC20000, "IROM_MASK"),
                (0x40000000, 0x4C000000, "IROM"), (0x4FF00000, 0x4FFA0000, "IRAM"),
                (0x50108000, 0x50110000, "RTC_IRAM"), (0x50108000, 0x50110000, "RTC_DRAM"),
                (0x600FE000, 0x60100000, "MEM_INTERNAL2"),
            ),
            flash_freqs=_FREQ_STD,
            secure_boot_v2=("rsa3072", "ecdsa192", "ecdsa256"),
            flash_encryption_key_bits=(256, 512),
            riscv_march="rv32imafc",
        ),
        # The chips below: image values as esptool 5.6.0 has them (a test compares); Secure
        # Boot schemes and key sizes from ESP-IDF's soc_caps.h (H4) or, where not yet
        # published, from the eFuse key purposes esptool lists (XTS_AES_256 -> 512-bit keys,
        # ECDSA P-384 purposes -> ecdsa384).
        Chip(
            "esp32h21", "ESP32-H21", 25, "riscv", 0x0,
            irom_map=(0x42000000, 0x43000000), drom_map=(0x42000000, 0x43000000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x42000000, 0x43000000, "DROM"),
                (0x40800000, 0x40850000, "DRAM"), (0x40800000, 0x40850000, "BYTE_ACCESSIBLE"),
                (0x40000000, 0x40020000, "DROM_MASK"), (0x40000000, 0x40020000, "IROM_MASK"),
                (0x42000000, 0x43000000, "IROM"), (0x40800000, 0x40850000, "IRAM"),
                (0x50000000, 0x50001000, "RTC_IRAM"), (0x50000000, 0x50001000, "RTC_DRAM"),
                (0x40800000, 0x40850000, "MEM_INTERNAL"),
            ),
            flash_freqs=_FREQ_48_24,
            mmu_page_sizes=(8 * KB, 16 * KB, 32 * KB, 64 * KB),
            secure_boot_v2=("rsa3072", "ecdsa192", "ecdsa256"),
            riscv_march="rv32imac",
        ),
        Chip(
            "esp32h4", "ESP32-H4", 28, "riscv", 0x2000,
            irom_map=(0x42000000, 0x44000000), drom_map=(0x42000000, 0x44000000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x42000000, 0x44000000, "DROM"),
                (0x40810000, 0x40860000, "DRAM"), (0x40810000, 0x40860000, "BYTE_ACCESSIBLE"),
                (0x40000000, 0x40020000, "DROM_MASK"), (0x40000000, 0x40020000, "IROM_MASK"),
                (0x42000000, 0x44000000, "IROM"), (0x40810000, 0x40860000, "IRAM"),
                (0x40810000, 0x40860000, "MEM_INTERNAL"),
            ),
            flash_freqs=_FREQ_48_24,
            mmu_page_sizes=(8 * KB, 16 * KB, 32 * KB, 64 * KB),
            secure_boot_v2=("rsa3072", "ecdsa192", "ecdsa256"),
            riscv_march="rv32imafc",
        ),
        Chip(
            "esp32s31", "ESP32-S31", 32, "riscv", 0x2000,
            irom_map=(0x40000000, 0x54000000), drom_map=(0x40000000, 0x54000000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x40000000, 0x54000000, "DROM"),
                (0x2F000000, 0x2F080000, "DRAM"), (0x2F000000, 0x2F080000, "BYTE_ACCESSIBLE"),
                (0x2F800000, 0x2F850000, "DROM_MASK"), (0x2F800000, 0x2F850000, "IROM_MASK"),
                (0x40000000, 0x54000000, "IROM"), (0x2F000000, 0x2F080000, "IRAM"),
                (0x2E000000, 0x2E008000, "RTC_IRAM"), (0x2E000000, 0x2E008000, "RTC_DRAM"),
            ),
            flash_freqs=_FREQ_NO26,
            mmu_page_sizes=(32 * KB, 64 * KB, 128 * KB, 256 * KB),
            secure_boot_v2=("rsa3072", "ecdsa256", "ecdsa384"),
            flash_encryption_key_bits=(256, 512),
            riscv_march="rv32imafc",
        ),
        Chip(
            # esptool derives its ESP32-E22 class from the ESP32's (Xtensa).
            "esp32e22", "ESP32-E22", 31, "xtensa", 0x0,
            irom_map=(0x3C000000, 0x40000000), drom_map=(0x3C000000, 0x40000000),
            memory_map=(
                (0x0, 0x10000, "PADDING"), (0x3C000000, 0x40000000, "DROM"),
                (0x31000000, 0x31200000, "DRAM"), (0x31000000, 0x31200000, "BYTE_ACCESSIBLE"),
                (0x30000000, 0x30120000, "DROM_MASK"), (0x30000000, 0x30120000, "IROM_MASK"),
                (0x3C000000, 0x40000000, "IROM"), (0x30FE0000, 0x31200000, "IRAM"),
                (0xC0000000, 0xC0008000, "RTC_IRAM"), (0xC0000000, 0xC0008000, "RTC_DRAM"),
            ),
            flash_freqs=_FREQ_STD,
            secure_boot_v2=("rsa3072", "ecdsa256"),
            flash_encryption_key_bits=(256, 512),
        ),
    )
}

CHIPS_BY_ID: dict[int, Chip] = {c.image_chip_id: c for c in CHIPS.values()}


def get_chip(name: str) -> Chip:
    """Look a chip up by its esptool name (``esp32c3``, ``ESP32-C3`` also accepted)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key in CHIPS:
        return CHIPS[key]
    raise EspSecureError(f"unknown chip {name!r}; known chips: {', '.join(CHIPS)}")


def chip_by_image_id(chip_id: int) -> Chip | None:
    """The chip an image header's chip id names, or None when no chip has it."""
    return CHIPS_BY_ID.get(chip_id)
