"""Our struct-based ELF reader agrees with pyelftools on every ELF we have."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import VECTORS
from elftools.elf.elffile import ELFFile

from esp_secure_build.elf import read_elf

ELFS = sorted(VECTORS.glob("esptool/**/*.elf"))


def _pyelftools_view(path: Path) -> tuple[list[tuple], list[tuple], int, int]:
    elf = ELFFile(io.BytesIO(path.read_bytes()))
    prog = {"SHT_PROGBITS", "SHT_INIT_ARRAY", "SHT_FINI_ARRAY", "SHT_PREINIT_ARRAY"}
    sections = [
        (s.name, s["sh_addr"], s.data(), s["sh_addralign"])
        for s in elf.iter_sections()
        if s["sh_addr"] and s["sh_size"] and s["sh_type"] in prog
    ]
    segments = [
        ("PHDR", p["p_paddr"], p.data(), p["p_align"])
        for p in elf.iter_segments()
        if p["p_type"] == "PT_LOAD" and p["p_paddr"] and p["p_filesz"]
    ]
    return sections, segments, elf["e_entry"], elf["e_machine"] == "EM_XTENSA"


@pytest.mark.parametrize("path", ELFS, ids=[p.name for p in ELFS])
def test_reader_matches_pyelftools(path: Path) -> None:
    ours = read_elf(path)
    sections, segments, entry, xtensa = _pyelftools_view(path)
    assert [(s.name, s.addr, s.data, s.align) for s in ours.sections] == sections
    assert [(s.name, s.addr, s.data, s.align) for s in ours.segments] == segments
    assert ours.entry == entry and (ours.arch == "xtensa") == xtensa


def test_sample_elfs_match_pyelftools(tmp_path: Path) -> None:
    from sconsutil import copy_sample, scons

    project = copy_sample(tmp_path)
    assert scons(project, "release").returncode == 0
    for name in ("app", "bootloader"):
        path = project / f"build/esp32c3/{name}.elf"
        ours = read_elf(path)
        sections, segments, entry, _ = _pyelftools_view(path)
        assert [(s.name, s.addr, s.data) for s in ours.sections] == [s[:3] for s in sections]
        assert [(s.addr, s.data) for s in ours.segments] == [s[1:3] for s in segments]
        assert ours.entry == entry
