"""merge-bin against ``esptool merge-bin`` 5.6.0, and the flash argument files."""

from __future__ import annotations

import hashlib
import io
import json
import shlex
from pathlib import Path

import pytest
from conftest import VECTORS, assert_one_line_error, run_cli, run_oracle
from hypothesis import given, settings
from hypothesis import strategies as st

from esp_secure_build import factory, ihex
from esp_secure_build.chips import get_chip
from esp_secure_build.errors import EspSecureError

IMG = VECTORS / "esptool"
BOOT = IMG / "oracle_expected" / "elf2image-esp32-bootloader.bin"  # SHA-256 appended
BOOT_NO_DIGEST = IMG / "oracle_expected" / "elf2image-esp32-bootloader-no-digest.bin"
BOOT_SIGNED = IMG / "secure_images" / "bootloader_signed_v2_rsa.bin"  # signature after the digest
BOOT_ENCRYPTED = IMG / "secure_images" / "bootloader-encrypted.bin"
APP = IMG / "secure_images" / "hello-world-signed.bin"
C6_IMAGE = IMG / "oracle_expected" / "elf2image-esp32c6-appdesc.bin"
TABLE = VECTORS / "partition-table" / "good-idf-singleapp.bin"

MERGES = {
    "raw-keep": ("esp32", [], [("0x1000", BOOT), ("0x8000", TABLE), ("0x10000", APP)]),
    "raw-patch-all": ("esp32", ["--flash-mode", "dio", "--flash-freq", "40m", "--flash-size", "4MB"],
                      [("0x1000", BOOT), ("0x8000", TABLE), ("0x10000", APP)]),
    "raw-patch-no-digest": ("esp32", ["--flash-freq", "80m"], [("0x1000", BOOT_NO_DIGEST), ("0x8000", TABLE)]),
    "raw-patch-signed-keeps-tail": ("esp32", ["--flash-mode", "dout"], [("0x1000", BOOT_SIGNED), ("0x10000", APP)]),
    "raw-patch-encrypted-untouched": ("esp32", ["--flash-size", "2MB"], [("0x1000", BOOT_ENCRYPTED), ("0x8000", TABLE)]),
    "raw-not-an-image-untouched": ("esp32", ["--flash-mode", "qio"], [("0x1000", TABLE)]),
    "raw-pad-target-offset": ("esp32", ["--pad-to-size", "1MB", "--target-offset", "0x1000"],
                              [("0x1000", BOOT), ("0x8000", TABLE), ("0x20000", BOOT_NO_DIGEST)]),
    "raw-target-offset-old-spelling": ("esp32", ["--target-offset", "0x8000", "--flash_mode", "dio"],
                                       [("0x10000", APP), ("0x8000", TABLE)]),
    "raw-c6-80m": ("esp32c6", ["--flash-freq", "80m", "--flash-size", "8MB"], [("0x0", C6_IMAGE), ("0x20000", TABLE)]),
    "hex-patch": ("esp32", ["--format", "hex", "--flash-mode", "dio", "--flash-size", "16MB"],
                  [("0x1000", BOOT), ("0x8000", TABLE), ("0x10000", APP)]),
    "hex-one-input": ("esp32c3", ["-f", "hex"], [("0x20000", BOOT_NO_DIGEST)]),
}  # fmt: skip


def _pair_args(pairs: list[tuple[str, Path]]) -> list[str]:
    return [str(x) for pair in pairs for x in pair]


def _both(tmp_path: Path, chip: str, options: list[str], pairs: list[tuple[str, Path]]) -> tuple[bytes, bytes]:
    theirs, ours = tmp_path / "theirs.out", tmp_path / "ours.out"
    run_oracle("esptool", "--chip", chip, "merge-bin", "-o", theirs, *options, *_pair_args(pairs))
    proc = run_cli("--chip", chip, "merge-bin", "-o", ours, *options, *_pair_args(pairs))
    assert proc.returncode == 0, proc.stderr
    return ours.read_bytes(), theirs.read_bytes()


