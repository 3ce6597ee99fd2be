"""Manufacturing: one NVS partition per device from a config CSV and a values CSV.

Output layout and bytes as ESP-IDF's ``tools/mass_mfg/mfg_gen.py generate``:
``OUTDIR/csv/PREFIX-ID.csv`` (the device's NVS CSV, written by Python's
``csv.writer``), ``OUTDIR/bin/PREFIX-ID.bin`` and, with ``--keygen``,
``OUTDIR/keys/keys-PREFIX-ID.bin`` (plus ``hmac-keys-PREFIX-ID.bin`` with a
generated HMAC key). Unlike it, nothing is written next to the inputs.

The values CSV is streamed twice, so memory does not grow with the number of
devices (beyond the set of file ids, to refuse duplicates): a first pass checks
its structure, the file ids and that no output exists yet, for every device,
before anything is written; the second builds devices in worker processes in
bounded batches while the main process writes them in row order. A bad value
stops the run and removes every file the run wrote: all devices or none.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EspSecureError
from ..fileio import PathLike, check_input, read_text, write_atomic
from .crypto import NvsKeys, random_hmac_key
from .csvfile import CsvRow, csv_records
from .generate import PRIMITIVES, TYPES, NvsBuilder
from .layout import KEY_MAX_LEN

if TYPE_CHECKING:
    import multiprocessing.context

_ENCODINGS = (*PRIMITIVES, "string", "binary", "hex2bin", "base64")


@dataclass(frozen=True)
class ConfigLine:
    """One config line: ``key,type,encoding`` plus an optional ``REPEAT`` marker."""

    fields: tuple[str, ...]  # as copied into each device CSV (REPEAT removed)
    line: int
    repeat: bool

    @property
    def key(self) -> str:
        return self.fields[0]

    @property
    def is_namespace(self) -> bool:
        return self.fields[1] == "namespace"


@dataclass(frozen=True)
class MfgConfig:
    """The layout every device's partition follows."""

    lines: tuple[ConfigLine, ...]
    path: str

    @property
    def data_lines(self) -> tuple[ConfigLine, ...]:
        return tuple(c for c in self.lines if not c.is_namespace)


@dataclass(frozen=True)
class MfgEncryption:
    """How device partitions are encrypted (``None`` for plain partitions).

    ``keys``: one keys partition for every device (``--inputkey``). Otherwise
    (``--keygen``) each device gets its keys file: random keys, or, with
    ``hmac_key``, keys derived from that HMAC key, or, with ``hmac_keygen``, a
    fresh HMAC key per device and keys derived from it.
    """

    keys: NvsKeys | None = None
    hmac_key: bytes | None = field(default=None, repr=False)
    hmac_keygen: bool = False

    @property
    def keygen(self) -> bool:
        return self.keys is None


@dataclass(frozen=True)
class MfgOptions:
    size: int
    version: int = 2
    fileid: str | None = None
    encryption: MfgEncryption | None = None
    base_dir: Path | None = None  # where ``file`` values are looked up (default: CWD)


@dataclass
class DeviceOutput:
    """Everything one device gets, built in memory before anything is written."""

    line: int
    fileid: str
    csv: bytes
    nvs: bytes
    keys: bytes | None = field(default=None, repr=False)
    hmac_key: bytes | None = field(default=None, repr=False)


def read_mfg_config(path: PathLike) -> MfgConfig:
    """Parse and check a manufacturing config CSV."""
    name = str(path)
    text = read_text(path, "config file")
    lines: list[ConfigLine] = []
    namespaces: list[str] = []
    lines_iter = text.replace("\r\n", "\n").replace("\r", "\n").splitlines(keepends=True)
    try:
        records = list(csv_records(lines_iter, skip=str.isspace))
    except EspSecureError as exc:
        raise EspSecureError(exc.message, name) from None
    for line, fields in records:
        repeat = "REPEAT" in fields
        if repeat:
            fields.remove("REPEAT")
        while len(fields) > 3 and not fields[-1].strip():
            fields.pop()  # trailing empty columns, e.g. "app,namespace,," from a spreadsheet
        if len(fields) != 3:
            raise EspSecureError(f"line {line}: expected key,type,encoding (optionally ,REPEAT)", name)
        key, kind, encoding = fields
        if not key or key.startswith("#"):
            raise EspSecureError(f"line {line}: bad key {key!r}", name)
        if kind not in TYPES:
            raise EspSecureError(f"line {line}: key {key!r}: unknown type {kind!r} (namespace, data or file)", name)
        if kind != "namespace" and not (encoding in _ENCODINGS or encoding.startswith(("blob_fill(", "blob_sz_fill("))):
            raise EspSecureError(f"line {line}: key {key!r}: unsupported encoding {encoding!r}", name)
        _check_layout(name, line, key, kind, namespaces)
        lines.append(ConfigLine(tuple(fields), line, repeat))
    if not lines:
        raise EspSecureError("config file is empty", name)
    return MfgConfig(tuple(lines), name)


