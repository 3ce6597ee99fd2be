"""The one error type the core raises for bad input."""

from __future__ import annotations

import os


class EspSecureError(Exception):
    """Bad input or a refused operation: one line naming the file and the problem.

    ``path`` is the file the problem is about (or None when there is none);
    ``hint`` is an optional short "what to do" appended to the message.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, hint: str | None = None):
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text += f" ({self.hint})"
        # Keep it one line whatever the message contains.
        return " ".join(text.split())
