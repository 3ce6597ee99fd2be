"""SCons-level behaviour: what rebuilds, what doesn't, and using the tool outside this repository."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from sconsutil import TOOL_HEADER, copy_sample, scons, steps

from esp_secure_build.image import read_image

# What a changed app or bootloader image carries along after signing.
APP_TAIL = ["ESP-ENCRYPT build/release/encrypted/app.bin", "ESP-FACTORY build/release/factory-encrypted.bin",
            "ESP-MANIFEST build/release/manifest.json"]  # fmt: skip
BOOT_TAIL = ["ESP-ENCRYPT build/release/encrypted/bootloader.bin", "ESP-FACTORY build/release/factory-encrypted.bin",
             "ESP-MANIFEST build/release/manifest.json"]  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = copy_sample(tmp_path)
    first = scons(project, "release")
    assert first.returncode == 0, first.stdout + first.stderr
    return project


def test_noop_build_runs_nothing(project: Path) -> None:
    again = scons(project, "release")
    assert again.returncode == 0
    assert steps(again) == []
    assert "esp-secure: release build/release verified" in again.stdout  # what is on disk, every build
    question = scons(project, "-q", "release")
    assert question.returncode == 0 and question.stdout == "", question.stdout + question.stderr


def test_one_readable_line_per_step(tmp_path: Path) -> None:
    project = copy_sample(tmp_path)
    proc = scons(project, "release")
    lines = steps(proc)
    for step in ("ESP-IMAGE build/esp32c3/app-unsigned.bin", "ESP-SIGN build/release/app.bin",
                 "ESP-SIGN build/release/bootloader.bin", "ESP-APPDESC build/esp32c3/app_desc.S",
                 "CC build/esp32c3/src/main.o", "LINK build/esp32c3/app.elf"):  # fmt: skip
        assert step in lines
    assert "<function" not in proc.stdout and "(target, source, env)" not in proc.stdout


def test_editing_c_source_relinks_and_reimages_only_the_app(project: Path) -> None:
    main_c = project / "src/main.c"
    main_c.write_text(main_c.read_text().replace("boot_count = 1;", "boot_count = 2;"))
    proc = scons(project, "release")
    assert proc.returncode == 0, proc.stderr
    assert steps(proc) == ["CC build/esp32c3/src/main.o", "LINK build/esp32c3/app.elf",
                           "ESP-IMAGE build/esp32c3/app-unsigned.bin", "ESP-SIGN build/release/app.bin", *APP_TAIL]  # fmt: skip


def test_certificate_edits(project: Path) -> None:
    """A whitespace edit stops at the normalized PEM; a new certificate reaches the signed image."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    before = (project / "build/esp32c3/app-unsigned.bin").read_bytes()
    pem = project / "src/ca_cert.pem"
    pem.write_text(pem.read_text().replace("\n", "\r\n") + "\n\n")
    assert steps(scons(project, "release")) == ["CA-CERT build/esp32c3/ca_cert.pem"]
    assert (project / "build/esp32c3/app-unsigned.bin").read_bytes() == before

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Another Root CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365 * 20))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    proc = scons(project, "release")
    assert steps(proc) == ["CA-CERT build/esp32c3/ca_cert.pem", "EMBED build/esp32c3/ca_cert.pem.S", "AS build/esp32c3/ca_cert.pem.o",
                           "LINK build/esp32c3/app.elf", "ESP-IMAGE build/esp32c3/app-unsigned.bin",
                           "ESP-SIGN build/release/app.bin", *APP_TAIL]  # fmt: skip


def test_editing_linker_script_relinks(project: Path) -> None:
    script = project / "ld/esp32c3_bootloader.ld"
    script.write_text(script.read_text().replace("bootloader_stack_overhead = 0x2000;", "bootloader_stack_overhead = 0x2100;"))
    proc = scons(project, "release")
    assert steps(proc) == ["LINK build/esp32c3/bootloader.elf", "ESP-IMAGE build/esp32c3/bootloader-unsigned.bin",
                           "ESP-SIGN build/release/bootloader.bin", *BOOT_TAIL]  # fmt: skip


def test_image_variable_reimages_without_compiling(project: Path) -> None:
    proc = scons(project, "release", "ESP_FLASH_MODE=qio")
    assert sorted(steps(proc)) == sorted({*APP_TAIL, *BOOT_TAIL, "ESP-IMAGE build/esp32c3/app-unsigned.bin",
                                          "ESP-IMAGE build/esp32c3/bootloader-unsigned.bin",
                                          "ESP-SIGN build/release/app.bin", "ESP-SIGN build/release/bootloader.bin"})  # fmt: skip
    assert read_image((project / "build/release/app.bin").read_bytes()).flash_mode_name == "qio"


