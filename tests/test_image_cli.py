"""elf2image / image-info on bad input, the image reader's robustness, and the chip table."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import VECTORS, assert_one_line_error, run_cli
from helpers.elfgen import Sec, write_elf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esp_secure_build.chips import CHIPS
from esp_secure_build.elf import EM_RISCV, EM_XTENSA, read_elf
from esp_secure_build.errors import EspSecureError
from esp_secure_build.image import ImageOptions, elf_to_image, read_image

APP_ELF = VECTORS / "esptool/elf2image/esp32-app-template.elf"
IMAGE = VECTORS / "esptool/oracle_expected/elf2image-esp32-app-template.bin"


def test_chip_table_matches_esptool_targets() -> None:
    """Every chip's ids, offsets, windows, memory map and frequency codes, as esptool 5.6.0 has them."""
    script = (
        "import json; from esptool.targets import CHIP_DEFS as D; print(json.dumps({n: [c.IMAGE_CHIP_ID,"
        " c.BOOTLOADER_FLASH_OFFSET, [c.IROM_MAP_START, c.IROM_MAP_END, c.DROM_MAP_START, c.DROM_MAP_END],"
        " [list(m) for m in c.MEMORY_MAP], c.FLASH_FREQUENCY, c.FLASH_ENCRYPTED_WRITE_ALIGN] for n, c in D.items() if n != 'esp8266'}))"
    )
    ref = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert sorted(CHIPS) == sorted(ref)  # every chip esptool knows (e.g. ESP32-S31, image chip id 32)
    for name, chip in CHIPS.items():
        ours = [chip.image_chip_id, chip.bootloader_offset, [*chip.irom_map, *chip.drom_map],
                [list(m) for m in chip.memory_map], chip.flash_freqs, chip.encrypted_write_align]  # fmt: skip
        assert ours == ref[name], name


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "not an ELF"),
        (b"hello world, not an elf at all" * 3, "not an ELF"),
        (APP_ELF.read_bytes()[:3000], "truncated"),
        (b"\x7fELF\x02\x01\x01" + bytes(60), "64-bit"),
    ],
    ids=["empty", "text", "truncated", "elf64"],
)
def test_elf2image_bad_elf(tmp_path: Path, content: bytes, needle: str) -> None:
    elf = tmp_path / "bad.elf"
    elf.write_bytes(content)
    out = tmp_path / "out.bin"
    proc = run_cli("--chip", "esp32", "elf2image", "-o", out, elf)
    assert_one_line_error(proc, str(elf), needle)
    assert not out.exists() and list(tmp_path.iterdir()) == [elf]


def test_elf2image_wrong_architecture(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    proc = run_cli("--chip", "esp32c3", "elf2image", "-o", out, APP_ELF)
    assert_one_line_error(proc, "xtensa ELF", "ESP32-C3")
    assert not out.exists()


def test_elf2image_missing_file_and_chip(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("--chip", "esp32", "elf2image", tmp_path / "nope.elf"), "nope.elf", "not found")
    assert_one_line_error(run_cli("elf2image", APP_ELF), "--chip")
    assert_one_line_error(run_cli("--chip", "esp99", "elf2image", APP_ELF), "unknown chip")


def test_elf2image_unwritable_output(tmp_path: Path) -> None:
    proc = run_cli("--chip", "esp32", "elf2image", "-o", tmp_path / "no/such/dir/out.bin", APP_ELF)
    assert_one_line_error(proc, "cannot write output")


def test_elf2image_old_option_spellings(tmp_path: Path) -> None:
    new, old = tmp_path / "new.bin", tmp_path / "old.bin"
    assert run_cli("--chip", "esp32", "elf2image", "--flash-mode", "dio", "--min-rev-full", "3", "-o", new, APP_ELF).returncode == 0
    assert run_cli("--chip", "esp32", "elf2image", "--flash_mode", "dio", "--min_rev_full", "3", "-o", old, APP_ELF).returncode == 0
    assert new.read_bytes() == old.read_bytes()


def test_image_info_reports_valid_image() -> None:
    proc = run_cli("image-info", IMAGE)
    assert proc.returncode == 0, proc.stderr
    assert "Checksum:" in proc.stdout and "(valid)" in proc.stdout and "ESP32" in proc.stdout


def test_image_info_detects_corruption(tmp_path: Path) -> None:
    data = bytearray(IMAGE.read_bytes())
    data[0x40] ^= 0x01
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    proc = run_cli("image-info", bad)
    assert proc.returncode == 1
    assert "INVALID" in proc.stdout
    assert_one_line_error(run_cli("image-info", tmp_path / "none.bin"), "not found")


IMAGE_BYTES = IMAGE.read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=600),
    st.tuples(st.integers(0, len(IMAGE_BYTES) - 1), st.integers(0, 255)).map(
        lambda t: IMAGE_BYTES[: t[0]] + bytes([t[1]]) + IMAGE_BYTES[t[0] + 1 :]
    ),
    st.integers(0, len(IMAGE_BYTES)).map(lambda n: IMAGE_BYTES[:n]),
))  # fmt: skip
def test_image_reader_only_raises_project_error(data: bytes) -> None:
    try:
        info = read_image(data, "fuzz.bin")
    except EspSecureError as exc:
        assert "\n" not in str(exc)
        return
    assert info.image_length <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=52, max_size=400), st.sampled_from([EM_XTENSA, EM_RISCV]))
