"""A minimal ELF32 little-endian writer, for tests that need many section layouts fast.

Real compiler output is tested elsewhere (the sample project); this writer lets
the tests cover layouts a linker script would rarely produce.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SHT_PROGBITS, SHT_STRTAB, SHT_NOBITS, SHT_INIT_ARRAY = 1, 3, 8, 14
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4


@dataclass
class Sec:
    name: str
    addr: int
    data: bytes = b""
    type: int = SHT_PROGBITS
    align: int = 4
    size: int | None = None  # for NOBITS
    lma: int | None = None  # program header paddr; defaults to addr


def write_elf(sections: list[Sec], machine: int, entry: int, with_phdrs: bool = True) -> bytes:
    names = b"\0"
    name_offs = []
    for s in sections:
        name_offs.append(len(names))
        names += s.name.encode() + b"\0"
    shstrtab_name = len(names)
    names += b".shstrtab\0"

    out = bytearray(52)
    phdrs = [s for s in sections if s.type != SHT_NOBITS] if with_phdrs else []
    phoff = len(out) if phdrs else 0
    out += bytes(32 * len(phdrs))
    data_offs = []
    for s in sections:
        out += bytes(-len(out) % 4)
        data_offs.append(len(out))
        if s.type != SHT_NOBITS:
            out += s.data
    str_off = len(out)
    out += names
    out += bytes(-len(out) % 4)
    shoff = len(out)
    shdrs = [bytes(40)]
    for s, noff, doff in zip(sections, name_offs, data_offs, strict=False):
        size = s.size if s.type == SHT_NOBITS else len(s.data)
        flags = SHF_ALLOC | (SHF_WRITE if s.type == SHT_NOBITS else 0)
        shdrs.append(struct.pack("<10I", noff, s.type, flags, s.addr, doff, size, 0, 0, s.align, 0))
    shdrs.append(struct.pack("<10I", shstrtab_name, SHT_STRTAB, 0, 0, str_off, len(names), 0, 0, 1, 0))
    for h in shdrs:
        out += h
    struct.pack_into(
        "<16sHHIIIIIHHHHHH", out, 0,
        b"\x7fELF\x01\x01\x01" + bytes(9), 2, machine, 1, entry, phoff, shoff, 0,
        52, 32, len(phdrs), 40, len(shdrs), len(shdrs) - 1,
    )  # fmt: skip
    for i, s in enumerate(phdrs):
        doff = data_offs[sections.index(s)]
        lma = s.addr if s.lma is None else s.lma
        struct.pack_into("<8I", out, phoff + 32 * i, 1, doff, s.addr, lma, len(s.data), len(s.data), 7, s.align)
    return bytes(out)
