#!/usr/bin/env python3
"""elf2image speed: our in-process API, our CLI and esptool, measured in the same run.

Usage: python benchmarks/bench_elf2image.py [--runs N]

Builds the sample project's ELFs (ESP32-C3 and ESP32) in a temporary copy, adds
the largest ELF of the reference vectors, then converts each one: in-process
(read_elf + elf_to_image), with `esp-secure elf2image` and with
`esptool elf2image` (new processes), and esptool in-process in one helper
process for reference. Prints medians in milliseconds and the ratios.
Outputs are compared too: a benchmark of wrong bytes is worthless.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from _timing import compile_checkout, median_ms  # noqa: E402

from esp_secure_build.chips import get_chip  # noqa: E402
from esp_secure_build.elf import read_elf  # noqa: E402
from esp_secure_build.image import ImageOptions, elf_to_image  # noqa: E402

BIN = Path(sys.executable).parent
ESPTOOL_INPROCESS = """
import io, sys, time, statistics, contextlib
from esptool.cmds import elf2image
chip, elf, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(runs):
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        elf2image(elf, chip, None, flash_mode="dio", flash_size="4MB")
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""




def _convert(elf_path: Path, chip: object, options: ImageOptions) -> bytes:
    return elf_to_image(read_elf(elf_path), chip, options)  # type: ignore[arg-type]


def _command(name: str, module: str) -> list[str]:
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs per measurement (median taken)")
    args = parser.parse_args()

    from sconsutil import copy_sample, scons

    work = Path(tempfile.mkdtemp(prefix="bench_elf2image_"))
    inputs: list[tuple[str, Path]] = []
    for chip in ("esp32c3", "esp32"):
        project = copy_sample(work / chip)
        proc = scons(project, "release", f"ESP_CHIP={chip}")
        if proc.returncode:
            sys.exit(f"building the sample for {chip} failed:\n{proc.stdout}{proc.stderr}")
        inputs += [(chip, project / f"build/{chip}/app.elf"), (chip, project / f"build/{chip}/bootloader.elf")]
    # A bigger app than the sample's: espflash's ESP32 blinky (tests/vectors/README.md).
    inputs.append(("esp32", REPO / "tests/vectors/esptool/espflash/esp32_hal_blinky.elf"))

    # Our CLI from this checkout (not an installed copy); the reference as installed.
    ours_cli = [sys.executable, "-m", "esp_secure_build"]
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    compile_checkout(REPO)
    esptool_cli = _command("esptool", "esptool")
    print(f"{'input':<34}{'size':>9}{'in-process':>12}{'our CLI':>10}{'esptool CLI':>13}{'esptool in-proc':>17}"
          f"{'CLI ratio':>11}{'in-proc ratio':>15}")
    cli_ratios, inproc_ratios = [], []
    for chip_name, elf_path in inputs:
        chip = get_chip(chip_name)
        options = ImageOptions(flash_mode="dio", flash_size="4MB")
        ours_bytes = elf_to_image(read_elf(elf_path), chip, options)
        inproc = median_ms(partial(_convert, elf_path, chip, options), args.runs * 5)
        out_ours, out_ref = work / "ours.bin", work / "ref.bin"
        common = ["--chip", chip_name, "elf2image", "--flash-mode", "dio", "--flash-size", "4MB"]
        ours_cmd = [*ours_cli, *common, "-o", str(out_ours), str(elf_path)]
        ref_cmd = [*esptool_cli, *common, "-o", str(out_ref), str(elf_path)]
        cli = median_ms(partial(subprocess.run, ours_cmd, check=True, capture_output=True), args.runs)
        ref = median_ms(partial(subprocess.run, ref_cmd, check=True, capture_output=True), args.runs)
        if not (out_ours.read_bytes() == out_ref.read_bytes() == ours_bytes):
            sys.exit(f"outputs differ for {elf_path}")
        ref_inproc = float(subprocess.run([sys.executable, "-c", ESPTOOL_INPROCESS, chip_name, str(elf_path), str(args.runs * 5)],
                                          check=True, capture_output=True, text=True).stdout) * 1000
        cli_ratios.append(ref / cli)
        inproc_ratios.append(ref / inproc)
        label = f"{chip_name}:{elf_path.parent.name}/{elf_path.name}"[-33:]
        print(f"{label:<34}{elf_path.stat().st_size:>9}{inproc:>10.2f}ms{cli:>8.1f}ms{ref:>11.1f}ms{ref_inproc:>15.2f}ms"
              f"{ref / cli:>10.1f}x{ref / inproc:>14.0f}x")
    print(f"\nmedian ratio, esptool CLI / our CLI:        {statistics.median(cli_ratios):.1f}x (target >= 3x)")
    print(f"median ratio, esptool CLI / our in-process: {statistics.median(inproc_ratios):.0f}x (target >= 20x)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