def test_elf_reader_only_raises_project_error(tail: bytes, machine: int) -> None:
    good = write_elf([Sec(".iram1", 0x40380000, b"\x01\x02\x03\x04" * 8)], machine, 0x40380000)
    mutated = good[:52] + tail if len(tail) % 2 else good[: len(tail)]
    try:
        elf = read_elf("fuzz.elf", mutated)
    except EspSecureError:
        return
    for chip in CHIPS.values():
        if chip.arch == elf.arch:
            with contextlib.suppress(EspSecureError):
                elf_to_image(elf, chip, ImageOptions())


SECURE = VECTORS / "esptool/secure_images"


@pytest.mark.parametrize("scheme", ["rsa", "ecdsa192", "ecdsa256"])
def test_reader_reports_v2_blocks_with_oracle_key_digests(tmp_path: Path, scheme: str) -> None:
    from conftest import run_oracle

    info = read_image((SECURE / f"bootloader_multi_signed_v2_{scheme}.bin").read_bytes())
    expected = []
    for suffix in ("", "2", "3"):
        out = tmp_path / f"digest{suffix}.bin"
        run_oracle("espsecure", "digest-sbv2-public-key", "--keyfile", SECURE / f"{scheme}_secure_boot_signing_key{suffix}.pem", "-o", out)
        expected.append(out.read_bytes())
    assert [block.key_digest for block, _ in info.signature_blocks] == expected
    assert all(ok for _, ok in info.signature_blocks)
    assert info.signature_offset % 4096 == 0


def test_reader_flags_image_changed_after_signing(tmp_path: Path) -> None:
    data = bytearray((SECURE / "bootloader_signed_v2_ecdsa256.bin").read_bytes())
    data[0x30] ^= 0xFF
    info = read_image(bytes(data))
    assert [ok for _, ok in info.signature_blocks] == [False]
    bad = tmp_path / "tampered.bin"
    bad.write_bytes(bytes(data))
    assert "IMAGE DIGEST MISMATCH" in run_cli("image-info", bad).stdout


def test_reader_reports_v1_signature() -> None:
    info = read_image((SECURE / "bootloader_signed.bin").read_bytes())
    assert info.v1_signature is not None and len(info.v1_signature) == 64
    assert not info.signature_blocks


@pytest.mark.parametrize("chip", ["esp32s31", "esp32h4", "esp32h21", "esp32e22"])
def test_image_info_names_every_chip_esptool_knows(tmp_path: Path, chip: str) -> None:
    """An image esptool 5.6.0 made for a newer chip (ESP32-S31: image chip id 32) is named, not "unknown"."""
    from conftest import run_oracle

    info = CHIPS[chip]
    iram = next(start for start, _end, name in info.memory_map if name == "IRAM") + 0x100
    machine = EM_RISCV if info.arch == "riscv" else EM_XTENSA
    (tmp_path / "a.elf").write_bytes(write_elf([Sec(".iram0.text", iram, b"\x13\x00\x00\x00" * 16)], machine, iram))
    run_oracle("esptool", "--chip", chip, "elf2image", "-o", tmp_path / "ref.bin", tmp_path / "a.elf")
    proc = run_cli("image-info", tmp_path / "ref.bin")
    assert proc.returncode == 0, proc.stderr
    assert info.title in proc.stdout and "unknown chip" not in proc.stdout
    ours = run_cli("--chip", chip, "elf2image", "-o", tmp_path / "ours.bin", tmp_path / "a.elf")
    assert ours.returncode == 0, ours.stderr
    assert (tmp_path / "ours.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