def _check_layout(name: str, line: int, key: str, kind: str, namespaces: list[str]) -> None:
    """Problems of the layout itself, reported on the config line rather than on every device."""
    if len(key) > KEY_MAX_LEN or not key.isascii():
        raise EspSecureError(f"line {line}: key {key!r} must be 1 to {KEY_MAX_LEN} ASCII characters", name)
    if kind == "namespace":
        if key in namespaces and key != namespaces[-1]:
            raise EspSecureError(
                f"line {line}: namespace {key!r} re-opened after namespace {namespaces[-1]!r}; group each "
                "namespace's keys",
                name,
            )
        if key not in namespaces:
            namespaces.append(key)
    elif not namespaces:
        raise EspSecureError(f"line {line}: key {key!r} comes before any namespace line", name)


def _device_csv(config: MfgConfig, values: list[str]) -> bytes:
    """The device's NVS CSV exactly as mfg_gen.py writes it (csv.writer, CRLF)."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=",")
    writer.writerow(["key", "type", "encoding", "value"])
    it = iter(values)
    for c in config.lines:
        writer.writerow([*c.fields, ""] if c.is_namespace else [*c.fields, next(it)])
    return buf.getvalue().encode("utf-8")


def build_device(
    config: MfgConfig, opts: MfgOptions, values_path: str, line: int, fileid: str, values: list[str]
) -> DeviceOutput:
    """One device's CSV, partition and keys (``values``: one per data config line)."""
    rows = []
    it = iter(values)
    for c in config.lines:
        value = "" if c.is_namespace else next(it)
        rows.append(CsvRow(c.fields[0], c.fields[1], c.fields[2], value, line, values_path))
    builder = NvsBuilder(opts.size, opts.version, opts.base_dir)
    builder.add_rows(rows)
    enc = opts.encryption
    keys: NvsKeys | None = None
    keys_file = hmac_file = None
    if enc is not None:
        if enc.keys is not None:
            keys = enc.keys
        else:
            if enc.hmac_keygen:
                hmac_file = random_hmac_key()
                keys = NvsKeys.from_hmac_key(hmac_file)
            elif enc.hmac_key is not None:
                keys = NvsKeys.from_hmac_key(enc.hmac_key)
            else:
                keys = NvsKeys.generate()
            keys_file = keys.partition()
    return DeviceOutput(line, fileid, _device_csv(config, values), builder.finish(keys), keys_file, hmac_file)


def _open_values(path: PathLike) -> Iterator[str]:
    check_input(path, "values file")  # a regular file of bounded size, not a FIFO
    try:
        with open(path, encoding="utf-8-sig") as fh:
            yield from fh
    except FileNotFoundError:
        raise EspSecureError("values file not found", path) from None
    except UnicodeDecodeError as exc:
        raise EspSecureError(f"values file is not UTF-8 text (byte {exc.start})", path) from None
    except OSError as exc:
        raise EspSecureError(f"cannot read values file: {exc.strerror}", path) from None


def iter_device_values(
    config: MfgConfig, values_path: PathLike, fileid: str | None
) -> Iterator[tuple[int, str, list[str]]]:
    """(line, file id, values in config order) per device, streaming the values CSV."""
    name = str(values_path)
    records = csv_records(_open_values(values_path), skip=str.isspace)
    try:
        _, header = next(records)
    except StopIteration:
        raise EspSecureError("values file is empty", name) from None
    except EspSecureError as exc:
        raise EspSecureError(exc.message, exc.path or name) from None
    # Each config key takes the next header column of that name, as mfg_gen.py matches them in order.
    columns: list[int] = []
    pos = 0
    for c in config.data_lines:
        try:
            pos = header.index(c.key, pos)
        except ValueError:
            raise EspSecureError(
                f"line {c.line}: key {c.key!r} has no column in the values file header "
                f"(it must list the config keys in config order)",
                config.path,
            ) from None
        columns.append(pos)
        pos += 1
    if fileid is not None and fileid not in header:
        raise EspSecureError(f"--fileid column {fileid!r} is not in the values file header", name)
    id_col = header.index(fileid) if fileid is not None else None
    # mfg_gen.py silently drops a column the config does not name: a value meant for the
    # device would be missing from every partition. Only the --fileid column may be extra.
    for i, column in enumerate(header):
        if i not in columns and i != id_col:
            raise EspSecureError(
                f"column {column!r} of the values file header is not a key of the config file "
                "(add it to the config, or remove the column)",
                name,
            )
    repeats = [col for col, c in zip(columns, config.data_lines, strict=True) if c.repeat]
    first: list[str] | None = None
    number = 0
    try:
        for line, row in records:
            if len(row) != len(header):
                raise EspSecureError(f"line {line}: {len(row)} values for {len(header)} header columns", name)
            if first is None:
                first = row
            else:
                row = list(row)
                for i in repeats:  # REPEAT: the first device's value for every device
                    row[i] = first[i]
            values = [row[i] for i in columns]
            for c, v in zip(config.data_lines, values, strict=True):
                if "\n#" in v:
                    # The device CSV would then have a line starting with "#", which the NVS tool drops.
                    raise EspSecureError(f"line {line}: key {c.key!r}: a value line may not start with '#'", name)
            number += 1
            if id_col is None:
                ident = str(number)
            else:
                ident = row[id_col]
                if not ident or ident in (".", "..") or "/" in ident or "\\" in ident or "\0" in ident:
                    raise EspSecureError(f"line {line}: --fileid value {ident!r} cannot name a file", name)
            yield line, ident, values
    except EspSecureError as exc:
        raise EspSecureError(exc.message, exc.path or name) from None


