"""Reading inputs with project errors and bounds, and writing outputs atomically.

Every input is opened without blocking and must be a regular file of bounded
size, so a FIFO, ``/dev/zero`` or a directory gets one error line instead of a
hang or an out-of-memory. The CLI also turns on :func:`guard_outputs`: from then
on no write replaces a file this process has read (same inode or same resolved
path, symlinks and hard links included) or a file that holds a key.
"""

from __future__ import annotations

import contextlib
import os
import stat
import zlib

from .errors import EspSecureError

PathLike = str | os.PathLike[str]

MB = 1024 * 1024
# The largest flash any chip supports (the largest size chips.FLASH_SIZES names; a test
# checks): the bound for every size and address, and for inputs of a release (images,
# partitions, data files). Here rather than in chips.py, which costs the CLI ~4 ms to import.
MAX_FLASH_SIZE = 128 * MB
# ELF files carry debug information the image does not: allow more.
MAX_ELF_SIZE = 1024 * MB
# Keys, signatures, digests, configs: small files.
MAX_KEY_SIZE = 64 * 1024

_guarding = False
_inputs: set[tuple[int, int]] = set()  # (st_dev, st_ino) of every file read
_input_paths: set[str] = set()  # their resolved paths


def guard_outputs(on: bool = True) -> None:
    """From now on, refuse writes over this process's inputs and over key files (the CLI's rule)."""
    global _guarding
    _guarding = on
    _inputs.clear()
    _input_paths.clear()


def _open_regular(path: PathLike, what: str, limit: int) -> tuple[int, os.stat_result]:
    """An fd on a regular file no larger than ``limit``; O_NONBLOCK so a FIFO cannot hang us."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise EspSecureError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise EspSecureError(f"{what} is a directory", path) from None
    except OSError as exc:
        raise EspSecureError(f"cannot read {what}: {exc.strerror}", path) from None
    st = os.fstat(fd)
    problem = None
    if stat.S_ISDIR(st.st_mode):
        problem = f"{what} is a directory"
    elif not stat.S_ISREG(st.st_mode):
        problem = f"{what} is not a regular file (a device, FIFO or socket)"
    elif st.st_size > limit:
        problem = f"{what} is too large ({st.st_size} bytes; at most {limit})"
    if problem:
        os.close(fd)
        raise EspSecureError(problem, path)
    return fd, st


def _note_input(path: PathLike, st: os.stat_result) -> None:
    if _guarding:
        _inputs.add((st.st_dev, st.st_ino))
        _input_paths.add(os.path.realpath(path))


def read_bytes(path: PathLike, what: str = "file", limit: int = MAX_FLASH_SIZE) -> bytes:
    """Read a whole regular file of at most ``limit`` bytes, with one-line project errors."""
    fd, st = _open_regular(path, what, limit)
    try:
        with os.fdopen(fd, "rb") as fh:
            # Ask for the size fstat gave (+1 to see growth), not for ``limit``: a read of
            # ``limit + 1`` bytes allocates that much first (128 MiB, ~40 us a file).
            want = min(limit, st.st_size) + 1
            data = fh.read(want)
            if len(data) == want:  # grew since fstat: read on, up to the limit
                data += fh.read(limit + 1 - len(data))
    except OSError as exc:
        raise EspSecureError(f"cannot read {what}: {exc.strerror}", path) from None
    if len(data) > limit:  # grew while we read it
        raise EspSecureError(f"{what} is too large (more than {limit} bytes)", path)
    _note_input(path, st)
    return data


def read_key_bytes(path: PathLike, what: str = "key file") -> bytes:
    """Read a key file: a regular file of at most 64 KiB."""
    return read_bytes(path, what, MAX_KEY_SIZE)


def read_text(path: PathLike, what: str = "file", limit: int = MAX_FLASH_SIZE) -> str:
    """Read a UTF-8 text file (BOM tolerated) with project errors."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EspSecureError(f"{what} is not UTF-8 text (byte {exc.start})", path) from None


def check_input(path: PathLike, what: str = "file", limit: int = MAX_FLASH_SIZE) -> None:
    """Check (and record) an input that is read later by other means, e.g. streamed."""
    fd, st = _open_regular(path, what, limit)
    os.close(fd)
    _note_input(path, st)