def test_descriptor_variable_rebuilds_descriptor_only(project: Path) -> None:
    env = dict(os.environ, SOURCE_DATE_EPOCH="1764201600")
    proc = scons(project, "release", env=env)
    assert sorted(steps(proc)) == sorted([
        "ESP-APPDESC build/esp32c3/app_desc.S", "AS build/esp32c3/app_desc.o", "LINK build/esp32c3/app.elf",
        "ESP-IMAGE build/esp32c3/app-unsigned.bin", "ESP-SIGN build/release/app.bin",
        "ESP-BOOTDESC build/esp32c3/bootloader_desc.S", "AS build/esp32c3/bootloader_desc.o",
        "LINK build/esp32c3/bootloader.elf", "ESP-IMAGE build/esp32c3/bootloader-unsigned.bin",
        "ESP-SIGN build/release/bootloader.bin", *sorted(set(APP_TAIL + BOOT_TAIL)),
    ])  # fmt: skip


THROWAWAY_SOURCES = {
    "app.c": '__attribute__((section(".iram1"))) void call_start_cpu0(void) { for (;;) { } }\n',
    "app.ld": "ENTRY(call_start_cpu0)\nSECTIONS { .iram0.text 0x40380000 : { *(.iram1) } }\n",
}


def _throwaway(folder: Path, header: str) -> Path:
    folder.mkdir()
    for name, text in THROWAWAY_SOURCES.items():
        (folder / name).write_text(text)
    (folder / "SConstruct").write_text(
        header
        + "env.Replace(ESP_CHIP='esp32c3')\n"
        + "env.EspToolchain()\n"
        + "elf = env.EspProgram('out/fw.elf', ['app.c'], 'app.ld')\n"
        + "env.EspImage('out/fw.bin', elf)\n"
    )
    return folder


def test_throwaway_project_with_checkout_toolpath(tmp_path: Path) -> None:
    folder = _throwaway(
        tmp_path / "p",
        TOOL_HEADER,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = scons(folder, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_image((folder / "out/fw.bin").read_bytes()).chip.name == "esp32c3"


def test_throwaway_project_with_installed_package(tmp_path: Path) -> None:
    """After `pip install`, one documented line (the import) makes the tool available."""
    folder = _throwaway(tmp_path / "p", "import esp_secure_build.scons\nenv = Environment(tools=['esp_secure'])\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = __import__("subprocess").run(
        [sys.executable, "-c", "import esp_secure_build, sys; print(esp_secure_build.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.fail("esp-secure-build is not installed in this Python; run `pip install .` (the README's test command does)")
    proc = scons(folder, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_image((folder / "out/fw.bin").read_bytes()).checksum_valid


def test_build_error_is_one_line_without_partial_output(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "broken.elf").write_bytes(b"\x7fELF\x01\x01\x01" + bytes(20))
    (folder / "SConstruct").write_text(
        TOOL_HEADER
        + "env.EspImage('fw.bin', 'broken.elf')\n"
    )
    proc = scons(folder)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "broken.elf" in errors[0] and "Traceback" not in proc.stderr
    assert not (folder / "fw.bin").exists()
    assert not list(folder.glob(".fw.bin.*"))


@pytest.mark.parametrize("chip", list(__import__("esp_secure_build.chips", fromlist=["CHIPS"]).CHIPS))
def test_toolchain_for_every_chip(tmp_path: Path, chip: str) -> None:
    """EspToolchain picks the right compiler and flags for each chip; esptool agrees on the image."""
    from conftest import run_oracle

    from esp_secure_build.chips import get_chip
    from esp_secure_build.elf import read_elf

    info = get_chip(chip)
    iram = next(start for start, _end, name in info.memory_map if name == "IRAM") + 0x4000
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "app.c").write_text(
        "static volatile unsigned counter;\n"
        '__attribute__((section(".iram1"))) void call_start_cpu0(void) { for (;;) { counter++; } }\n'
    )
    (folder / "app.ld").write_text(
        f"ENTRY(call_start_cpu0)\nSECTIONS {{ .iram0.text {iram:#x} : {{ *(.literal .literal.* .iram1 .iram1.*) }}\n"
        "  .dram0.bss (NOLOAD) : { *(.bss .bss.* .sbss .sbss.*) } /DISCARD/ : { *(.comment .eh_frame) } }\n"
    )
    (folder / "SConstruct").write_text(
        TOOL_HEADER
        + f"\nenv.Replace(ESP_CHIP={chip!r})\nenv.EspToolchain()\n"
        "elf = env.EspProgram('fw.elf', ['app.c'], 'app.ld')\nenv.EspImage('fw.bin', elf)\n"
    )
    proc = scons(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_elf(folder / "fw.elf").arch == info.arch
    ref = tmp_path / "ref.bin"
    run_oracle("esptool", "--chip", chip, "elf2image", "--flash-mode", "dio", "--flash-size", "4MB", "-o", ref, folder / "fw.elf")
    assert (folder / "fw.bin").read_bytes() == ref.read_bytes()