# -- parallel build -------------------------------------------------------
_WORKER: dict[str, object] = {}


def _init_worker(config: MfgConfig, opts: MfgOptions, values_path: str) -> None:
    _WORKER.update(config=config, opts=opts, values_path=values_path)


def _work(item: tuple[int, str, list[str]]) -> DeviceOutput | str:
    line, ident, values = item
    try:
        return build_device(_WORKER["config"], _WORKER["opts"], _WORKER["values_path"], line, ident, values)  # type: ignore[arg-type]
    except EspSecureError as exc:
        return str(exc)


def _start_method_context() -> multiprocessing.context.BaseContext:
    """fork is fastest, but unsafe in a threaded process (SCons -j): use forkserver/spawn there."""
    import multiprocessing  # here, not at the top: every SCons build imports this module
    import threading

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def device_paths(outdir: Path, prefix: str, ident: str) -> dict[str, Path]:
    """Where one device's files go (mfg_gen.py's layout)."""
    name = f"{prefix}-{ident}"
    return {
        "csv": outdir / "csv" / f"{name}.csv",
        "bin": outdir / "bin" / f"{name}.bin",
        "keys": outdir / "keys" / f"keys-{name}.bin",
        "hmac": outdir / "keys" / f"hmac-keys-{name}.bin",
    }


def _write_device(outdir: Path, prefix: str, dev: DeviceOutput, written: list[Path]) -> None:
    """Write one device's files, adding each to ``written``."""
    paths = device_paths(outdir, prefix, dev.fileid)
    todo = [(paths["csv"], dev.csv, None), (paths["bin"], dev.nvs, None)]
    if dev.hmac_key is not None:
        todo.append((paths["hmac"], dev.hmac_key, 0o600))
    if dev.keys is not None:
        todo.append((paths["keys"], dev.keys, 0o600))
    for path, data, mode in todo:
        write_atomic(path, data, mode)
        written.append(path)


def run_mfg(
    config_path: PathLike,
    values_path: PathLike,
    prefix: str,
    outdir: PathLike,
    opts: MfgOptions,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 256,
) -> int:
    """Build and write every device's files; returns the number of devices."""
    config = read_mfg_config(config_path)
    if not prefix or "/" in prefix or "\\" in prefix:
        raise EspSecureError(f"prefix {prefix!r} cannot start a file name")
    out = Path(outdir)
    keygen = opts.encryption is not None and opts.encryption.keygen
    # Pass 1 (streamed): the values file's structure, file ids and existing outputs are checked
    # for every device before anything is written.
    seen: set[str] = set()
    total = 0
    for line, ident, _ in iter_device_values(config, values_path, opts.fileid):
        if ident in seen:
            raise EspSecureError(f"line {line}: file id {ident!r} repeats an earlier device", values_path)
        seen.add(ident)
        paths = device_paths(out, prefix, ident)
        for kind in ("csv", "bin") + (("keys", "hmac") if keygen else ()):
            if paths[kind].exists():
                raise EspSecureError(f"output of values line {line} exists, refusing to overwrite it", paths[kind])
        total += 1
    seen.clear()
    for sub in ("csv", "bin") + (("keys",) if keygen else ()):
        try:
            (out / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EspSecureError(f"cannot create output folder: {exc.strerror}", out / sub) from None
    # Pass 2: build in worker processes, write in row order.
    items = iter_device_values(config, values_path, opts.fileid)
    jobs = max(1, min(jobs or os.cpu_count() or 1, (total + 15) // 16))
    done = 0
    written: list[Path] = []
    pool = None
    if jobs > 1:
        pool = _start_method_context().Pool(jobs, _init_worker, (config, opts, str(values_path)))
    else:
        _init_worker(config, opts, str(values_path))
    try:
        while True:
            chunk = list(itertools.islice(items, batch))
            if not chunk:
                break
            if pool is not None:
                results: Iterable[DeviceOutput | str] = pool.map(
                    _work, chunk, chunksize=max(1, len(chunk) // (4 * jobs))
                )
            else:
                results = map(_work, chunk)
            for result in results:
                if isinstance(result, str):
                    raise EspSecureError(result)
                _write_device(out, prefix, result, written)
                done += 1
                if progress:
                    progress(done, total)
    except BaseException:
        # All or nothing: a run that fails leaves no device's files (none existed before it).
        for path in written:
            path.unlink(missing_ok=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return done
