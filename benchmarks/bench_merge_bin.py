#!/usr/bin/env python3
"""merge-bin speed: our CLI against ``esptool merge-bin``, raw and Intel HEX, measured in the same run.

Usage: python benchmarks/bench_merge_bin.py [--runs N] [--mib 4 16]

For each total size, a factory layout of random data (bootloader at 0x0, table at
0x8000, an app at 0x10000 and a data partition filling the rest of the flash) is
merged with ``esp-secure merge-bin`` and ``esptool merge-bin`` (new processes), in
both formats. Outputs are compared byte for byte; medians and ratios are printed.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _timing import compile_checkout  # noqa: E402

MIB = 1024 * 1024


def _time(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, nargs="+", default=[4, 16])
    args = parser.parse_args()
    compile_checkout(REPO)
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    work = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    print(f"{'flash':>6} {'format':>6} {'ours':>9} {'esptool':>9} {'ratio':>7}")
    try:
        for mib in args.mib:
            layout = [(0x0, 24 * 1024), (0x8000, 0xC00), (0x10000, min(4 * MIB, mib * MIB // 2))]
            data_start = 0x10000 + layout[-1][1]
            layout.append((data_start, mib * MIB - data_start))
            pairs: list[str] = []
            for i, (address, size) in enumerate(layout):
                path = work / f"part{i}.bin"
                path.write_bytes(os.urandom(size))
                pairs += [hex(address), path.name]
            for fmt in ("raw", "hex"):
                ours = [sys.executable, "-m", "esp_secure_build", "--chip", "esp32c3", "merge-bin", "-f", fmt,
                        "-o", f"ours.{fmt}", *pairs]  # fmt: skip
                ref = [sys.executable, "-m", "esptool", "--chip", "esp32c3", "merge-bin", "-f", fmt,
                       "-o", f"ref.{fmt}", *pairs]  # fmt: skip
                ours_t, ref_t = [], []
                for _ in range(args.runs):  # interleaved, so drift hits both alike
                    ours_t.append(_time(ours, work))
                    ref_t.append(_time(ref, work))
                if (work / f"ours.{fmt}").read_bytes() != (work / f"ref.{fmt}").read_bytes():
                    sys.exit(f"outputs differ: {mib} MiB {fmt}")
                o, r = statistics.median(ours_t) * 1000, statistics.median(ref_t) * 1000
                print(f"{mib:>4}MiB {fmt:>6} {o:>7.0f}ms {r:>7.0f}ms {r / o:>6.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
