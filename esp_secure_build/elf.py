"""Reading the parts of an ELF file that an ESP image is made from (pyelftools)."""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from .errors import EspSecureError

EM_XTENSA = 0x5E
EM_RISCV = 0xF3
MACHINE_ARCH = {EM_XTENSA: "xtensa", EM_RISCV: "riscv"}

# Section types whose bytes are loaded (esptool takes exactly these).
_PROG_TYPES = {"SHT_PROGBITS", "SHT_INIT_ARRAY", "SHT_FINI_ARRAY", "SHT_PREINIT_ARRAY"}


@dataclass
class Section:
    """A loadable piece of the ELF: a section, or a PT_LOAD segment (named "PHDR")."""

    name: str
    addr: int
    data: bytes
    align: int = 4


@dataclass
class ElfImage:
    """What elf2image needs from an ELF file."""

    path: str
    entry: int
    machine: int
    sections: list[Section]
    segments: list[Section]
    sha256: bytes

    @property
    def arch(self) -> str:
        return MACHINE_ARCH[self.machine]

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)


def read_elf(path: str | os.PathLike[str], data: bytes | None = None) -> ElfImage:
    """Parse an ESP firmware ELF; any defect becomes an :class:`EspSecureError` naming the file."""
    path = os.fspath(path)
    if data is None:
        from .fileio import read_bytes

        data = read_bytes(path, "ELF file")
    try:
        return _parse(path, data)
    except EspSecureError:
        raise
    except (ELFError, struct.error, ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError, AttributeError) as exc:
        raise EspSecureError(f"not a valid ELF file ({exc or type(exc).__name__})", path) from None


def _parse(path: str, data: bytes) -> ElfImage:
    if len(data) < 52 or data[:4] != b"\x7fELF":
        raise EspSecureError("not an ELF file (bad magic or shorter than an ELF header)", path)
    if data[4] != 1:
        raise EspSecureError("is a 64-bit ELF; ESP chips need a 32-bit ELF (check -march/-mabi)", path)
    if data[5] != 1:
        raise EspSecureError("is a big-endian ELF; ESP chips are little-endian", path)
    elf = ELFFile(io.BytesIO(data))
    machine = struct.unpack_from("<H", data, 18)[0]
    if machine not in MACHINE_ARCH:
        raise EspSecureError(f"is not an Xtensa or RISC-V ELF (e_machine {machine:#06x})", path)
    if elf["e_shentsize"] != 0x28:
        raise EspSecureError(f"has section header entries of {elf['e_shentsize']:#x} bytes, not 0x28", path)
    if elf.num_sections() == 0:
        raise EspSecureError("has no section headers", path)
    sh_end = elf["e_shoff"] + elf.num_sections() * 0x28
    if sh_end > len(data):
        raise EspSecureError("section headers extend past the end of the file (truncated ELF?)", path)

    sections: list[Section] = []
    for sec in elf.iter_sections():
        hdr = sec.header
        if hdr["sh_addr"] == 0 or hdr["sh_size"] == 0 or hdr["sh_type"] not in _PROG_TYPES:
            continue
        sections.append(
            Section(sec.name, hdr["sh_addr"], _slice(data, hdr["sh_offset"], hdr["sh_size"], sec.name, path), hdr["sh_addralign"])
        )

    segments: list[Section] = []
    if elf.num_segments():
        ph_end = elf["e_phoff"] + elf.num_segments() * elf["e_phentsize"]
        if ph_end > len(data):
            raise EspSecureError("program headers extend past the end of the file (truncated ELF?)", path)
        for seg in elf.iter_segments():
            hdr = seg.header
            if hdr["p_type"] != "PT_LOAD" or hdr["p_paddr"] == 0 or hdr["p_filesz"] == 0:
                continue
            segments.append(
                Section("PHDR", hdr["p_paddr"], _slice(data, hdr["p_offset"], hdr["p_filesz"], "PT_LOAD", path), hdr["p_align"])
            )

    return ElfImage(
        path=path,
        entry=elf["e_entry"],
        machine=machine,
        sections=sections,
        segments=segments,
        sha256=hashlib.sha256(data).digest(),
    )


def _slice(data: bytes, offset: int, size: int, what: str, path: str) -> bytes:
    if offset + size > len(data):
        raise EspSecureError(f"{what} extends past the end of the file (truncated ELF?)", path)
    return data[offset : offset + size]


def symbol_table(path: str | os.PathLike[str]) -> dict[str, int]:
    """Name -> address of every defined symbol (used by tests and the build summary)."""
    from .fileio import read_bytes

    data = read_bytes(path, "ELF file")
    try:
        elf = ELFFile(io.BytesIO(data))
        table = elf.get_section_by_name(".symtab")
        if table is None:
            return {}
        return {s.name: s["st_value"] for s in table.iter_symbols() if s.name and s["st_shndx"] != "SHN_UNDEF"}
    except (ELFError, struct.error, ValueError, IndexError) as exc:
        raise EspSecureError(f"not a valid ELF file ({exc})", path) from None
