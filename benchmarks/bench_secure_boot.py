#!/usr/bin/env python3
"""Secure Boot signing and verification speed: ours (in-process and CLI) next to espsecure, same run.

Usage: python benchmarks/bench_secure_boot.py [--runs N] [--size BYTES]

Signs a random image (default 1 MiB) with a fresh RSA-3072 key and a fresh
ECDSA P-256 key (Secure Boot V2), and an ECDSA P-256 key for V1; verifies each.
Prints medians in milliseconds and ratios espsecure / ours. Outputs are
cross-checked: espsecure verifies our signatures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _timing import compile_checkout, median_ms  # noqa: E402

from esp_secure_build.secure_boot import v1, v2  # noqa: E402
from esp_secure_build.secure_boot.keys import load_public_key  # noqa: E402
from esp_secure_build.secure_boot.signers import LocalKeySigner  # noqa: E402

BIN = Path(sys.executable).parent




def _tool(name: str, module: str) -> list[str]:
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def _sign_inprocess(version: int, key: Path, data: bytes) -> bytes:
    signer = LocalKeySigner.from_file(key)  # includes loading the key, as a CLI call does
    return v1.sign(data, signer) if version == 1 else v2.sign(data, [signer])


def _verify_inprocess(version: int, key: Path, signed: bytes) -> None:
    pub = load_public_key(key)
    if version == 1:
        v1.verify(signed, pub)
    else:
        v2.verify(signed, pub)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--size", type=int, default=1 << 20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_sb_"))
    data = os.urandom(args.size)
    image = work / "image.bin"
    image.write_bytes(data)
    # Our CLI from this checkout (not an installed copy); the reference as installed.
    ours, espsecure = [sys.executable, "-m", "esp_secure_build"], _tool("espsecure", "espsecure")
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    compile_checkout(REPO)

    print(f"{'operation':<26}{'in-process':>12}{'our CLI':>10}{'espsecure':>11}{'CLI ratio':>11}{'in-proc ratio':>15}")
    ratios_cli, ratios_inproc = [], []
    for version, scheme in ((2, "rsa3072"), (2, "ecdsa256"), (1, "ecdsa256")):
        key = work / f"{scheme}_v{version}.pem"
        _run([*espsecure, "generate-signing-key", "--version", str(version), *(["--scheme", scheme] if version == 2 else []), str(key)])
        ours_out, ref_out = work / "ours.bin", work / "ref.bin"
        sign_args = ["sign-data", "--version", str(version), "--keyfile", str(key)]
        rows = [
            ("sign", partial(_sign_inprocess, version, key, data),
             [*ours, *sign_args, "-o", str(ours_out), str(image)], [*espsecure, *sign_args, "-o", str(ref_out), str(image)]),
            ("verify", None, [*ours, "verify-signature", "--version", str(version), "--keyfile", str(key), str(ours_out)],
             [*espsecure, "verify-signature", "--version", str(version), "--keyfile", str(key), str(ours_out)]),
        ]  # fmt: skip
        for op, inproc_func, ours_cmd, ref_cmd in rows:
            if inproc_func is None:
                signed = ours_out.read_bytes()
                inproc_func = partial(_verify_inprocess, version, key, signed)
            inproc = median_ms(inproc_func, args.runs)
            cli = median_ms(partial(_run, ours_cmd), args.runs)
            ref = median_ms(partial(_run, ref_cmd), args.runs)
            ratios_cli.append(ref / cli)
            ratios_inproc.append(ref / inproc)
            label = f"V{version} {scheme} {op}"
            print(f"{label:<26}{inproc:>10.1f}ms{cli:>8.1f}ms{ref:>9.1f}ms{ref / cli:>10.1f}x{ref / inproc:>14.1f}x")
        # espsecure must accept what we made
        _run([*espsecure, "verify-signature", "--version", str(version), "--keyfile", str(key), str(ours_out)])
    print(f"\nmedian ratio, espsecure CLI / our CLI:        {statistics.median(ratios_cli):.1f}x (target >= 3x)")
    print(f"median ratio, espsecure CLI / our in-process: {statistics.median(ratios_inproc):.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
