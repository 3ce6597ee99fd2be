"""``scons release`` killed with SIGKILL at random moments recovers to a release that verifies.

The sample project is built, killed (the whole process group: SCons and the
compilers, as a power cut or the OOM killer would) at seeded random moments spread
over a full build's duration, built again after each kill, and finally built to
the end: the release must then pass ``esp-secure verify-release``, and every key
file, once it exists, must never change (a kill must not leave a half-written key
that a later build trusts or replaces).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO
from sconsutil import copy_sample, scons

KILLS = 6
SEED = 20261205


def _start(project: Path) -> subprocess.Popen:
    env = dict(os.environ, SOURCE_DATE_EPOCH="1764115200")
    return subprocess.Popen(
        [sys.executable, "-m", "SCons", "-Q", "release"], cwd=project, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _keys(project: Path) -> dict[str, str]:
    folder = project / "keys"
    if not folder.exists():
        return {}
    # Key files only: the build's own records there (dotfiles) grow as keys are made.
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".")
    }


def test_release_survives_sigkill(tmp_path: Path) -> None:
    # How long a whole build takes here, so the kills land across all of it.
    reference = copy_sample(tmp_path / "reference")
    start = time.monotonic()
    assert scons(reference, "release").returncode == 0
    duration = time.monotonic() - start

    project = copy_sample(tmp_path / "killed")
    rng = random.Random(SEED)
    seen: dict[str, str] = {}
    for _ in range(KILLS):
        proc = _start(project)
        time.sleep(rng.uniform(0.05, duration))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for name, digest in _keys(project).items():
            # A key file exists only complete, and once made it is never replaced.
            assert seen.setdefault(name, digest) == digest, f"keys/{name} changed after a kill"

    final = scons(project, "release")
    assert final.returncode == 0, final.stdout + final.stderr
    for name, digest in _keys(project).items():
        assert seen.get(name, digest) == digest, f"keys/{name} replaced by the build after the kills"

    check = subprocess.run(
        [sys.executable, "-m", "esp_secure_build", "verify-release", "--flash-key",
         "keys/esp32c3_flash_encryption_key.bin", "build/release"],
        cwd=project, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "VERIFIED" in check.stdout
    # And nothing is left to do.
    assert scons(project, "-q", "release").returncode == 0
