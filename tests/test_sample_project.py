"""The sample firmware, built with the real cross compilers, against esptool."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from sconsutil import copy_sample, release_dir, scons

from esp_secure_build.elf import read_elf, symbol_table
from esp_secure_build.fileio import read_bytes
from esp_secure_build.image import read_image

HELPERS = Path(__file__).parent / "helpers"
CONFIGS = {"esp32c3": ("riscv", "80m"), "esp32c6": ("riscv", "80m"), "esp32": ("xtensa", "40m")}


@pytest.fixture(scope="module", params=list(CONFIGS))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    chip = request.param
    project = copy_sample(tmp_path_factory.mktemp(f"sample_{chip}"))
    proc = scons(project, "release", f"ESP_CHIP={chip}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return chip, project


def test_release_outputs(built: tuple[str, Path]) -> None:
    chip, project = built
    for name in ("bootloader", "app"):
        info = read_image((release_dir(project, chip) / f"{name}.bin").read_bytes())
        assert info.chip is not None and info.chip.name == chip
        assert info.checksum_valid and info.digest_valid
    elf = read_elf(project / f"build/{chip}/app.elf")
    assert elf.arch == CONFIGS[chip][0]


def test_app_descriptor_and_elf_sha(built: tuple[str, Path]) -> None:
    chip, project = built
    app = release_dir(project, chip) / "app.bin"
    elf_path = project / f"build/{chip}/app.elf"
    info = read_image(app.read_bytes())
    desc = info.app_desc
    assert desc is not None
    assert (desc.project_name, desc.version, desc.secure_version) == ("sample_project", "1.0.0", 1)
    assert desc.app_elf_sha256 == hashlib.sha256(elf_path.read_bytes()).digest()
    assert app.read_bytes()[0xB0 : 0xB0 + 32] == desc.app_elf_sha256
    # SOURCE_DATE_EPOCH=1764115200 is 2025-11-26 00:00:00 UTC
    assert (desc.date, desc.time) == ("Nov 26 2025", "00:00:00")
    boot = read_image((release_dir(project, chip) / "bootloader.bin").read_bytes()).bootloader_desc
    assert boot is not None and boot.version == 1 and boot.date_time == "Nov 26 2025 00:00:00"


def test_embedded_certificate_symbols(built: tuple[str, Path]) -> None:
    """The PEM sits, NUL-terminated, between the ESP-IDF symbols, in DROM of the image."""
    chip, project = built
    symbols = symbol_table(project / f"build/{chip}/app.elf")
    start, end = symbols["_binary_ca_cert_pem_start"], symbols["_binary_ca_cert_pem_end"]
    pem = (project / "src/ca_cert.pem").read_bytes()
    assert end - start == len(pem) + 1
    info = read_image((release_dir(project, chip) / "app.bin").read_bytes())
    seg = next(s for s in info.segments if s.addr <= start < s.addr + len(s.data))
    assert "DROM" in seg.memory_types
    assert seg.data[start - seg.addr : end - seg.addr] == pem + b"\0"
    # ESP-IDF's length symbol holds the size without the NUL, as a 32-bit word.
    length_at = symbols["ca_cert_pem_length"]
    seg = next(s for s in info.segments if s.addr <= length_at < s.addr + len(s.data))
    assert int.from_bytes(seg.data[length_at - seg.addr : length_at - seg.addr + 4], "little") == len(pem)


ELF2IMAGE_OPTIONS = [
    [],
    ["--flash-mode", "qout", "--flash-freq", "20m", "--flash-size", "16MB"],
    ["--min-rev-full", "3", "--max-rev-full", "199"],
    ["--secure-pad"],
    ["--secure-pad-v2"],
    ["--elf-sha256-offset", "0xb0"],
    ["--dont-append-digest"],
    ["--use-segments"],
    ["--flash-mmu-page-size", "64KB"],
    ["--pad-to-size", "1MB"],
    ["--secure-pad-v2", "--pad-to-size", "64KB", "--flash-mode", "dio"],
]


def test_every_option_matches_esptool(built: tuple[str, Path], tmp_path: Path) -> None:
    from esp_secure_build.cli.main import main

    chip, project = built
    jobs, ours = [], []
    for elf_name in ("app", "bootloader"):
        elf = project / f"build/{chip}/{elf_name}.elf"
        options = ELF2IMAGE_OPTIONS + ([["--ram-only-header"]] if elf_name == "bootloader" else [])
        for i, opts in enumerate(options):
            ref, out = tmp_path / f"{elf_name}{i}.ref", tmp_path / f"{elf_name}{i}.ours"
            jobs.append(["--chip", chip, "elf2image", *opts, "-o", str(ref), str(elf)])
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                rc = main(["--chip", chip, "elf2image", *opts, "-o", str(out), str(elf)])
            ours.append((ref, out, opts, rc))
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([sys.executable, str(HELPERS / "oracle_batch.py"), tmp_path / "jobs.json", tmp_path / "r.json"], check=True)
    results = json.loads((tmp_path / "r.json").read_text())
    for (ref, out, opts, rc), result in zip(ours, results, strict=True):
        if out.name.startswith("app"):
            assert result["ok"], (opts, result)  # every option applies to the real app
        if result["ok"]:
            assert rc == 0 and read_bytes(out) == read_bytes(ref), (out.name, opts)
        else:  # e.g. an explicit ELF SHA offset that lands outside the bootloader's data
            assert rc == 2 and not out.exists(), (out.name, opts, result)


def test_reproducible_across_checkouts(built: tuple[str, Path], tmp_path: Path) -> None:
    """Same sources and SOURCE_DATE_EPOCH in another folder: identical images.

    (Compared before signing: RSA-PSS signatures are randomised by design.)
    """
    chip, project = built
    other = copy_sample(tmp_path)
    proc = scons(other, "release", f"ESP_CHIP={chip}")
    assert proc.returncode == 0, proc.stderr
    for name in ("app-unsigned", "bootloader-unsigned"):
        assert (other / f"build/{chip}/{name}.bin").read_bytes() == (project / f"build/{chip}/{name}.bin").read_bytes()
