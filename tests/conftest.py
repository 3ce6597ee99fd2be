"""Shared test fixtures: the reference vectors, the oracles and our CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI lays shared/ beside the clone; ESP_SECURE_VECTORS overrides.
VECTORS = Path(os.environ.get("ESP_SECURE_VECTORS", REPO.parent / "shared" / "vectors")).resolve()


def load_cases(*kinds: str) -> list[dict]:
    """The cases of ``cases.json`` of the given kinds (all when none given)."""
    path = VECTORS / "cases.json"
    if not path.exists():
        raise RuntimeError(f"reference vectors not found at {VECTORS} (set ESP_SECURE_VECTORS)")
    cases = json.loads(path.read_text())
    return [c for c in cases if not kinds or c["kind"] in kinds]


def case_ids(cases: list[dict]) -> list[str]:
    return [c["id"] for c in cases]


def run_oracle(tool: str, *args: str, cwd: str | os.PathLike[str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a reference tool (esptool, espsecure, esp_idf_nvs_partition_gen) as a subprocess.

    They are GPL test oracles: tests talk to them only through their command line.
    """
    cmd = [sys.executable, "-m", tool, *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"oracle failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_cli(
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    env_extra: dict[str, str] | None = None,
    allow_published_key: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``esp-secure`` as a separate process, as a user would (no terminal on stdin).

    The vectors sign with esptool's published test keys, which a real release must
    never use: ``sign-data`` gets ``--allow-published-key`` unless told otherwise.
    """
    argv = [str(a) for a in args]
    command = next((a for a in argv if a in ("sign-data", "sign_data")), None)
    if allow_published_key and command and "--allow-published-key" not in argv:
        argv.insert(argv.index(command) + 1, "--allow-published-key")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ESP_SECURE_KEY_PASSPHRASE", None)
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "esp_secure_build", *argv]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture
def vectors() -> Path:
    return VECTORS


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """The CLI's contract for bad input: exit 2, one line on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