@pytest.mark.parametrize("case", list(MERGES), ids=list(MERGES))
def test_merge_bin_matches_esptool(case: str, tmp_path: Path) -> None:
    chip, options, pairs = MERGES[case]
    ours, theirs = _both(tmp_path, chip, options, pairs)
    assert ours == theirs


def test_merge_hex_input_is_split_into_regions(tmp_path: Path) -> None:
    """A HEX input merges at its own addresses (the given address is ignored), as in esptool."""
    hex_in = tmp_path / "in.hex"
    run_oracle("esptool", "--chip", "esp32", "merge-bin", "-f", "hex", "-o", hex_in, "0x1000", BOOT, "0x8000", TABLE)
    for fmt in ("raw", "hex"):
        ours, theirs = _both(tmp_path, "esp32", ["-f", fmt], [("0x0", hex_in), ("0x10000", APP)])
        assert ours == theirs


def test_colon_file_that_is_not_hex_is_raw(tmp_path: Path) -> None:
    fake = tmp_path / "fake.bin"
    fake.write_bytes(b":not intel hex\x00\xff" * 10)
    ours, theirs = _both(tmp_path, "esp32s3", [], [("0x2000", fake), ("0x9000", TABLE)])
    assert ours == theirs


def test_core_patch_recomputes_digest() -> None:
    image = BOOT.read_bytes()
    patched, note = factory.update_flash_params(get_chip("esp32"), 0x1000, image, "dio", "80m", "4MB")
    assert note and patched[2:4] == bytes([2, 0x2F])
    assert patched[-32:] == hashlib.sha256(patched[:-32]).digest()
    assert (
        factory.update_flash_params(get_chip("esp32"), 0x10000, image, "dio")[0] == image
    )  # not the bootloader offset


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--chip", "esp32", "merge-bin", "-o", "out.bin", "0x1000", "a.bin", "0x1800", "b.bin"], ["b.bin", "overlap"]),
        (["--chip", "esp32", "merge-bin", "-o", "out.bin", "-t", "0x2000", "0x1000", "a.bin"], ["0x2000", "before"]),
        (["--chip", "esp32", "merge-bin", "-o", "out.bin", "0x1000"], ["pairs"]),
        (["--chip", "esp32", "merge-bin", "-o", "out.bin", "zz", "a.bin"], ["zz"]),
        (["merge-bin", "-o", "out.bin", "0x1000", "a.bin"], ["--chip"]),
        (["--chip", "esp32c2", "merge-bin", "-ff", "80m", "-o", "out.bin", "0x0", "boot.bin"], ["80m", "ESP32-C2"]),
        (["--chip", "esp32", "merge-bin", "-fs", "2MB-c1", "-o", "out.bin", "0x1000", "boot.bin"], ["2MB-c1"]),
        (["--chip", "esp32", "merge-bin", "-o", "out.bin", "0x1000", "missing.bin"], ["missing.bin", "not found"]),
        (["--chip", "esp32", "merge-bin", "-f", "uf2", "-o", "out.bin", "0x1000", "a.bin"], ["UF2"]),
    ],
)
def test_cli_bad_input(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    (tmp_path / "a.bin").write_bytes(bytes(0x100))
    (tmp_path / "b.bin").write_bytes(bytes(0x100))
    (tmp_path / "boot.bin").write_bytes(BOOT.read_bytes())
    assert_one_line_error(run_cli(*args, cwd=tmp_path), *needles)
    assert not (tmp_path / "out.bin").exists()


def test_esptool_refuses_what_we_refuse(tmp_path: Path) -> None:
    """The refusals above that esptool also makes (it exits non-zero)."""
    (tmp_path / "a.bin").write_bytes(bytes(0x100))
    (tmp_path / "b.bin").write_bytes(bytes(0x100))
    for args in (["--chip", "esp32", "merge-bin", "-o", "out.bin", "0x1000", "a.bin", "0x1800", "b.bin"],
                 ["--chip", "esp32", "merge-bin", "-o", "out.bin", "-t", "0x2000", "0x1000", "a.bin"],
                 ["--chip", "esp32c2", "merge-bin", "-ff", "80m", "-o", "out.bin", "0x0", BOOT]):  # fmt: skip
        assert run_oracle("esptool", *args, cwd=tmp_path, check=False).returncode != 0
    # esptool leaves a partial output behind on the last one (it fails mid-write); we never do.
    assert (tmp_path / "out.bin").exists()


def test_core_refusals() -> None:
    chip = get_chip("esp32")
    with pytest.raises(EspSecureError, match="no input"):
        factory.merge_bin(chip, [])
    with pytest.raises(EspSecureError, match="format"):
        factory.merge_bin(chip, [factory.Region(0, b"x")], "uf2")


# --- flash_args / flasher_args.json ----------------------------------------------------------

ENTRIES = [
    factory.FlashEntry("bootloader", 0x1000, "bootloader/bootloader.bin"),
    factory.FlashEntry("app", 0x10000, "app.bin"),
    factory.FlashEntry("partition-table", 0x8000, "partition_table/partition-table.bin"),
]


def _build_dir(tmp_path: Path) -> Path:
    (tmp_path / "bootloader").mkdir()
    (tmp_path / "partition_table").mkdir()
    (tmp_path / "bootloader" / "bootloader.bin").write_bytes(BOOT.read_bytes())
    (tmp_path / "app.bin").write_bytes(APP.read_bytes())
    (tmp_path / "partition_table" / "partition-table.bin").write_bytes(TABLE.read_bytes())
    return tmp_path


def test_flash_args_drive_esptool(tmp_path: Path) -> None:
    """esptool reads our flash_args (@file) and merges the same image as from explicit arguments."""
    build = _build_dir(tmp_path)
    (build / "flash_args").write_text(factory.flash_args_text(ENTRIES, "dio", "40m", "2MB"))
    run_oracle("esptool", "--chip", "esp32", "merge-bin", "-o", "via_args.bin", "@flash_args", cwd=build)
    explicit = ["--flash-mode", "dio", "--flash-freq", "40m", "--flash-size", "2MB"]
    explicit += [str(x) for e in ENTRIES for x in (hex(e.offset), e.path)]
    run_oracle("esptool", "--chip", "esp32", "merge-bin", "-o", "explicit.bin", *explicit, cwd=build)
    assert (build / "via_args.bin").read_bytes() == (build / "explicit.bin").read_bytes()
    proc = run_cli("--chip", "esp32", "merge-bin", "-o", "ours.bin", "@flash_args", cwd=build)
    assert proc.returncode == 0, proc.stderr
    assert (build / "ours.bin").read_bytes() == (build / "explicit.bin").read_bytes()


def test_flash_args_layout() -> None:
    text = factory.flash_args_text(ENTRIES, "dio", "40m", "2MB")
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 4
    assert shlex.split(lines[0]) == ["--flash_mode", "dio", "--flash_freq", "40m", "--flash_size", "2MB"]
    assert lines[1:] == [
        "0x1000 bootloader/bootloader.bin",
        "0x10000 app.bin",
        "0x8000 partition_table/partition-table.bin",
    ]


def test_flasher_args_json() -> None:
    text = factory.flasher_args_json(ENTRIES, get_chip("esp32"), "dio", "40m", "2MB", after="no_reset")
    data = json.loads(text)
    assert data["write_flash_args"] == ["--flash_mode", "dio", "--flash_size", "2MB", "--flash_freq", "40m"]
    assert data["flash_settings"] == {"flash_mode": "dio", "flash_size": "2MB", "flash_freq": "40m"}
    assert data["flash_files"] == {"0x1000": "bootloader/bootloader.bin", "0x10000": "app.bin",
                                   "0x8000": "partition_table/partition-table.bin"}  # fmt: skip
    assert data["app"] == {"offset": "0x10000", "file": "app.bin", "encrypted": "false"}
    assert data["extra_esptool_args"] == {"after": "no_reset", "before": "default_reset", "stub": True, "chip": "esp32"}
    assert list(data) == ["write_flash_args", "flash_settings", "flash_files", "bootloader", "app", "partition-table",
                          "extra_esptool_args"]  # fmt: skip


# Written by ESP-IDF 5 for an ESP32 project (build/flash_args and build/flasher_args.json of the
# public repository 0xTunay/Domus at f403d7ce): our writers must reproduce them exactly.
IDF_FLASH_ARGS = (
    "--flash_mode dio --flash_freq 40m --flash_size 2MB\n0x1000 bootloader/bootloader.bin\n"
    "0x10000 practice.bin\n0x8000 partition_table/partition-table.bin\n"
)
IDF_FLASHER_ARGS_JSON = """{
    "write_flash_args" : [ "--flash_mode", "dio",
                           "--flash_size", "2MB",
                           "--flash_freq", "40m" ],
    "flash_settings" : {
        "flash_mode": "dio",
        "flash_size": "2MB",
        "flash_freq": "40m"
    },
    "flash_files" : {
        "0x1000" : "bootloader/bootloader.bin",
        "0x10000" : "practice.bin",
        "0x8000" : "partition_table/partition-table.bin"
    },
    "bootloader" : { "offset" : "0x1000", "file" : "bootloader/bootloader.bin", "encrypted" : "false" },
    "app" : { "offset" : "0x10000", "file" : "practice.bin", "encrypted" : "false" },
    "partition-table" : { "offset" : "0x8000", "file" : "partition_table/partition-table.bin", "encrypted" : "false" },
    "extra_esptool_args" : {
        "after"  : "hard_reset",
        "before" : "default_reset",
        "stub"   : true,
        "chip"   : "esp32"
    }
}
"""


def test_writers_match_esp_idf_output() -> None:
    entries = [ENTRIES[0], factory.FlashEntry("app", 0x10000, "practice.bin"), ENTRIES[2]]
    assert factory.flash_args_text(entries, "dio", "40m", "2MB") == IDF_FLASH_ARGS
    assert factory.flasher_args_json(entries, get_chip("esp32"), "dio", "40m", "2MB") == IDF_FLASHER_ARGS_JSON


def test_hex_at_odd_addresses_across_pages_matches_esptool(tmp_path: Path) -> None:
    """Records start at each run's first byte and end short at 64 KiB pages; runs leave odd gaps.

    (esptool refuses two files in one 4 KiB sector; adjacency is covered against intelhex below.)
    """
    first = tmp_path / "first.bin"
    first.write_bytes(bytes(range(256)) * 300 + b"\x01\x02\x03")  # 0xFFF3 .. past 0x22AF6
    second = tmp_path / "second.bin"
    second.write_bytes(b"\xa5" * 37)
    pairs = [("0xFFF3", first), ("0x24005", second), ("0x3FFF9", TABLE)]
    ours, theirs = _both(tmp_path, "esp32", ["-f", "hex"], pairs)
    assert ours == theirs


@given(
    st.lists(
        st.tuples(st.integers(0, 0x3FFFF), st.integers(0, 3), st.binary(min_size=1, max_size=300)),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=200, deadline=None)
def test_hex_writer_equals_intelhex(pieces: list[tuple[int, int, bytes]]) -> None:
    """Our writer against the intelhex package's (the one esptool writes with) on random region layouts."""
    from intelhex import IntelHex

    regions, address = [], 0
    for gap, adjacency, data in pieces:
        address += 0 if adjacency == 0 else gap  # adjacent runs, or a gap of any size, page crossings included
        regions.append((address, data))
        address += len(data)
    reference = IntelHex()
    for start, data in regions:
        part = IntelHex()
        part.frombytes(data, start)
        reference.merge(part)
    text = io.StringIO()
    reference.write_hex_file(text)
    assert ihex.encode(regions) == text.getvalue().encode("ascii")
