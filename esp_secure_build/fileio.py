"""Reading inputs with project errors, and writing outputs atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import EspSecureError

PathLike = str | os.PathLike[str]


def read_bytes(path: PathLike, what: str = "file") -> bytes:
    """Read a whole file, turning OS errors into one-line project errors."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise EspSecureError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise EspSecureError(f"{what} is a directory", path) from None
    except OSError as exc:
        raise EspSecureError(f"cannot read {what}: {exc.strerror}", path) from None


def read_text(path: PathLike, what: str = "file") -> str:
    """Read a UTF-8 text file (BOM tolerated) with project errors."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EspSecureError(f"{what} is not UTF-8 text (byte {exc.start})", path) from None


def write_atomic(path: PathLike, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    A reader never sees a partial file, and a failure leaves no output behind.
    ``mode`` (e.g. 0o600 for key files) is applied before the data is written.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise EspSecureError(f"cannot write output: {exc.strerror}", path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            else:
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
            fh.write(data)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise EspSecureError(f"cannot write output: {exc.strerror}", path) from None
        raise


def write_text_atomic(path: PathLike, text: str, mode: int | None = None) -> None:
    """Atomic write of UTF-8 text."""
    write_atomic(path, text.encode("utf-8"), mode)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