def _holds_key(path: str, st: os.stat_result) -> str | None:
    """What kind of key an existing file holds, judged from its contents and mode."""
    if st.st_size > MAX_KEY_SIZE:
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(MAX_KEY_SIZE)
    except OSError:
        return None
    if b"PRIVATE KEY-----" in head:
        return "a private key"
    if len(head) == 4096 and head[68:] == b"\xff" * (4096 - 68) and int.from_bytes(head[64:68], "little") == (
        zlib.crc32(head[:64], 0xFFFFFFFF)
    ):
        return "NVS keys"
    # Raw symmetric keys (flash encryption, HMAC, Secure Boot V1) are written mode 0600.
    if len(head) in (16, 24, 32, 64) and not st.st_mode & 0o077:
        return "a key (mode 0600)"
    return None


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when two paths name one file: same resolved path, or same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_inputs(output: PathLike, *inputs: PathLike | None) -> None:
    """Refuse, before any work, an output that names one of the inputs (whatever the guard)."""
    for path in inputs:
        if path is not None and same_file(path, output):
            raise EspSecureError(INPUT_MESSAGE, output)


INPUT_MESSAGE = "is an input of this command: refusing to write over it (choose another output)"


def check_output(path: PathLike, *, in_place: bool = False) -> None:
    """Refuse an output that would replace an input of this process or a key (when guarding).

    ``in_place``: replacing an input is the point (sign-data without --output); keys stay protected.
    """
    if not _guarding:
        return
    target = os.fspath(path)
    try:
        st: os.stat_result | None = os.stat(target)
    except OSError:
        st = None
    is_input = os.path.realpath(target) in _input_paths or (st is not None and (st.st_dev, st.st_ino) in _inputs)
    if is_input and not in_place:
        raise EspSecureError(INPUT_MESSAGE, path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise EspSecureError("output is a directory", path)
    if not stat.S_ISREG(st.st_mode):
        raise EspSecureError("output is not a regular file (a device, FIFO or socket)", path)
    kind = _holds_key(target, st)
    if kind:
        raise EspSecureError(f"exists and holds {kind}: refusing to overwrite it (delete it first if you mean it)",
                             path)  # fmt: skip


def write_atomic(path: PathLike, data: bytes, mode: int | None = None, *, in_place: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    A reader never sees a partial file, and a failure leaves no output behind.
    ``mode`` (e.g. 0o600 for key files) is applied before the data is written.
    ``in_place`` allows replacing an input (sign-data without --output, as espsecure).
    """
    check_output(path, in_place=in_place)
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


def write_new(path: PathLike, data: bytes, mode: int = 0o600, what: str = "key file") -> None:
    """Create ``path`` holding ``data``; refuse if anything (a file, a dangling link) is there.

    For key files: no key ever replaces another, even when two processes make the
    same file at once. The data goes to a temporary file first and is hard-linked
    into place, which fails when the name exists, so a reader never sees a partial
    key either. ``mode`` is exact, whatever the umask.
    """
    target = os.fspath(path)
    if os.path.lexists(target):
        raise EspSecureError(f"{what} already exists; not replacing it", path)
    folder = os.path.dirname(target) or "."
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise EspSecureError(f"cannot write {what}: {exc.strerror}", path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)  # atomic, and fails if the name exists
        except FileExistsError:
            raise EspSecureError(f"{what} already exists; not replacing it", path) from None
        except OSError:  # a file system without hard links: exclusive creation of the name itself
            _write_exclusive(target, data, mode, what)
    except OSError as exc:
        raise EspSecureError(f"cannot write {what}: {exc.strerror}", path) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _write_exclusive(target: str, data: bytes, mode: int, what: str) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise EspSecureError(f"{what} already exists; not replacing it", target) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise


def make_private_dir(path: PathLike) -> None:
    """Create the folder ``path`` for keys (parents as usual): mode 0700 whatever the umask.

    A folder that exists already is left as it is.
    """
    target = os.path.abspath(os.fspath(path))
    if os.path.isdir(target):
        return
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.mkdir(target, 0o700)
        os.chmod(target, 0o700)  # the umask may have taken bits away; never adds any, but be exact
    except FileExistsError:
        if not os.path.isdir(target):
            raise EspSecureError("is not a folder", path) from None
    except OSError as exc:
        raise EspSecureError(f"cannot create the keys folder: {exc.strerror}", path) from None
