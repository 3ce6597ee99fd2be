"""Partition tables against the gen_esp32part.py 1.5 vectors, round trips and our extra checks."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, VECTORS, assert_one_line_error, run_cli

from esp_secure_build import partition_table as pt
from esp_secure_build.cli import partition_table_cmds
from esp_secure_build.errors import EspSecureError

PT_DIR = VECTORS / "partition-table"
PT_CASES = json.loads((PT_DIR / "cases.json").read_text())
GOOD = [c for c in PT_CASES if not c.get("expected_error")]
BAD = [c for c in PT_CASES if c.get("expected_error")]


def _ids(cases: list[dict]) -> list[str]:
    return [c["id"] for c in cases]


def test_vector_counts() -> None:
    assert len(GOOD) == 32 and len(BAD) == 18


@pytest.mark.parametrize("case", PT_CASES, ids=_ids(PT_CASES))
def test_vector_cli(case: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in case.get("env", {}).items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out.bin"
    proc = run_cli("partition-table", "-q", *case["args"], case["csv"], out, cwd=PT_DIR)
    if case.get("expected_error"):
        assert_one_line_error(proc)
        assert not out.exists()
    else:
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == (PT_DIR / case["expected"]).read_bytes()
        assert proc.stderr == case.get("reference_stderr", "")


def _options(case: dict) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    partition_table_cmds.configure("partition-table", parser)
    return parser.parse_args([*case["args"], case["csv"]])


def _core_kwargs(args: argparse.Namespace) -> dict:
    return {
        "offset": int(args.offset, 0),
        "md5": not args.disable_md5sum,
        "extra_subtypes": args.extra_partition_subtypes or (),
        "primary_bootloader_offset": int(args.primary_bootloader_offset, 0) if args.primary_bootloader_offset else None,
    }


@pytest.mark.parametrize("case", GOOD, ids=_ids(GOOD))
def test_good_vector_core_and_round_trip(case: dict) -> None:
    args = _options(case)
    expected = (PT_DIR / case["expected"]).read_bytes()
    text = (PT_DIR / case["csv"]).read_bytes().decode("utf-8-sig")
    kwargs = _core_kwargs(args)
    binary, table, _ = pt.csv_to_binary(
        text, case["csv"], secure=args.secure, no_verify=args.no_verify, env=case.get("env", {}),
        flash_size=pt.flash_size_bytes(args.flash_size) if args.flash_size else None, **kwargs,
    )  # fmt: skip
    assert binary == expected
    # binary -> CSV -> binary gives the same bytes again.
    back = pt.parse_binary(
        expected, md5=kwargs["md5"], offset=kwargs["offset"], extra_subtypes=kwargs["extra_subtypes"]
    )
    assert [(p.name.encode()[:16], p.type, p.subtype, p.offset, p.size, p.flags_value()) for p in table] == [
        (p.name.encode(), p.type, p.subtype, p.offset, p.size, p.flags_value()) for p in back
    ]
    again = pt.parse_csv(back.to_csv(), env={}, **kwargs)
    assert again.to_binary() == expected


def test_binary_to_csv_cli_round_trip(tmp_path: Path) -> None:
    expected = PT_DIR / "good-idf-two-ota-encr-nvs.bin"
    proc = run_cli("partition-table", expected, tmp_path / "t.csv")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "t.csv").read_text()
    assert text.startswith("# ESP-IDF Partition Table\n# Name, Type, SubType, Offset, Size, Flags\n")
    # The last entry of the reference binary, in gen_esp32part's CSV spelling.
    last = expected.read_bytes()[6 * 32 : 7 * 32]
    offset, size, flags = int.from_bytes(last[4:8], "little"), int.from_bytes(last[8:12], "little"), last[28]
    assert (last[2:4], size, flags) == (b"\x01\x04", 0x1000, 1)
    assert f"nvs_key,data,nvs_keys,{offset:#x},4K,encrypted\n" in text
    proc = run_cli("partition-table", tmp_path / "t.csv", tmp_path / "t.bin")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "t.bin").read_bytes() == expected.read_bytes()


def test_stdout_output() -> None:
    # run_cli decodes output as text, so run the binary-output case directly.
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "esp_secure_build", "partition-table", PT_DIR / "good-idf-singleapp.csv"]
    proc = subprocess.run(cmd, capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (PT_DIR / "good-idf-singleapp.bin").read_bytes()


def test_nvs_keys_not_flagged_encrypted_is_a_warning() -> None:
    """ESP-IDF accepts it; the device encrypts nvs_keys anyway, and so does the release."""
    table = pt.parse_csv("nvs, data, nvs, 0x9000, 0x6000\nnvs_key, data, nvs_keys, 0xF000, 0x1000\n")
    warnings = pt.verify(table, "t.csv")
    assert len(warnings) == 1 and "nvs_key" in warnings[0] and "not flagged 'encrypted'" in warnings[0]
    assert [p.name for p in table.encrypted_partitions()] == ["nvs_key"]


def test_flash_encrypted_partitions() -> None:
    table = pt.parse_csv((PT_DIR / "good-idf-two-ota-encr-nvs.csv").read_text())
    assert [p.name for p in table.encrypted_partitions()] == ["otadata", "factory", "ota_0", "ota_1", "nvs_key"]
    flagged = pt.parse_csv(
        "nvs, data, nvs, , 0x6000, encrypted\nfs, data, fat, , 64K, encrypted\nraw, data, 0x40, , 4K\n"
    )
    assert [p.name for p in flagged.encrypted_partitions()] == ["fs"]  # never NVS, only flagged data
    boot = pt.parse_csv((PT_DIR / "good-bootloader-entries-esp32.csv").read_text(), primary_bootloader_offset=0x1000)
    assert {p.name for p in boot.encrypted_partitions()} >= {"bootloader", "partition_table", "factory"}


@pytest.mark.parametrize(
    ("csv", "needle"),
    [
        ("factory, app, factory, , 1M\nfactory2, app, factory, , 1M\n", "more than one factory"),
        ("a, app, factory, 0x10000, 1M\nb, data, fat, 0x80000, 64K\n", "Partitions overlap"),
        ("a, data, fat, 0x9800, 4K\n", "not aligned"),
        ("a, app, factory, , 0x1800\n", "Size 0x1800 is not aligned to 0x1000"),
        ("a, data, fat, , 4K, encrypted:readonly:bogus\n", "unknown flag 'bogus'"),
        ("a, data, 0x40, 0x1000000000, 4K\n", "out of range"),
        ("a, data, fat, , -0x1000\n", "ends before it starts"),
        ("o1, data, ota, , 0x2000\no2, data, ota, , 0x2000\n", "multiple otadata"),
        ("a, app, , , 1M\n", "empty subtype"),
        ("a, data, fat\n", "Size field can't be empty"),
    ],
)
def test_faults_refused(csv: str, needle: str) -> None:
    with pytest.raises(EspSecureError, match=needle):
        pt.csv_to_binary(csv, "t.csv", env={})


def test_too_many_partitions() -> None:
    rows = "".join(f"p{i}, data, 0x40, , 4K\n" for i in range(95))
    with pytest.raises(EspSecureError, match="longer than max"):
        pt.csv_to_binary(rows, env={})
    assert len(pt.csv_to_binary(rows, env={}, md5=False)[0]) == 0xC00  # 95 fit without the MD5 entry


def test_binary_faults() -> None:
    good = (PT_DIR / "good-idf-singleapp.bin").read_bytes()
    corrupt = bytearray(good)
    corrupt[3 * 32 + 20] ^= 1  # inside the MD5 entry
    with pytest.raises(EspSecureError, match="MD5"):
        pt.parse_binary(bytes(corrupt))
    with pytest.raises(EspSecureError, match="end-of-table"):
        pt.parse_binary(good[: 3 * 32])
    assert hashlib.md5(good[:96]).digest() == good[96 + 16 : 128]


def test_image_fits_partition() -> None:
    table = pt.parse_csv((PT_DIR / "good-idf-singleapp.csv").read_text())
    factory = table.find("factory")
    factory.check_image_fits(0x100000)
    with pytest.raises(EspSecureError, match="does not fit partition 'factory'"):
        factory.check_image_fits(0x100001, "app.bin")
    with pytest.raises(EspSecureError, match="no partition named"):
        table.find("ota_0")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--offset", "zz", "t.csv", "out.bin"], ["--offset"]),
        (["missing.csv", "out.bin"], ["missing.csv", "not found"]),
        (["--extra-partition-subtypes", "nosuch,x,0x40", "--", "t.csv", "out.bin"], ["invalid partition type"]),
        (["bad.csv", "out.bin"], ["bad.csv", "line 1", "Invalid field value 0xQ"]),
    ],
)
def test_cli_bad_input(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    (tmp_path / "t.csv").write_text("nvs, data, nvs, , 0x6000\n")
    (tmp_path / "bad.csv").write_text("nvs, data, nvs, 0xQ, 0x6000\n")
    assert_one_line_error(run_cli("partition-table", *args, cwd=tmp_path), *needles)
    assert not (tmp_path / "out.bin").exists()


def test_encrypted_regions_cover_bootloader_and_table() -> None:
    table = pt.parse_csv((PT_DIR / "good-idf-two-ota-encr-nvs.csv").read_text(), offset=0x8000)
    regions = table.encrypted_regions(bootloader_offset=0x1000)
    assert regions[:2] == [("bootloader", 0x1000, 0x7000), ("partition-table", 0x8000, 0x1000)]
    assert [name for name, _, _ in regions[2:]] == [p.name for p in table.encrypted_partitions()]
    assert "nvs" not in {name for name, _, _ in regions}
