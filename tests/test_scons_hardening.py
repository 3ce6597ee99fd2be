"""The sample project against hostile or unusual configurations: one line and exit 2, or a valid release."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_one_line_error
from sconsutil import copy_sample, release_dir, scons, steps


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return copy_sample(tmp_path)


def _error_lines(proc) -> list[str]:  # type: ignore[no-untyped-def]
    return [line for line in proc.stderr.splitlines() if line.startswith("scons: ***") or "Traceback" in line]


@pytest.mark.parametrize("setting", ["ESP_FLASH_ENCRYPTION_KEY", "ESP_SIGNING_KEYS", "nvs.csv"])
def test_directory_where_a_file_is_expected_is_one_line(sample: Path, setting: str) -> None:
    args = ["release"]
    if setting == "nvs.csv":
        (sample / "nvs.csv").unlink()
        (sample / "nvs.csv").mkdir()
    else:
        (sample / "adir").mkdir()
        args.append(f"{setting}=adir")
    proc = scons(sample, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr
    errors = _error_lines(proc)
    assert len(errors) == 1 and "found where file expected" in errors[0], proc.stderr
    assert ("adir" if setting != "nvs.csv" else "nvs.csv") in errors[0]


def test_configuration_error_has_no_python_frame(sample: Path) -> None:
    """A partition overlap found while the SConstruct is read: one line, no `File "...release.py"` line."""
    table = (sample / "partitions.csv").read_text()
    (sample / "partitions.csv").write_text(table.replace("0xF000,  0x1000", "0xA000,  0x1000"))
    proc = scons(sample, "release")
    assert proc.returncode == 2
    assert 'File "' not in proc.stderr and "Traceback" not in proc.stderr
    errors = _error_lines(proc)
    assert len(errors) == 1 and "partitions.csv" in errors[0] and "overlap" in errors[0]


def test_nvs_keys_partition_not_flagged_encrypted_builds_with_a_warning(sample: Path) -> None:
    """ESP-IDF accepts such a table and the device encrypts nvs_keys anyway: so does the release."""
    table = (sample / "partitions.csv").read_text()
    assert "0x1000,   encrypted" in table
    (sample / "partitions.csv").write_text(table.replace("0x1000,   encrypted", "0x1000,"))
    proc = scons(sample, "release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nvs_keys partition not flagged 'encrypted'" in proc.stderr
    assert "ESP-ENCRYPT build/release/encrypted/nvs_keys.bin" in steps(proc)
    assert "release build/release verified" in proc.stdout + proc.stderr


def test_app_larger_than_its_partition_is_found_when_app_bin_is_made(sample: Path) -> None:
    table = (sample / "partitions.csv").read_text()
    (sample / "partitions.csv").write_text(table.replace("0x10000, 0x100000,", "0x10000, 0x10000,"))
    proc = scons(sample, "release")
    assert proc.returncode == 2
    errors = _error_lines(proc)
    assert len(errors) == 1 and "build/release/app.bin" in errors[0] and "larger than partition 'factory'" in errors[0]
    assert "ESP-ENCRYPT" not in proc.stdout  # found before encryption, after nothing was written
    assert not (release_dir(sample, "esp32c3") / "app.bin").exists()


def test_clean_removes_link_maps_and_bootloader_descriptor_label(sample: Path) -> None:
    proc = scons(sample, "release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ESP-BOOTDESC build/esp32c3/bootloader_desc.S" in steps(proc)
    assert "ESP-APPDESC build/esp32c3/bootloader_desc.S" not in steps(proc)
    maps = sorted(p.name for p in sample.rglob("*.map"))
    assert maps == ["app.elf.map", "bootloader.elf.map"]
    assert scons(sample, "-c", "release").returncode == 0
    assert not list(sample.rglob("*.map"))


def test_published_flash_key_names_the_scons_override(sample: Path) -> None:
    from conftest import VECTORS

    key = VECTORS / "esptool/secure_images/256bit_key.bin"
    proc = scons(sample, "release", f"ESP_FLASH_ENCRYPTION_KEY={key}")
    assert_one_line_error_scons(proc, "publicly known", "ESP_ALLOW_PUBLISHED_KEY=1")
    assert "--allow-published-key" not in proc.stderr


def assert_one_line_error_scons(proc, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = _error_lines(proc)
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def test_cli_published_key_message_names_the_cli_override(tmp_path: Path) -> None:
    from conftest import VECTORS, run_cli

    si = VECTORS / "esptool/secure_images"
    proc = run_cli("sign-data", "--version", "2", "--keyfile", si / "rsa_secure_boot_signing_key.pem", "-o",
                   tmp_path / "out.bin", si / "bootloader_unsigned_v2.bin", allow_published_key=False)  # fmt: skip
    assert_one_line_error(proc, "--allow-published-key")
    assert "ESP_ALLOW_PUBLISHED_KEY" not in proc.stderr


def test_esp32_v1_summary_says_what_protects_the_bootloader() -> None:
    from esp_secure_build.manifest import summary_lines

    manifest = {
        "chip": "esp32", "generator": "test", "secure_boot": {"version": 1},
        "images": {"bootloader.bin": {}, "app.bin": {"secure_boot_v1": "ecdsa256 key 0123…"}},
        "flash": [], "certificates": [],
    }  # fmt: skip
    lines = summary_lines(manifest)
    assert "  bootloader.bin: protected by the Secure Boot V1 bootloader digest" in lines
    assert not any("not signed" in line for line in lines)


@pytest.mark.parametrize("size", ["0", "0x100000000"])
def test_pad_to_size_zero_or_beyond_any_flash_is_refused_by_the_builder(tmp_path: Path, size: str) -> None:
    from conftest import VECTORS
    from sconsutil import TOOL_HEADER

    (tmp_path / "app.elf").write_bytes((VECTORS / "esptool/elf2image/esp32-app-template.elf").read_bytes())
    (tmp_path / "SConstruct").write_text(
        TOOL_HEADER + f"env.Replace(ESP_CHIP='esp32', ESP_PAD_TO_SIZE={size!r})\nenv.EspImage('app.bin', 'app.elf')\n"
    )
    proc = scons(tmp_path)
    assert proc.returncode == 2
    errors = _error_lines(proc)
    assert len(errors) == 1 and "pad-to-size" in errors[0], proc.stderr
    assert not (tmp_path / "app.bin").exists()
