#!/usr/bin/env python3
"""NVS speed: one partition (ours in-process and CLI vs the reference CLI) and manufacturing at scale.

Usage: python benchmarks/bench_nvs.py [--runs N] [--devices N]

1. The sample project's nvs.csv -> 0x6000 partition: our in-process
   generate_partition, `esp-secure nvs generate` and
   `python -m esp_idf_nvs_partition_gen generate`, medians and ratios (outputs compared).
2. Manufacturing: N devices (default 10,000), each an encrypted 0x6000 partition
   plus its own keys partition (`esp-secure nvs mfg generate ... --keygen`), wall time
   and devices/s; the reference rate is one `encrypt --keygen` process per device
   (what mfg_gen.py runs), measured on 20 devices and extrapolated.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _timing import compile_checkout, median_ms  # noqa: E402

from esp_secure_build.nvs import generate_partition  # noqa: E402

SAMPLE = REPO / "sample_project"
CONFIG = """config,namespace,
serial_no,data,string
device_name,data,string
wifi_ssid,data,string
wifi_pass,data,string
boot_count,data,u32
calib_offset,data,i16
cert_sha256,data,hex2bin
"""




def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    compile_checkout(REPO)
    ours = [sys.executable, "-m", "esp_secure_build"]
    ref = [sys.executable, "-m", "esp_idf_nvs_partition_gen"]
    work = Path(tempfile.mkdtemp(prefix="bench_nvs_"))

    # 1. one partition
    inproc = median_ms(partial(generate_partition, SAMPLE / "nvs.csv", 0x6000, base_dir=SAMPLE), args.runs * 5)
    cli = median_ms(partial(_run, [*ours, "nvs", "generate", "nvs.csv", str(work / "ours.bin"), "0x6000"], SAMPLE), args.runs)
    refcli = median_ms(partial(_run, [*ref, "generate", "nvs.csv", str(work / "ref.bin"), "0x6000"], SAMPLE), args.runs)
    if (work / "ours.bin").read_bytes() != (work / "ref.bin").read_bytes():
        sys.exit("outputs differ")
    print("one partition (sample nvs.csv, 0x6000):")
    print(f"  in-process {inproc:.2f} ms, our CLI {cli:.1f} ms, reference CLI {refcli:.1f} ms")
    print(f"  ratio reference CLI / our CLI {refcli / cli:.1f}x; / in-process {refcli / inproc:.0f}x (target >= 20x)")

    # 2. manufacturing
    (work / "config.csv").write_text(CONFIG)
    with open(work / "values.csv", "w") as fh:
        fh.write("serial_no,device_name,wifi_ssid,wifi_pass,boot_count,calib_offset,cert_sha256\n")
        for i in range(args.devices):
            fh.write(f"SN-{i:06d},sensor-{i:06d},factory-ap,pw-{os.urandom(6).hex()},{i},{i % 200 - 100},"
                     f"{os.urandom(32).hex()}\n")  # fmt: skip
    t = time.perf_counter()
    _run([*ours, "nvs", "mfg", "generate", "config.csv", "values.csv", "dev", "0x6000", "--keygen",
          "--fileid", "serial_no", "--outdir", "out"], work)  # fmt: skip
    ours_s = time.perf_counter() - t
    made = len(list((work / "out/bin").iterdir()))
    keys = len(list((work / "out/keys").iterdir()))
    if made != args.devices or keys != args.devices:
        sys.exit(f"expected {args.devices} partitions and keys, found {made} and {keys}")
    # Reference: one process per device, as mfg_gen.py does, on 20 devices.
    sample_dir = work / "ref"
    sample_dir.mkdir()
    times = []
    for i in range(20):
        device = work / "out/csv" / f"dev-SN-{i:06d}.csv"
        t = time.perf_counter()
        _run([*ref, "encrypt", str(device), f"d{i}.bin", "0x6000", "--keygen", "--keyfile", f"k{i}.bin",
              "--outdir", str(sample_dir)], sample_dir)  # fmt: skip
        times.append(time.perf_counter() - t)
    ref_rate = 1 / statistics.mean(times)
    print(f"manufacturing, {args.devices} encrypted 0x6000 partitions + keys partitions ({os.cpu_count()} cores):")
    print(f"  ours {ours_s:.1f} s ({args.devices / ours_s:.0f} devices/s; target < 30 s)")
    print(f"  reference {ref_rate:.1f} devices/s (one process per device, 20 measured) -> "
          f"{args.devices / ref_rate / 60:.0f} min for {args.devices}; ratio {args.devices / ours_s / ref_rate:.0f}x")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
