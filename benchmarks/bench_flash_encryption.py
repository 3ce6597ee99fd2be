#!/usr/bin/env python3
"""Flash encryption speed: our in-process API, our CLI and espsecure, measured in the same run.

Usage: python benchmarks/bench_flash_encryption.py [--runs N] [--sizes 1 4]

For each size (MiB) and scheme (ESP32 AES-256 with FLASH_CRYPT_CONF 0xF,
XTS-AES-128, XTS-AES-256) encrypts random data at 0x10000: in-process with
``flash_encryption.encrypt``, with ``esp-secure encrypt-flash-data`` and with
``espsecure encrypt-flash-data`` (new processes), plus espsecure in-process in
one helper process. Prints medians, ratios, MB/s, and this machine's raw AES
throughput through ``cryptography`` for scale. Outputs are compared: a
benchmark of wrong bytes is worthless.
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
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _timing import compile_checkout  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

from esp_secure_build import flash_encryption as fe  # noqa: E402

MIB = 1024 * 1024
ADDRESS = 0x10000
ESPSECURE_INPROCESS = """
import io, sys, time, statistics, contextlib
from espsecure import encrypt_flash_data
key, data, xts, runs = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
times = []
for _ in range(runs):
    with open(key, "rb") as k, open(data, "rb") as d:
        out = io.BytesIO()
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            encrypt_flash_data(k, out, 0x10000, 0xF, xts, d)
        times.append(time.perf_counter() - t)
print(statistics.median(times))
"""


def _median(func, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _command(module: str) -> list[str]:
    # Always `python -m`: an installed console script may be a stale copy of the package.
    return [sys.executable, "-m", module]


def _raw_aes(size: int, runs: int) -> tuple[float, float]:
    """Seconds for AES-256-ECB and AES-256-XTS over ``size`` bytes in one call each."""
    data = os.urandom(size)
    key = os.urandom(32)
    ecb = _median(lambda: Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(data), runs)
    xts = _median(lambda: Cipher(algorithms.AES(os.urandom(64)), modes.XTS(bytes(16))).encryptor().update(data), runs)
    return ecb, xts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median taken)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4], help="data sizes in MiB (default 1 4)")
    args = parser.parse_args()

    ours_cli = _command("esp_secure_build")
    espsecure_cli = _command("espsecure")
    # Our CLI runs from this working tree.
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    compile_checkout(REPO)
    work = Path(tempfile.mkdtemp(prefix="bench_flash_enc_"))
    schemes = [
        ("ESP32 conf 0xF", fe.SCHEME_ESP32, 32),
        ("XTS-AES-128", fe.SCHEME_XTS, 32),
        ("XTS-AES-256", fe.SCHEME_XTS, 64),
    ]
    print(
        f"{'scheme':<16}{'MiB':>4}{'in-process':>12}{'our CLI':>10}{'espsecure CLI':>15}{'espsecure in-proc':>19}"
        f"{'CLI ratio':>11}{'in-proc ratio':>15}{'ours MB/s':>11}"
    )
    esp32_inproc = {}  # MiB -> our in-process seconds for the ESP32 scheme
    try:
        for mib in args.sizes:
            data = os.urandom(mib * MIB)
            data_file = work / f"data{mib}.bin"
            data_file.write_bytes(data)
            for label, scheme, key_len in schemes:
                key = os.urandom(key_len)
                key_file = work / "key.bin"
                key_file.write_bytes(key)
                xts = scheme == fe.SCHEME_XTS
                flag = ["--aes-xts"] if xts else ["--flash-crypt-conf", "0xf"]
                ours = fe.encrypt(data, key, ADDRESS, scheme)
                inproc = _median(lambda: fe.encrypt(data, key, ADDRESS, scheme), args.runs)  # noqa: B023
                if scheme == fe.SCHEME_ESP32:
                    esp32_inproc[mib] = inproc
                out_ours, out_ref = work / "ours.bin", work / "ref.bin"
                common = ["encrypt-flash-data", "--keyfile", str(key_file), "--address", hex(ADDRESS), *flag]
                cli = _median(
                    lambda: subprocess.run(
                        [*ours_cli, *common, "-o", str(out_ours), str(data_file)],  # noqa: B023
                        check=True,
                        capture_output=True,
                    ),
                    args.runs,
                )
                ref = _median(
                    lambda: subprocess.run(
                        [*espsecure_cli, *common, "-o", str(out_ref), str(data_file)],  # noqa: B023
                        check=True,
                        capture_output=True,
                    ),
                    args.runs,
                )
                if not (out_ours.read_bytes() == out_ref.read_bytes() == ours):
                    sys.exit(f"outputs differ for {label}, {mib} MiB")
                ref_inproc = float(subprocess.run(
                    [sys.executable, "-c", ESPSECURE_INPROCESS, str(key_file), str(data_file), "1" if xts else "0",
                     str(args.runs)], check=True, capture_output=True, text=True).stdout)  # fmt: skip
                print(f"{label:<16}{mib:>4}{inproc * 1000:>10.1f}ms{cli * 1000:>8.0f}ms{ref * 1000:>13.0f}ms"
                      f"{ref_inproc * 1000:>17.0f}ms{ref / cli:>10.1f}x{ref_inproc / inproc:>14.1f}x"
                      f"{len(data) / inproc / 1e6:>11.0f}")  # fmt: skip
        ecb, xts_raw = _raw_aes(max(args.sizes) * MIB, args.runs)
        size = max(args.sizes) * MIB
        print(f"\nraw AES-256 through cryptography on {max(args.sizes)} MiB: ECB {size / ecb / 1e6:.0f} MB/s, "
              f"XTS {size / xts_raw / 1e6:.0f} MB/s")  # fmt: skip
        units = max(args.sizes) * MIB // 32
        floor = _median(lambda: [Cipher(algorithms.AES(bytes(32)), modes.ECB()).decryptor() for _ in range(units)], 1)
        print(
            f"ESP32 per-unit floor (one cipher context per 32-byte unit, no data): {floor * 1000:.0f} ms "
            f"for {max(args.sizes)} MiB; ours in-process is {floor / esp32_inproc[max(args.sizes)]:.1f}x faster"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
