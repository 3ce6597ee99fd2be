"""Running SCons on temporary copies of projects, for the tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

STEP = re.compile(r"^[A-Z][A-Z0-9-]* \S+$")
# First lines of a throw-away SConstruct that loads the tool from this checkout.
TOOL_HEADER = (
    f"env = Environment(tools=[], toolpath=[{str(REPO / 'site_scons' / 'site_tools')!r}])\n"
    "env.Tool('esp_secure')\n"
)


def copy_sample(dest: Path) -> Path:
    """Copy sample_project (and the checkout's site_scons next to it) into ``dest``.

    The package itself is linked, not copied, so the build uses this checkout's code.
    """
    shutil.copytree(REPO / "sample_project", dest / "sample_project", ignore=shutil.ignore_patterns("build", ".sconsign*", "keys"))
    shutil.copytree(REPO / "site_scons", dest / "site_scons")
    (dest / "esp_secure_build").symlink_to(REPO / "esp_secure_build")
    return dest / "sample_project"


def scons(
    project: Path, *args: str, env: dict[str, str] | None = None, source_date_epoch: str | None = "1764115200",
    umask: int | None = None,
) -> subprocess.CompletedProcess:
    """Run scons in ``project``; returns the completed process (stdout and stderr as text).

    ``source_date_epoch``: the default unless ``env`` has one; None: unset. ``umask``: the build's.
    """
    run_env = dict(os.environ if env is None else env)
    if source_date_epoch is None:
        run_env.pop("SOURCE_DATE_EPOCH", None)
    else:
        run_env.setdefault("SOURCE_DATE_EPOCH", source_date_epoch)
    return subprocess.run(
        [sys.executable, "-m", "SCons", "-Q", *args], cwd=project, capture_output=True, text=True, env=run_env,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )  # fmt: skip


def steps(proc: subprocess.CompletedProcess) -> list[str]:
    """The build steps SCons printed: one "LABEL target" line each (summaries are skipped)."""
    return [line for line in proc.stdout.splitlines() if STEP.match(line)]


def release_dir(project: Path, chip: str) -> Path:
    """The sample's release folder for a chip (one per configuration)."""
    return project / ("build/release" if chip == "esp32c3" else f"build/release-{chip}")
