"""fileio.read_bytes: the whole file, the size limit, files whose size fstat does not tell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from esp_secure_build import fileio
from esp_secure_build.errors import EspSecureError


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 100_000])
def test_reads_the_whole_file_up_to_the_limit(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    assert fileio.read_bytes(path, limit=max(size, 1)) == data
    if size:
        with pytest.raises(EspSecureError, match="too large"):
            fileio.read_bytes(path, limit=size - 1)


def test_a_file_larger_than_fstat_said_is_read_whole_or_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files that grow after fstat, and /proc files (size 0 with content), are read to their end."""
    path = tmp_path / "f.bin"
    data = os.urandom(10_000)
    path.write_bytes(data)
    real_fstat = os.fstat

    def shrunk(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 100,
                               st.st_atime, st.st_mtime, st.st_ctime))  # fmt: skip

    monkeypatch.setattr(fileio.os, "fstat", shrunk)
    assert fileio.read_bytes(path) == data
    with pytest.raises(EspSecureError, match="too large"):
        fileio.read_bytes(path, limit=5_000)
    monkeypatch.undo()
    status = Path("/proc/self/status")
    if status.exists() and status.stat().st_size == 0:
        assert fileio.read_bytes(status).startswith(b"Name:")
