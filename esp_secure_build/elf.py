"""Reading the parts of an ELF file that an ESP image is made from.

The image path reads the ELF header, section headers and program headers with
``struct``: importing pyelftools costs 25-35 ms, a third of a whole esptool run,
and these three tables are all elf2image needs. pyelftools reads symbol tables
(:func:`symbol_table`), and the tests check this reader against it.
"""

from __future__ import annotations

import hashlib
import os
import struct

from .errors import EspSecureError

EM_XTENSA = 0x5E
EM_RISCV = 0xF3
MACHINE_ARCH = {EM_XTENSA: "xtensa", EM_RISCV: "riscv"}

SHT_PROGBITS, SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_PREINIT_ARRAY = 1, 14, 15, 16
# Section types whose bytes are loaded (esptool takes exactly these).
_PROG_TYPES = {SHT_PROGBITS, SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_PREINIT_ARRAY}
PT_LOAD = 1

_EHDR = struct.Struct("<16sHHIIIIIHHHHHH")
_SHDR = struct.Struct("<IIIIIIIIII")
_PHDR = struct.Struct("<IIIIIIII")


class Section:
    """A loadable piece of the ELF: a section, or a PT_LOAD segment (named "PHDR")."""

    __slots__ = ("addr", "align", "data", "name")

    def __init__(self, name: str, addr: int, data: bytes, align: int = 4):
        self.name, self.addr, self.data, self.align = name, addr, data, align

    def __repr__(self) -> str:
        return f"Section({self.name!r}, {self.addr:#x}, {len(self.data)} bytes)"


class ElfImage:
    """What elf2image needs from an ELF file: entry point, machine, sections, segments, SHA-256."""

    __slots__ = ("entry", "machine", "path", "sections", "segments", "sha256")

    def __init__(self, path: str, entry: int, machine: int, sections: list[Section], segments: list[Section], sha256: bytes):
        self.path, self.entry, self.machine = path, entry, machine
        self.sections, self.segments, self.sha256 = sections, segments, sha256

    @property
    def arch(self) -> str:
        return MACHINE_ARCH[self.machine]

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)


def read_elf(path: str | os.PathLike[str], data: bytes | None = None) -> ElfImage:
    """Parse an ESP firmware ELF; any defect becomes an :class:`EspSecureError` naming the file."""
    path = os.fspath(path)
    if data is None:
        from .fileio import MAX_ELF_SIZE, read_bytes

        data = read_bytes(path, "ELF file", MAX_ELF_SIZE)
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF":
        raise EspSecureError("not an ELF file (bad magic or shorter than an ELF header)", path)
    if data[4] != 1:
        raise EspSecureError("is a 64-bit ELF; ESP chips need a 32-bit ELF (check -march/-mabi)", path)
    if data[5] != 1:
        raise EspSecureError("is a big-endian ELF; ESP chips are little-endian", path)
    (_ident, _type, machine, _version, entry, phoff, shoff, _flags, _ehsize,
     phentsize, phnum, shentsize, shnum, shstrndx) = _EHDR.unpack_from(data)  # fmt: skip
    if machine not in MACHINE_ARCH:
        raise EspSecureError(f"is not an Xtensa or RISC-V ELF (e_machine {machine:#06x})", path)
    if shentsize != _SHDR.size:
        raise EspSecureError(f"has section header entries of {shentsize:#x} bytes, not 0x28", path)
    if shnum == 0:
        raise EspSecureError("has no section headers", path)
    if shoff + shnum * _SHDR.size > len(data):
        raise EspSecureError("section headers extend past the end of the file (truncated ELF?)", path)
    if shstrndx >= shnum:
        raise EspSecureError(f"names a section-name table ({shstrndx}) that does not exist", path)
    headers = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
    strtab = headers[shstrndx]
    names = _slice(data, strtab[4], strtab[5], "the section-name table", path)

    sections: list[Section] = []
    for name_off, sh_type, _fl, addr, offset, size, _link, _info, align, _es in headers:
        if addr == 0 or size == 0 or sh_type not in _PROG_TYPES:
            continue
        name = _name(names, name_off, path)
        sections.append(Section(name, addr, _slice(data, offset, size, f"section {name}", path), align))

    segments: list[Section] = []
    if phnum:
        if phentsize != _PHDR.size:
            raise EspSecureError(f"has program header entries of {phentsize:#x} bytes, not 0x20", path)
        if phoff + phnum * _PHDR.size > len(data):
            raise EspSecureError("program headers extend past the end of the file (truncated ELF?)", path)
        for i in range(phnum):
            p_type, offset, _vaddr, paddr, filesz, _memsz, _fl, align = _PHDR.unpack_from(data, phoff + i * _PHDR.size)
            if p_type == PT_LOAD and paddr and filesz:
                segments.append(Section("PHDR", paddr, _slice(data, offset, filesz, "a PT_LOAD segment", path), align))

    return ElfImage(path, entry, machine, sections, segments, hashlib.sha256(data).digest())


def _name(table: bytes, offset: int, path: str) -> str:
    end = table.find(b"\0", offset)
    if offset >= len(table) or end < 0:
        raise EspSecureError(f"has a section name outside the name table (offset {offset:#x})", path)
    return table[offset:end].decode("utf-8", "replace")


def _slice(data: bytes, offset: int, size: int, what: str, path: str) -> bytes:
    if offset + size > len(data):
        raise EspSecureError(f"{what} extends past the end of the file (truncated ELF?)", path)
    return data[offset : offset + size]


def symbol_table(path: str | os.PathLike[str]) -> dict[str, int]:
    """Name -> address of every defined symbol (pyelftools; used off the hot path)."""
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    from .fileio import MAX_ELF_SIZE, read_bytes

    data = read_bytes(path, "ELF file", MAX_ELF_SIZE)
    try:
        elf = ELFFile(io.BytesIO(data))
        table = elf.get_section_by_name(".symtab")
        if table is None:
            return {}
        return {s.name: s["st_value"] for s in table.iter_symbols() if s.name and s["st_shndx"] != "SHN_UNDEF"}
    except (ELFError, struct.error, ValueError, IndexError) as exc:
        raise EspSecureError(f"not a valid ELF file ({exc})", path) from None
