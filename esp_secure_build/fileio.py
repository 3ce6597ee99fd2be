"""Reading inputs with project errors, and writing outputs atomically."""

from __future__ import annotations

import contextlib
import os

from .errors import EspSecureError

PathLike = str | os.PathLike[str]


def read_bytes(path: PathLike, what: str = "file") -> bytes:
    """Read a whole file, turning OS errors into one-line project errors."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
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
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    # pathlib and tempfile would add milliseconds to every CLI start; os is enough.
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    except OSError as exc:
        raise EspSecureError(f"cannot write output: {exc.strerror}", path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)  # exact mode, whatever the umask
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
