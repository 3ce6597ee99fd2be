"""SCons builders EmbedTxtFile, EmbedFile, EspCaCert and CrtBundle: real builds with both cross compilers."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import REPO, assert_one_line_error
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from sconsutil import scons, steps
from test_certs_pki import NOW, der, key_pem, make_cert, make_chain, new_key, pem
from test_crt_bundle import BUNDLES, CASES, FORMATS, _expected, _files

from esp_secure_build import certs, crt_bundle
from esp_secure_build.elf import symbol_table
from esp_secure_build.image import read_image
from esp_secure_build.scons.certs import read_cert_summary

TOOLPATH = str(REPO / "site_scons" / "site_tools")
HEADER = (
    f"env = Environment(tools=[], toolpath=[{TOOLPATH!r}])\n"
    "env.Tool('esp_secure')\n"
    "env.Replace(**{k: v for k, v in ARGUMENTS.items() if k.startswith('ESP_')})\n"
)
# Code in IRAM, read-only data in the flash-mapped DROM window of each chip.
LAYOUT = {
    "esp32c3": (0x40380000, 0x3C000020, "EM_RISCV"),
    "esp32": (0x40080000, 0x3F400020, "EM_XTENSA"),
}
# key -> (file in the project, text?, the four symbols ESP-IDF gives it). The names follow
# CMake's MAKE_C_IDENTIFIER applied after the prefix/suffix is added (recorded in test_embed).
EMBEDDED = {
    "ca": ("build/ca_cert.pem", True, ("ca_cert_pem", "_binary_ca_cert_pem_start", "_binary_ca_cert_pem_end", "ca_cert_pem_length")),
    "blob": ("build/src/blob.bin", False, ("blob_bin", "_binary_blob_bin_start", "_binary_blob_bin_end", "blob_bin_length")),
    "note": (
        "build/src/1st-note.txt", True,
        ("_1st_note_txt", "_binary_1st_note_txt_start", "_binary_1st_note_txt_end", "_1st_note_txt_length"),
    ),
    "renamed": (
        "build/src/blob.bin", False,
        ("server_root_der", "_binary_server_root_der_start", "_binary_server_root_der_end", "server_root_der_length"),
    ),
    "bundle": (
        "build/x509_crt_bundle", False,
        ("x509_crt_bundle", "_binary_x509_crt_bundle_start", "_binary_x509_crt_bundle_end", "x509_crt_bundle_length"),
    ),
}  # fmt: skip


def _app_c() -> str:
    decls, uses = [], []
    for _, _, (name, start, end, length) in EMBEDDED.values():
        decls.append(f"extern const char {start}[], {end}[], {name}[];")
        decls.append(f"extern const unsigned int {length};")
        uses.append(f'  __asm__ volatile("" :: "r"({start}), "r"({end}), "r"({name}), "r"({length}));')
    body = "\n".join(uses)
    return (
        "\n".join(decls)
        + f'\n__attribute__((section(".iram1"))) void call_start_cpu0(void) {{\n{body}\n  for (;;) {{ }}\n}}\n'
    )


SCONSTRUCT = """
env.EspToolchain()
VariantDir('build/src', 'src', duplicate=False)
ca = env.EspCaCert('build/ca_cert.pem', 'certs/server_chain.pem')
objects = env.EmbedTxtFile(ca)  # the summary JSON is not embedded
objects += env.EmbedFile('build/src/blob.bin')
objects += env.EmbedTxtFile('build/src/1st-note.txt')
objects += env.EmbedFile('build/renamed.o', 'build/src/blob.bin', name='server root.der')
objects += env.EmbedFile(env.CrtBundle('build/x509_crt_bundle', ['certs/roots']))
elf = env.EspProgram('build/fw.elf', ['app.c'] + objects, 'app.ld')
env.EspImage('build/fw.bin', elf)
"""


def _chain_text(chain: list[x509.Certificate]) -> bytes:
    """Saved `openssl s_client -showcerts` output, with CRLF line ends."""
    text = b"CONNECTED(00000003)\n---\nCertificate chain\n 0 s:CN = localhost\n   i:CN = Test Intermediate CA\n"
    text += pem(chain[0]) + b" 1 s:CN = Test Intermediate CA\n" + pem(chain[1]) + b" 2 s:CN = Test Root CA\n"
    text += pem(chain[2]) + b"---\nServer certificate\nsubject=CN = localhost\n---\n"
    return text.replace(b"\n", b"\r\n")


def _firmware(folder: Path, chip: str) -> Path:
    code, rodata, _ = LAYOUT[chip]
    (folder / "certs" / "roots").mkdir(parents=True)
    (folder / "src").mkdir()
    (folder / "SConstruct").write_text(HEADER + f"env.Replace(ESP_CHIP={chip!r})\n" + SCONSTRUCT)
    (folder / "app.c").write_text(_app_c())
    (folder / "app.ld").write_text(
        "ENTRY(call_start_cpu0)\nSECTIONS {\n"
        f"  .iram0.text 0x{code:x} : {{ *(*literal*) *(.iram1 .iram1.* .text .text.*) }}\n"
        f"  .flash.rodata 0x{rodata:x} : {{ *(.rodata .rodata.*) }}\n"
        "  /DISCARD/ : { *(.xt.prop .xt.prop.* .xt.lit .xt.lit.* .xtensa.info .eh_frame .comment) }\n}\n"
    )
    (folder / "certs/server_chain.pem").write_bytes(_chain_text(make_chain()[0]))
    (folder / "src/blob.bin").write_bytes(bytes(range(256)) + b"\0\0tail")
    (folder / "src/1st-note.txt").write_text("hello\n")
    _fill_roots(folder, CASES[0])
    (folder / "certs/roots/README.txt").write_text("not a certificate: ignored in a folder\n")
    return folder


def _fill_roots(folder: Path, case: dict) -> None:
    """certs/roots holds the input files of a bundle vector (a folder gives the same bundle as its files)."""
    for old in (folder / "certs/roots").glob("*.*"):
        if old.suffix in (".pem", ".der"):
            old.unlink()
    for f in _files(case):
        shutil.copy(f, folder / "certs/roots" / f.name)


def _elf_bytes(elf: Path, addr: int, size: int) -> bytes:
    with open(elf, "rb") as fh:
        for section in ELFFile(fh).iter_sections():
            start = section["sh_addr"]
            if section["sh_type"] == "SHT_PROGBITS" and start <= addr and addr + size <= start + section["sh_size"]:
                return section.data()[addr - start : addr - start + size]
    raise AssertionError(f"0x{addr:x}+{size} is in no section of {elf}")


def _image_bytes(image: bytes, addr: int, size: int) -> bytes:
    for seg in read_image(image).segments:
        if seg.addr <= addr and addr + size <= seg.addr + len(seg.data):
            return seg.data[addr - seg.addr : addr - seg.addr + size]
    raise AssertionError(f"0x{addr:x}+{size} is in no image segment")


def _expected_contents(folder: Path, bundle_case: dict) -> dict[str, bytes]:
    chain = x509.load_pem_x509_certificates((folder / "certs/server_chain.pem").read_bytes())
    return {
        "ca": chain[-1].public_bytes(serialization.Encoding.PEM),  # the root, as cryptography writes PEM
        "blob": (folder / "src/blob.bin").read_bytes(),
        "renamed": (folder / "src/blob.bin").read_bytes(),
        "note": (folder / "src/1st-note.txt").read_bytes(),
        "bundle": _expected(bundle_case, "expected"),  # made by ESP-IDF's gen_crt_bundle.py
    }


def _check_firmware(folder: Path, chip: str, bundle_case: dict = CASES[0]) -> None:
    elf = folder / "build/fw.elf"
    image = (folder / "build/fw.bin").read_bytes()
    table = symbol_table(elf)
    with open(elf, "rb") as fh:
        assert ELFFile(fh)["e_machine"] == LAYOUT[chip][2]
    for key, data in _expected_contents(folder, bundle_case).items():
        _, text, (name, start_sym, end_sym, length_sym) = EMBEDDED[key]
        start, end = table[start_sym], table[end_sym]
        stored = data + (b"\0" if text else b"")
        assert table[name] == start
        assert end - start == len(stored), key
        assert _elf_bytes(elf, start, len(stored)) == stored, key
        (length,) = struct.unpack("<I", _elf_bytes(elf, table[length_sym], 4))
        assert length == len(data), key
        assert _image_bytes(image, start, len(stored)) == stored, key


@pytest.mark.parametrize("chip", sorted(LAYOUT))
def test_embedded_files_in_elf_and_image(tmp_path: Path, chip: str) -> None:
    folder = _firmware(tmp_path / "fw", chip)
    proc = scons(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    _check_firmware(folder, chip)
    # Read-only data: the section is allocated, neither writable nor code, as ESP-IDF's.
    with open(folder / "build/ca_cert.pem.o", "rb") as fh:
        section = ELFFile(fh).get_section_by_name(".rodata.embedded")
        flags = section["sh_flags"]
    assert flags & SH_FLAGS.SHF_ALLOC and not flags & (SH_FLAGS.SHF_WRITE | SH_FLAGS.SHF_EXECINSTR)
    # The check's summary for the build summary, next to the PEM.
    root = x509.load_pem_x509_certificates((folder / "certs/server_chain.pem").read_bytes())[-1]
    summary = read_cert_summary(folder / "build/ca_cert.pem.json")
    digest = hashlib.sha256(der(root)).hexdigest().upper()
    assert summary["certificates"] == [
        {
            "subject": root.subject.rfc4514_string(),
            "sha256": ":".join(digest[i : i + 2] for i in range(0, 64, 2)),
            "not_after": root.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
    ]
    assert summary["chain_length"] == 3 and summary["warnings"] == []
    assert not (folder / "build/ca_cert.pem.json.S").exists()
    # .incbin names the file by its absolute path, yet nothing of the project's location gets
    # into the ELF (its SHA-256 goes into app images): the same project elsewhere links the same.
    moved = tmp_path / "elsewhere" / "fw2"
    shutil.copytree(folder, moved, ignore=shutil.ignore_patterns("build", ".sconsign*"))
    assert scons(moved).returncode == 0
    assert (moved / "build/fw.elf").read_bytes() == (folder / "build/fw.elf").read_bytes()


def test_rebuild_chain(tmp_path: Path) -> None:
    folder = _firmware(tmp_path / "fw", "esp32c3")
    assert scons(folder).returncode == 0
    image = folder / "build/fw.bin"

    noop = scons(folder)
    assert noop.returncode == 0 and steps(noop) == []

    # Same size, other bytes: the .S (which records only the size) is the same, the object is not.
    blob = folder / "src/blob.bin"
    blob.write_bytes(blob.read_bytes()[::-1])
    proc = scons(folder)
    assert sorted(steps(proc)) == sorted([
        "EMBED build/src/blob.bin.S", "AS build/src/blob.bin.o", "EMBED build/renamed.S", "AS build/renamed.o",
        "LINK build/fw.elf", "ESP-IMAGE build/fw.bin",
    ])  # fmt: skip
    _check_firmware(folder, "esp32c3")

    # Whitespace-only edits of the certificate input: the normalised PEM, and so the firmware, stay the same.
    before = image.read_bytes()
    chain = folder / "certs/server_chain.pem"
    chain.write_bytes(chain.read_bytes().replace(b"\r\n", b"  \n").replace(b"-----BEGIN", b"\n\n-----BEGIN"))
    proc = scons(folder)
    assert proc.returncode == 0, proc.stderr
    assert steps(proc) == ["CA-CERT build/ca_cert.pem"]
    assert image.read_bytes() == before

    # Another server root: check, embed, assemble, link, image.
    chain.write_bytes(_chain_text(make_chain()[0]))
    proc = scons(folder)
    assert steps(proc) == [
        "CA-CERT build/ca_cert.pem", "EMBED build/ca_cert.pem.S", "AS build/ca_cert.pem.o",
        "LINK build/fw.elf", "ESP-IMAGE build/fw.bin",
    ]  # fmt: skip
    _check_firmware(folder, "esp32c3")

    # Certificates added to and removed from the bundle folder are picked up; other files are not sources.
    _fill_roots(folder, CASES[1])
    proc = scons(folder)
    assert steps(proc) == [
        "CRT-BUNDLE build/x509_crt_bundle", "EMBED build/x509_crt_bundle.S", "AS build/x509_crt_bundle.o",
        "LINK build/fw.elf", "ESP-IMAGE build/fw.bin",
    ]  # fmt: skip
    (folder / "certs/roots/README.txt").write_text("still not a certificate\n")
    assert steps(scons(folder)) == []
    _check_firmware(folder, "esp32c3", CASES[1])
    # A file in the folder is a dependency itself: re-packed, same bytes, nothing downstream.
    three = folder / "certs/roots/three-certs.pem"
    three.write_bytes(three.read_bytes().replace(b"\n", b"\r\n"))
    assert steps(scons(folder)) == ["CRT-BUNDLE build/x509_crt_bundle"]

    # Inline .byte data instead of .incbin: every embedded object is regenerated, the image is the same.
    before = image.read_bytes()
    proc = scons(folder, "ESP_EMBED_INLINE=1")
    assert proc.returncode == 0, proc.stderr
    assert sum(line.startswith("EMBED ") for line in steps(proc)) == 5, proc.stdout
    assert ".byte 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x0a, 0x00" in (folder / "build/src/1st-note.txt.S").read_text()
    assert image.read_bytes() == before


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_crt_bundle_vectors(tmp_path: Path, case: dict) -> None:
    """Files in the order gen_crt_bundle.py was given them, and their folder, in both formats."""
    folder = tmp_path / "p"
    shutil.copytree(BUNDLES / case["cwd"], folder / "input")
    names = [f.name for f in _files(case)]
    (folder / "SConstruct").write_text(
        HEADER
        + f"files = ['input/' + n for n in {names!r}]\n"
        + "env.CrtBundle('current', files)\n"
        + "env.CrtBundle('current_folder', 'input')\n"
        + "env.CrtBundle('legacy', files, ESP_CRT_BUNDLE_LEGACY=True)\n"
        + "env.CrtBundle('legacy_folder', ['input'], ESP_CRT_BUNDLE_LEGACY=True)\n"
    )
    proc = scons(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(steps(proc)) == [f"CRT-BUNDLE {n}" for n in ("current", "current_folder", "legacy", "legacy_folder")]
    for key, legacy in FORMATS:
        want = _expected(case, key)
        prefix = "legacy" if legacy else "current"
        assert (folder / prefix).read_bytes() == want
        assert (folder / f"{prefix}_folder").read_bytes() == want


def test_crt_bundle_filter_and_max_certs(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    files = _files(CASES[1])
    certificates = [c for f in files[:3] for c in certs.load_certificates(f)]  # 5 distinct
    text = "##\n## Bundle of CA Root Certificates\n##\n\n"
    for n, cert in enumerate(certificates):
        text += f"Root {n}\n======\n" + pem(cert).decode() + "\n"
    (folder / "cacrt_all.pem").write_text(text)
    (folder / "filter.csv").write_text("Owner,Common Name or Certificate Name\nX,Root 1\nY,Root 3\n")
    (folder / "SConstruct").write_text(
        HEADER
        + "env.CrtBundle('filtered', 'cacrt_all.pem', ESP_CRT_BUNDLE_FILTER='filter.csv')\n"
        + f"env.CrtBundle('all', {[str(f) for f in files]!r})\n"
    )
    proc = scons(folder)
    assert proc.returncode == 0, proc.stderr

    def subjects(path: Path) -> list[bytes]:
        return sorted(name for name, _ in crt_bundle.parse_bundle(path.read_bytes()))

    assert subjects(folder / "filtered") == sorted(certificates[i].subject.public_bytes() for i in (1, 3))
    # The CSV is a dependency: editing it rebuilds that bundle only.
    (folder / "filter.csv").write_text("Owner,Common Name or Certificate Name\nX,Root 2\n")
    proc = scons(folder)
    assert steps(proc) == ["CRT-BUNDLE filtered"]
    assert subjects(folder / "filtered") == [certificates[2].subject.public_bytes()]
    # Six certificates (one given twice) against a maximum of five: one line, no output.
    (folder / "all").unlink()
    proc = scons(folder, "all", "ESP_CRT_BUNDLE_MAX_CERTS=5")
    assert_one_line_error(proc, "6 certificates exceed the maximum of 5")
    assert not (folder / "all").exists()
    proc = scons(folder, "all", "ESP_CRT_BUNDLE_MAX_CERTS=6")
    assert proc.returncode == 0 and (folder / "all").read_bytes() == _expected(CASES[1], "expected")


def _ca_project(folder: Path, data: bytes, extra: str = "") -> Path:
    folder.mkdir()
    (folder / "server.pem").write_bytes(data)
    (folder / "SConstruct").write_text(HEADER + f"env.EspCaCert('out/ca_cert.pem', 'server.pem'{extra})\n")
    return folder


def _bad_inputs() -> dict[str, tuple[bytes, str, str]]:
    chain = make_chain()[0]
    expired = make_cert("Old CA", new_key(), not_before=NOW - timedelta(days=900), not_after=NOW - timedelta(days=1))
    future = make_cert("Future CA", new_key(), not_before=NOW + timedelta(days=30))
    return {
        "expired": (pem(expired), "expired on " + (NOW - timedelta(days=1)).strftime("%Y-%m-%d"), ""),
        "not-yet-valid": (der(future), "not yet valid", ""),
        "leaf-not-ca": (pem(chain[0]), "is not a CA", ""),
        "bundle-with-leaf": (
            pem(*chain),
            "certificate 1 of 3 (O=Test,CN=localhost) is not a CA",
            ", ESP_CERT_KEEP_BUNDLE=True",
        ),
        "out-of-order": (pem(chain[1], chain[0], chain[2]), "chain out of order", ""),
        "private-key": (key_pem(new_key()), "private key", ""),
        "no-certificate": (b"hello\n", "no certificate found", ""),
    }


BAD = _bad_inputs()


@pytest.mark.parametrize("kind", sorted(BAD))
def test_ca_cert_bad_input_is_one_line_and_no_output(tmp_path: Path, kind: str) -> None:
    data, needle, extra = BAD[kind]
    folder = _ca_project(tmp_path / "p", data, extra)
    proc = scons(folder)
    assert_one_line_error(proc, "server.pem", needle)
    assert not (folder / "out/ca_cert.pem").exists() and not (folder / "out/ca_cert.pem.json").exists()
    assert not list(folder.glob("out/*")) and not list(folder.glob("out/.*"))


def test_ca_cert_previous_output_removed_on_error(tmp_path: Path) -> None:
    root = make_chain()[0][2]
    folder = _ca_project(tmp_path / "p", pem(root))
    assert scons(folder).returncode == 0 and (folder / "out/ca_cert.pem").read_bytes() == pem(root)
    (folder / "server.pem").write_bytes(BAD["expired"][0])
    assert_one_line_error(scons(folder), "expired on")
    assert not (folder / "out/ca_cert.pem").exists() and not (folder / "out/ca_cert.pem.json").exists()


def test_ca_cert_horizon_warning(tmp_path: Path) -> None:
    end = NOW + timedelta(days=5 * 365)
    soon = make_cert("Short Lived CA", new_key(), not_after=end)
    folder = _ca_project(tmp_path / "p", der(soon))
    proc = scons(folder)
    assert proc.returncode == 0, proc.stderr
    date = end.strftime("%Y-%m-%d %H:%M:%S UTC")
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "warning" in warnings[0] and f"expires on {date}" in warnings[0], proc.stderr
    assert "10-year horizon" in warnings[0]
    summary = json.loads((folder / "out/ca_cert.pem.json").read_text())
    assert summary["warnings"] and date in summary["warnings"][0]
    assert (folder / "out/ca_cert.pem").read_bytes() == pem(soon)  # DER in, normalised PEM out
    # A shorter service life: only the check runs again, and it is quiet.
    proc = scons(folder, "ESP_CERT_HORIZON=4")
    assert proc.returncode == 0 and steps(proc) == ["CA-CERT out/ca_cert.pem"] and proc.stderr == ""
    assert json.loads((folder / "out/ca_cert.pem.json").read_text())["warnings"] == []


def test_ca_cert_keep_bundle(tmp_path: Path) -> None:
    roots = [make_cert(f"Root {n}", new_key()) for n in range(3)]
    messy = b"\r\n".join(line.rstrip() + b"   " for line in pem(*roots).splitlines())  # no final newline
    folder = _ca_project(tmp_path / "p", messy, ", ESP_CERT_KEEP_BUNDLE=True")
    proc = scons(folder)
    assert proc.returncode == 0, proc.stderr
    assert (folder / "out/ca_cert.pem").read_bytes() == pem(*roots)
    summary = json.loads((folder / "out/ca_cert.pem.json").read_text())
    assert [c["subject"] for c in summary["certificates"]] == [r.subject.rfc4514_string() for r in roots]
    # Without the switch the last one is the one to embed.
    (folder / "SConstruct").write_text(HEADER + "env.EspCaCert('out/ca_cert.pem', 'server.pem')\n")
    proc = scons(folder)
    assert steps(proc) == ["CA-CERT out/ca_cert.pem"]
    assert (folder / "out/ca_cert.pem").read_bytes() == pem(roots[-1])


def test_crt_bundle_checks_each_certificate(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    (folder / "roots").mkdir(parents=True)
    for f in _files(CASES[0]):
        shutil.copy(f, folder / "roots" / f.name)
    (folder / "roots/zz-leaf.pem").write_bytes(pem(make_chain()[0][0]))
    (folder / "SConstruct").write_text(HEADER + "env.CrtBundle('bundle', 'roots')\n")
    proc = scons(folder)
    assert_one_line_error(proc, "roots/zz-leaf.pem", "is not a CA")
    assert not (folder / "bundle").exists()
    # Switching the checks off packs whatever parses, as gen_crt_bundle.py does.
    proc = scons(folder, "ESP_CRT_BUNDLE_CHECK=0")
    assert proc.returncode == 0, proc.stderr
    assert len(crt_bundle.parse_bundle((folder / "bundle").read_bytes())) == 5


def test_scons_horizon_default_is_the_core_default() -> None:
    """The SCons layer keeps its own copy so that a build need not import the X.509 code."""
    from esp_secure_build import certs
    from esp_secure_build.scons import certs as scons_certs

    assert scons_certs.DEFAULT_HORIZON_YEARS == certs.DEFAULT_HORIZON_YEARS
    assert scons_certs.MAX_HORIZON_YEARS == certs.MAX_HORIZON_YEARS


@pytest.mark.parametrize("years", ["1000000", "-1", "nan", "inf"])
def test_absurd_horizon_is_one_line(tmp_path: Path, years: str) -> None:
    folder = _ca_project(tmp_path / "p", der(make_cert("Some CA", new_key())))
    assert_one_line_error(scons(folder, f"ESP_CERT_HORIZON={years}"), "ESP_CERT_HORIZON")
    assert not (folder / "out/ca_cert.pem").exists()
