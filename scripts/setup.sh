#!/usr/bin/env bash
# Install what esp-secure-build needs on Debian 12 (as root): the cross compilers,
# SoftHSM2 for the PKCS#11 tests, and a virtual environment in .venv with the
# package (and, with --test, its test extra: pytest, hypothesis, the reference
# tools used as oracles). Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[[ "${1:-}" == "--test" ]] && extra="[test]"

packages=(gcc-riscv64-unknown-elf gcc-xtensa-lx106 softhsm2 openssl)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    rm -rf .venv
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        # Debian's own python3 needs python3-venv for ensurepip.
        rm -rf .venv
        SUDO=""
        [[ $(id -u) -ne 0 ]] && SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        "$PYTHON" -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip
# A real (non-editable) install: the tests check the installed package too.
.venv/bin/python -m pip install -q ".${extra}"
