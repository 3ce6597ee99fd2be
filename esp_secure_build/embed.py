"""Any file as linker symbols, named the way ESP-IDF's EMBED_FILES/EMBED_TXTFILES name them.

ESP-IDF turns ``server_root_cert.pem`` into an assembler source
(``tools/cmake/scripts/data_file_embed_asm.cmake``) that defines, in section
``.rodata.embedded``:

* ``server_root_cert_pem`` and ``_binary_server_root_cert_pem_start`` at the data,
* ``_binary_server_root_cert_pem_end`` after it (after the NUL for a text file),
* ``server_root_cert_pem_length``: a ``.long`` holding the file's length
  (without the NUL).

Names come from CMake's ``string(MAKE_C_IDENTIFIER)``: every byte of the UTF-8
name that is not an ASCII letter, digit or ``_`` becomes ``_``, and a leading
digit gets a ``_`` in front. ESP-IDF sets no alignment (the section is
byte-aligned, so the length word may be unaligned) and no symbol type or size;
neither do we.

The data goes in either by ``.incbin`` of the absolute path (small source, fast
for big files; a build tool must then track the data file itself) or inline as
``.byte`` lines, as ESP-IDF does. Both assemble with the GNU assemblers for
RISC-V and Xtensa. This module only makes text: it runs no tool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import EspSecureError
from .fileio import PathLike, read_bytes

SECTION = ".rodata.embedded"
_IDENT_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def make_c_identifier(text: str) -> str:
    """CMake's ``string(MAKE_C_IDENTIFIER)``: one ``_`` per byte that is not [A-Za-z0-9_]."""
    raw = text.encode("utf-8", errors="surrogateescape")
    out = "".join(chr(b) if b in _IDENT_BYTES else "_" for b in raw)
    return "_" + out if out[:1].isdigit() else out


@dataclass(frozen=True)
class EmbedSymbols:
    """The four symbols one embedded file defines."""

    name: str
    start: str
    end: str
    length: str

    @classmethod
    def for_name(cls, varname: str) -> EmbedSymbols:
        """Symbols for a base name (the file name, or ESP-IDF's VARIABLE_BASENAME).

        Each is made an identifier after the prefix/suffix is added, as ESP-IDF does,
        so ``1.pem`` gives ``_1_pem`` but ``_binary_1_pem_start``.
        """
        if not varname:
            raise EspSecureError("empty name for an embedded file")
        return cls(
            make_c_identifier(varname),
            make_c_identifier(f"_binary_{varname}_start"),
            make_c_identifier(f"_binary_{varname}_end"),
            make_c_identifier(f"{varname}_length"),
        )


def symbols_for(path: PathLike, name: str | None = None) -> EmbedSymbols:
    """Symbols ESP-IDF gives the file at ``path`` (its base name), or ``name`` if given."""
    return EmbedSymbols.for_name(name if name is not None else Path(path).name)


def embed_asm(path: PathLike, *, text: bool, name: str | None = None, inline: bool = False) -> str:
    """Assembler source embedding the file at ``path``.

    ``text`` appends a NUL (EMBED_TXTFILES); ``inline`` writes the bytes as
    ``.byte`` lines instead of ``.incbin`` of the absolute path. The length
    is written as a number, as ESP-IDF does, so no relocation is needed (an
    ``end - start`` difference becomes an R_XTENSA_PDIFF32 relocation on Xtensa).
    """
    symbols = symbols_for(path, name)
    label = Path(path).name
    if inline:
        data = read_bytes(path, "file to embed")
        return _assemble(symbols, label, _byte_lines(data + (b"\0" if text else b"")), len(data), text)
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise EspSecureError(f"cannot read file to embed: {exc.strerror}", path) from None
    if not Path(path).is_file():
        raise EspSecureError("file to embed is not a regular file", path)
    body = f".incbin {_gas_string(str(Path(path).resolve()), path)}\n"
    if text:
        body += ".byte 0x00\n"
    return _assemble(symbols, label, body, size, text)


def embed_asm_bytes(data: bytes, name: str, *, text: bool) -> str:
    """Assembler source embedding ``data`` inline, with symbols derived from ``name``."""
    symbols = EmbedSymbols.for_name(name)
    return _assemble(symbols, name, _byte_lines(data + (b"\0" if text else b"")), len(data), text)


def _assemble(symbols: EmbedSymbols, label: str, body: str, length: int, text: bool) -> str:
    if length > 0xFFFFFFFF:
        raise EspSecureError(f"{label}: too big to embed ({length} bytes; the length symbol is 32 bits)")
    label = "".join(ch if ch.isprintable() else "?" for ch in label).replace("*/", "*_/")
    lines = [
        "/*",
        f" * Data converted from {label}",
        *([" * (null byte appended)"] if text else []),
        " */",
        ".data",
        f".section {SECTION}",
        "",
        f".global {symbols.name}",
        f"{symbols.name}:",
        "",
        f".global {symbols.start}",
        f"{symbols.start}: /* for objcopy compatibility */",
    ]
    tail = [
        "",
        f".global {symbols.end}",
        f"{symbols.end}: /* for objcopy compatibility */",
        "",
        f".global {symbols.length}",
        f"{symbols.length}:" + (" /* not including null byte */" if text else ""),
        f".long {length}",
        "",
    ]
    return "\n".join(lines) + "\n" + body + "\n".join(tail)


def _byte_lines(data: bytes) -> str:
    # 16 bytes a line, like ESP-IDF's generated source.
    return "".join(".byte " + ", ".join(f"0x{b:02x}" for b in data[i : i + 16]) + "\n" for i in range(0, len(data), 16))


def _gas_string(text: str, path: PathLike) -> str:
    """A GNU as string literal for a file name."""
    if any(ch in text for ch in "\n\r\0"):
        raise EspSecureError("file name with a line break or NUL cannot be embedded with .incbin", path)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
