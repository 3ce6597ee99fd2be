"""CSV reading with the line number of every record, for one-line error messages."""

from __future__ import annotations

import csv
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator

from ..errors import EspSecureError
from ..fileio import PathLike, read_text


class CsvRow(namedtuple("CsvRow", "key type encoding value line path")):
    """One row of an NVS CSV. ``None`` marks a column the row is too short to have.

    A named tuple rather than a dataclass: ``dataclasses`` imports ``inspect``,
    which costs a CLI start more than generating a partition.
    """

    __slots__ = ()
    key: str | None
    type: str | None
    encoding: str | None
    value: str | None
    line: int
    path: str

    def error(self, problem: str) -> EspSecureError:
        """An error naming this row's file and line."""
        return EspSecureError(f"line {self.line}: {problem}", self.path)


def csv_records(lines: Iterable[str], skip: Callable[[str], bool] | None = None) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) for each CSV record; blank records are dropped.

    ``lines`` are physical lines (newlines kept); lines for which ``skip`` is true
    are removed before parsing (the reference drops ``#`` lines that way).
    """
    state = {"line": 0, "start": 0}

    def feed() -> Iterator[str]:
        for number, text in enumerate(lines, start=1):
            if skip is not None and skip(text):
                continue
            state["line"] = number
            if not state["start"]:
                state["start"] = number
            yield text

    reader = csv.reader(feed(), delimiter=",")
    while True:
        state["start"] = 0
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise EspSecureError(f"line {state['line']}: bad CSV: {exc}") from None
        if fields:
            yield state["start"], fields


def _universal_lines(text: str) -> list[str]:
    """Split as Python's text mode does (\\r\\n and \\r become \\n), keeping line ends."""
    return text.replace("\r\n", "\n").replace("\r", "\n").splitlines(keepends=True)


def read_nvs_csv(path: PathLike, text: str | None = None) -> list[CsvRow]:
    """The data rows of an NVS CSV (header ``key,type,encoding,value`` in any order).

    Lines starting with ``#`` are comments, as for the reference, which drops them
    before the CSV parser sees them.
    """
    name = str(path)
    if text is None:
        text = read_text(path, "NVS CSV file")
    rows: list[CsvRow] = []
    header: list[str] | None = None
    try:
        for line, fields in csv_records(_universal_lines(text), skip=lambda s: s.startswith("#")):
            if header is None:
                header = fields
                missing = [c for c in ("key", "type", "encoding", "value") if c not in header]
                if missing:
                    raise EspSecureError(
                        f"line {line}: header lacks column(s) {', '.join(missing)} (expected key,type,encoding,value)",
                        name,
                    )
                continue
            record = dict(zip(header, fields, strict=False))  # DictReader: short rows get None
            rows.append(
                CsvRow(record.get("key"), record.get("type"), record.get("encoding"), record.get("value"), line, name)
            )
    except EspSecureError as exc:
        if exc.path is None:
            raise EspSecureError(exc.message, name) from None
        raise
    if header is None:
        raise EspSecureError("empty CSV: no header line key,type,encoding,value", name)
    return rows
