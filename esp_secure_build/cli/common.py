"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse


def add_option(parser: argparse.ArgumentParser, *names: str, **kwargs: object) -> argparse.Action:
    """Add an option under its dash spelling and the old underscore spelling.

    esptool 5 renamed ``--flash_mode`` to ``--flash-mode`` and still accepts the
    old one; so do we, so scripts written for either version keep working.
    """
    spellings: list[str] = []
    for name in names:
        spellings.append(name)
        if name.startswith("--") and "-" in name[2:]:
            old = "--" + name[2:].replace("-", "_")
            if old not in spellings:
                spellings.append(old)
    return parser.add_argument(*spellings, **kwargs)


def parse_int(text: str) -> int:
    """An integer in decimal or 0x-hex, as the reference tools accept it."""
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def parse_size(text: str) -> int:
    """A size such as ``4096``, ``0x1000``, ``64KB``, ``1MB`` or ``4M`` (argparse type)."""
    from ..image import parse_size as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_allow_published(parser: argparse.ArgumentParser) -> None:
    """The override for keys everyone knows (published test keys, keys without entropy)."""
    add_option(parser, "--allow-published-key", action="store_true",
               help="allow a publicly known or constant test key (for tests only; refused by default)")  # fmt: skip


def refuse_known_key(args: argparse.Namespace, kind: str, data: bytes, path: object) -> None:
    """Refuse a secret key of ``kind`` that anyone can know, unless --allow-published-key."""
    if not getattr(args, "allow_published_key", False):
        from ..secure_boot.published_keys import refuse_weak_or_published

        refuse_weak_or_published(kind, data, path)
