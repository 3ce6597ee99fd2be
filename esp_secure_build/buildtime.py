"""The build time in app and bootloader descriptors: reproducible by default.

``SOURCE_DATE_EPOCH`` when set; otherwise the committer time of the last commit when
the project is a git checkout; otherwise a fixed time, 1980-01-01 00:00:00 UTC (the
earliest a zip file can hold, as wheels use). Never the clock: two builds of the same
sources give the same bytes wherever and whenever they run.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any, NamedTuple

from .errors import EspSecureError

FIXED_EPOCH = 315532800  # 1980-01-01 00:00:00 UTC


class BuildTime(NamedTuple):
    epoch: int
    source: str  # "SOURCE_DATE_EPOCH", "git" or "fixed"
    commit: str | None = None

    def utc(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.epoch))

    def describe(self) -> str:
        if self.source == "git":
            return f"{self.utc()}, the last git commit {self.commit[:12] if self.commit else ''}"
        if self.source == "fixed":
            return f"{self.utc()}, fixed (no SOURCE_DATE_EPOCH and not a git checkout)"
        return f"{self.utc()}, from SOURCE_DATE_EPOCH"

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"source_date_epoch": self.epoch, "utc": self.utc(), "source": self.source}
        if self.commit:
            result["commit"] = self.commit
        return result


def parse_epoch(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise EspSecureError(f"SOURCE_DATE_EPOCH={text!r} is not a number of seconds") from None
    if not 0 <= value < 2**32:
        raise EspSecureError(f"SOURCE_DATE_EPOCH={text!r} is out of range")
    return value


def git_commit_time(folder: str) -> tuple[int, str] | None:
    """(committer time, commit id) of HEAD when ``folder`` is in a git checkout, else None."""
    try:
        proc = subprocess.run(
            ["git", "-C", folder, "log", "-1", "--format=%ct %H"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    fields = proc.stdout.split()
    if proc.returncode != 0 or len(fields) != 2 or not fields[0].isdigit():
        return None
    return int(fields[0]), fields[1]


def build_time(project_dir: str, source_date_epoch: str | None = None) -> BuildTime:
    """The build time of the project in ``project_dir``; see the module docstring."""
    if source_date_epoch:
        return BuildTime(parse_epoch(source_date_epoch), "SOURCE_DATE_EPOCH")
    found = git_commit_time(project_dir)
    if found is not None:
        return BuildTime(found[0], "git", found[1])
    return BuildTime(FIXED_EPOCH, "fixed")
