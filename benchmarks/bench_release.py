#!/usr/bin/env python3
"""The post-link part of a release, both ways, on the sample project's ELFs (ESP32-C3).

Usage: python benchmarks/bench_release.py [--runs N] [--gen-esp32part PATH]

Reference chain, as an ESP-IDF user runs it (one process per step): ``esptool
elf2image`` for the app and the bootloader, ``espsecure sign-data`` for both, ESP-IDF's
``gen_esp32part.py`` (give its path, or set IDF_PATH; without it the chain has 11
processes and says so), ``esp_idf_nvs_partition_gen encrypt``, ``espsecure
encrypt-flash-data`` for each flash-encrypted region (bootloader, partition table,
NVS keys, app) and ``esptool merge-bin`` raw and hex.

Ours: ``scons release`` in a copy of sample_project/ after deleting everything made
after the link (the images, the release folder), so it redoes the same steps plus the
release's verification, the manifest and the provisioning files; and a no-op
``scons release``. Runs are interleaved; medians and ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _timing import compile_checkout  # noqa: E402

CHIP = "esp32c3"
FLASH = ["--flash-mode", "dio", "--flash-freq", "80m", "--flash-size", "4MB"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")


def _scons() -> list[str]:
    script = Path(sys.executable).with_name("scons")
    return [str(script)] if script.exists() else [sys.executable, "-m", "SCons"]


def _timed(func: object) -> tuple[float, float]:
    """Wall time and the CPU time (user + system) of the child processes, in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    func()  # type: ignore[operator]
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _find_gen_esp32part(given: str | None) -> Path | None:
    candidates = [given] if given else []
    if os.environ.get("IDF_PATH"):
        candidates.append(os.path.join(os.environ["IDF_PATH"], "components", "partition_table", "gen_esp32part.py"))
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--gen-esp32part", metavar="PATH", help="ESP-IDF's gen_esp32part.py (default: $IDF_PATH's)")
    args = parser.parse_args()
    compile_checkout(REPO)
    gen_part = _find_gen_esp32part(args.gen_esp32part)

    work = Path(tempfile.mkdtemp(prefix="bench-release-"))
    try:
        project = work / "sample_project"
        shutil.copytree(REPO / "sample_project", project, ignore=shutil.ignore_patterns("build", "keys", ".sconsign*"))
        shutil.copytree(REPO / "site_scons", work / "site_scons")
        env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000", PYTHONPATH=str(REPO))
        scons = [*_scons(), "-Q", "release"]
        _run(scons, project, env)  # compile, make the development keys, first release

        build, release, keys = project / "build" / CHIP, project / "build" / "release", project / "keys"
        key = next(keys.glob(f"{CHIP}_secure_boot_v2_*.pem"))
        flash_key = keys / f"{CHIP}_flash_encryption_key.bin"
        nvs_keys = keys / f"{CHIP}_nvs_keys.bin"
        ref = work / "reference"
        ref.mkdir()
        tool = [sys.executable, "-m"]
        enc = ["encrypt-flash-data", "--aes-xts", "--keyfile", str(flash_key)]
        steps = [
            [*tool, "esptool", "--chip", CHIP, "elf2image", *FLASH, "--secure-pad-v2", "-o", "app-unsigned.bin",
             str(build / "app.elf")],
            [*tool, "esptool", "--chip", CHIP, "elf2image", *FLASH, "-o", "bootloader-unsigned.bin",
             str(build / "bootloader.elf")],
            [*tool, "espsecure", "sign-data", "--version", "2", "--keyfile", str(key), "-o", "app.bin",
             "app-unsigned.bin"],
            [*tool, "espsecure", "sign-data", "--version", "2", "--keyfile", str(key), "-o", "bootloader.bin",
             "bootloader-unsigned.bin"],
        ]  # fmt: skip
        if gen_part:
            steps.append([sys.executable, str(gen_part), "-q", str(project / "partitions.csv"), "partition-table.bin"])
        else:
            shutil.copy(release / "partition-table.bin", ref / "partition-table.bin")
        steps += [
            [*tool, "esp_idf_nvs_partition_gen", "encrypt", str(project / "nvs.csv"), "nvs.bin", "0x6000",
             "--inputkey", str(nvs_keys)],
            [*tool, "espsecure", *enc, "--address", "0x0", "-o", "e-boot.bin", "bootloader.bin"],
            [*tool, "espsecure", *enc, "--address", "0x8000", "-o", "e-table.bin", "partition-table.bin"],
            [*tool, "espsecure", *enc, "--address", "0xf000", "-o", "e-nvskeys.bin", str(nvs_keys)],
            [*tool, "espsecure", *enc, "--address", "0x10000", "-o", "e-app.bin", "app.bin"],
        ]  # fmt: skip
        regions = ["0x0", "e-boot.bin", "0x8000", "e-table.bin", "0x9000", "nvs.bin", "0xf000", "e-nvskeys.bin",
                   "0x10000", "e-app.bin"]  # fmt: skip
        for fmt, out in (("raw", "factory.bin"), ("hex", "factory.hex")):
            steps.append([*tool, "esptool", "--chip", CHIP, "merge-bin", "-f", fmt, "-o", out, *regions])
        nvs_cwd = project  # nvs.csv names its files relative to the project

        def reference() -> None:
            for step in steps:
                _run(step, nvs_cwd if "esp_idf_nvs_partition_gen" in step else ref)

        def invalidate() -> None:
            shutil.rmtree(release)
            for name in ("app-unsigned.bin", "bootloader-unsigned.bin"):
                (build / name).unlink()

        def ours() -> None:
            _run(scons, project, env)

        # The NVS step of the reference chain names its output relative to the project.
        steps = [[a if a != "nvs.bin" else str(ref / "nvs.bin") for a in s] for s in steps]
        times: dict[str, list[tuple[float, float]]] = {"reference": [], "ours": [], "no-op": []}
        reference()
        for _ in range(args.runs):
            times["reference"].append(_timed(reference))
            invalidate()
            times["ours"].append(_timed(ours))
            times["no-op"].append(_timed(ours))
        # Same steps, same bytes where they are deterministic (XTS encryption of the same inputs).
        if (ref / "e-nvskeys.bin").read_bytes() != (release / "encrypted" / "nvs_keys.bin").read_bytes():
            sys.exit("the reference chain and ours disagree on the encrypted NVS keys partition")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(w for w, _ in v) * 1000 for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) * 1000 for k, v in times.items()}
    print(f"post-link release of sample_project ({CHIP}, RSA-3072 Secure Boot V2, XTS-AES-128), {args.runs} runs")
    print("  medians, wall and CPU (user + system of the processes; CPU is what a busy machine does not distort)")
    chain = f"reference chain, {len(steps)} processes" + ("" if gen_part else " (no gen_esp32part.py given)")
    rows = [
        (chain, "reference"),
        ("ours: scons release redoing the same steps, verification included", "ours"),
        ("ours: no-op scons release (verifies again)", "no-op"),
    ]
    for label, key in rows:
        print(f"  {label:<70} {med[key]:7.0f} ms wall {cpu[key]:7.0f} ms CPU")
    print(f"  ratio reference / ours: {med['reference'] / med['ours']:.1f}x wall, "
          f"{cpu['reference'] / cpu['ours']:.1f}x CPU (target >= 10x); no-op {med['no-op']:.0f} ms wall "
          f"(target <= 200 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
