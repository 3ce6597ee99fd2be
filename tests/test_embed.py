"""EMBED_FILES/EMBED_TXTFILES assembler source: names as CMake makes them, objects from both GNU assemblers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import VECTORS
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from esp_secure_build import embed
from esp_secure_build.errors import EspSecureError

# Toolchain prefix -> assembler flags for a 32-bit object like the chips use.
ASSEMBLERS = {
    "riscv64-unknown-elf": ["-march=rv32imc", "-mabi=ilp32"],
    "xtensa-lx106-elf": [],
}
NAMES = ["server_root_cert.pem", "1cert.pem", "a-b c.pem", "é.pem", "_x", "9", "a.b.c", "ca.crt~", "$x"]
# string(MAKE_C_IDENTIFIER) of each name and of "_binary_<name>_start", printed by cmake 3.25.1 (used
# when cmake is not installed; test_names_match_cmake re-derives them when it is).
CMAKE_3_25 = {
    "server_root_cert.pem": ("server_root_cert_pem", "_binary_server_root_cert_pem_start"),
    "1cert.pem": ("_1cert_pem", "_binary_1cert_pem_start"),
    "a-b c.pem": ("a_b_c_pem", "_binary_a_b_c_pem_start"),
    "é.pem": ("___pem", "_binary____pem_start"),
    "_x": ("_x", "_binary__x_start"),
    "9": ("_9", "_binary_9_start"),
    "a.b.c": ("a_b_c", "_binary_a_b_c_start"),
    "ca.crt~": ("ca_crt_", "_binary_ca_crt__start"),
    "$x": ("_x", "_binary__x_start"),
}


def _cmake_identifiers(tmp_path: Path, texts: list[str]) -> list[str]:
    script = tmp_path / "ident.cmake"
    body = "".join(f'string(MAKE_C_IDENTIFIER "{t.replace("$", "${dollar}")}" v)\nmessage("${{v}}")\n' for t in texts)
    script.write_text('set(dollar "$")\n' + body, encoding="utf-8")
    proc = subprocess.run(["cmake", "-P", script], capture_output=True, text=True, timeout=60, check=True)
    return proc.stderr.splitlines()


@pytest.mark.parametrize("name", NAMES)
def test_names_recorded_from_cmake(name: str) -> None:
    symbols = embed.symbols_for(Path("/some/dir") / name)
    assert (symbols.name, symbols.start) == CMAKE_3_25[name]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_names_match_cmake(tmp_path: Path) -> None:
    texts = []
    for name in NAMES:
        texts += [name, f"_binary_{name}_start", f"_binary_{name}_end", f"{name}_length"]
    got = [getattr(embed.symbols_for(n), f) for n in NAMES for f in ("name", "start", "end", "length")]
    assert got == _cmake_identifiers(tmp_path, texts)


def _assemble(prefix: str, source: str, tmp_path: Path, stem: str) -> Path:
    if shutil.which(f"{prefix}-as") is None:
        pytest.skip(f"{prefix}-as not installed")
    src = tmp_path / f"{stem}.s"
    src.write_text(source, encoding="utf-8")
    obj = tmp_path / f"{stem}.o"
    subprocess.run([f"{prefix}-as", *ASSEMBLERS[prefix], "-o", obj, src], check=True, capture_output=True, timeout=60)
    return obj


def _nm(prefix: str, obj: Path) -> dict[str, tuple[str, int]]:
    out = subprocess.run([f"{prefix}-nm", obj], check=True, capture_output=True, text=True, timeout=60).stdout
    result = {}
    for line in out.splitlines():
        value, kind, name = line.split()
        result[name] = (kind, int(value, 16))
    return result


def _payloads(tmp_path: Path) -> list[Path]:
    """A real PEM and a binary file with every byte value and an awkward name."""
    pem = next((VECTORS / "crt-bundle").glob("*/input/*.pem"))
    text = tmp_path / "server_root_cert.pem"
    text.write_bytes(pem.read_bytes())
    odd_dir = tmp_path / 'dir with "quotes" and \\'
    odd_dir.mkdir()
    binary = odd_dir / "1 key-blob.bin"
    binary.write_bytes(bytes(range(256)) * 3 + b"\x00tail")
    return [text, binary]


@pytest.mark.parametrize("inline", [False, True], ids=["incbin", "inline"])
@pytest.mark.parametrize("text", [True, False], ids=["txt", "bin"])
@pytest.mark.parametrize("prefix", list(ASSEMBLERS))
def test_assembled_object(prefix: str, text: bool, inline: bool, tmp_path: Path) -> None:
    for n, path in enumerate(_payloads(tmp_path)):
        data = path.read_bytes()
        obj = _assemble(prefix, embed.embed_asm(path, text=text, inline=inline), tmp_path, f"o{n}")
        sym = embed.symbols_for(path)
        table = _nm(prefix, obj)
        stored = data + (b"\0" if text else b"")
        # Four global read-only data symbols, nothing else global.
        assert {k for k, (kind, _) in table.items() if kind.isupper()} == {sym.name, sym.start, sym.end, sym.length}
        assert {kind for kind, _ in table.values()} == {"R"}
        assert table[sym.name][1] == table[sym.start][1] == 0
        assert table[sym.end][1] == len(stored)
        assert table[sym.length][1] == len(stored)
        with obj.open("rb") as fh:
            elf = ELFFile(fh)
            section = elf.get_section_by_name(".rodata.embedded")
            assert section["sh_flags"] & SH_FLAGS.SHF_ALLOC and not section["sh_flags"] & SH_FLAGS.SHF_WRITE
            assert section["sh_addralign"] == 1  # ESP-IDF's source sets no alignment
            content = section.data()
            assert not [s.name for s in elf.iter_sections() if s.name.startswith(".rela")]
        assert content[: len(stored)] == stored
        assert int.from_bytes(content[len(stored) : len(stored) + 4], "little") == len(data)
        assert len(content) == len(stored) + 4


def test_incbin_and_inline_agree(tmp_path: Path) -> None:
    path = _payloads(tmp_path)[0]
    inline = embed.embed_asm(path, text=True, inline=True)
    assert inline == embed.embed_asm_bytes(path.read_bytes(), path.name, text=True)
    assert ".incbin" not in inline and str(path) not in inline
    assert f'.incbin "{path.resolve()}"' in embed.embed_asm(path, text=True)


def test_variable_basename_and_errors(tmp_path: Path) -> None:
    assert embed.symbols_for("x/whatever.pem", name="server_cert").length == "server_cert_length"
    with pytest.raises(EspSecureError, match="not found"):
        embed.embed_asm(tmp_path / "missing.pem", text=True, inline=True)
    with pytest.raises(EspSecureError, match="cannot read"):
        embed.embed_asm(tmp_path / "missing.pem", text=True)
    with pytest.raises(EspSecureError, match="not a regular file"):
        embed.embed_asm(tmp_path, text=False)
    bad = tmp_path / "line\nbreak.pem"
    bad.write_bytes(b"x")
    with pytest.raises(EspSecureError, match="line break"):
        embed.embed_asm(bad, text=True)
    assert "0x78, 0x00" in embed.embed_asm(bad, text=True, inline=True)
