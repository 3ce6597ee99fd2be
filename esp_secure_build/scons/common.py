"""Helpers shared by the builders: running core functions as SCons actions."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import SCons.Action
import SCons.Errors
import SCons.Subst

from ..errors import EspSecureError

# Core functions by name: an action refers to its function by this key rather than
# by closure, and the key is the action's signature: SCons would compute one at
# creation by walking the function's code and every object it closes over (about a
# third of a no-op build's time with closures, ~0.2 ms per action without). The key
# names the function and the tool's version, so a new version of the tool rebuilds
# what its actions made.
_CORE_FUNCTIONS: dict[str, Callable[[Any, Any, Any], None]] = {}


def core_action(func: Callable[[Any, Any, Any], None], comstr_var: str, varlist: list[str]) -> SCons.Action.Action:
    """An Action running ``func(target, source, env)``.

    ``varlist`` names every construction variable that changes the output bytes,
    so changing one rebuilds exactly the affected targets. A project error
    becomes a one-line SCons build error, never a Python traceback.
    """
    key = _key(func)
    _CORE_FUNCTIONS[key] = func

    def run(target: Any, source: Any, env: Any, _key: str = key) -> int:
        try:
            _CORE_FUNCTIONS[_key](target, source, env)
        except EspSecureError as exc:
            raise SCons.Errors.BuildError(node=target[0], errstr=str(exc), exitstatus=2) from None
        return 0

    run.__name__ = func.__name__
    return _KeyedAction(run, key, cmdstr=f"${comstr_var}", varlist=tuple(varlist))


def keyed_action(func: Callable[..., int], **kw: Any) -> SCons.Action.Action:
    """A plain function action (SCons keywords ``kw``) signed by the function's name and the tool version."""
    return _KeyedAction(func, _key(func), **kw)


def _key(func: Callable[..., Any]) -> str:
    from .. import __version__

    return f"{func.__module__}.{func.__qualname__} {__version__}"


class _KeyedAction(SCons.Action.FunctionAction):
    """A function action signed by its function's key (name, tool version) and its variables' values.

    SCons substitutes each ``varlist`` variable on its own (a target/source
    dictionary and a parse each, ~70 us per action and variable, twice per built
    target); one pass over ``${A}\0${B}...`` gives the same values, NUL-separated.
    """

    def __init__(self, run: Callable[..., int], key: str, **kw: Any) -> None:
        self.execfunction = run
        self.funccontents = key.encode()
        SCons.Action._ActionAction.__init__(self, **kw)  # FunctionAction's own __init__ walks ``run``

    def get_contents(self, target: Any, source: Any, env: Any) -> bytes:
        template = "\0".join(f"${{{v}}}" for v in self.varlist)
        values = env.subst_target_source(template, SCons.Subst.SUBST_SIG, target, source) if template else ""
        return bytes(self.funccontents) + values.encode("utf-8", "surrogateescape")


def fail(message: object) -> NoReturn:
    """A configuration error while the SConstruct is read: one line, exit status 2.

    (``SCons.Errors.UserError`` would add a ``File "...", line N`` line.)
    """
    print(f"scons: *** {message}", file=sys.stderr)
    raise SystemExit(2)


def refuse_special_files(env: Any) -> None:
    """Make ``env`` refuse a FIFO, device or socket named as a file, with one line.

    SCons reads every source to decide whether a target is up to date: a FIFO
    hangs the build there and ``/dev/zero`` fills the memory, before any action
    could check its input. The check wraps the environment's source decider (a
    later ``env.Decider(...)`` replaces it; the actions still refuse such files).
    """
    import stat

    decide = env.decide_source

    def decide_source(dependency: Any, target: Any, prev_ni: Any, repo_node: Any = None) -> Any:
        # File and Dir nodes memoize their stat(), which SCons's own decider needs anyway.
        status = dependency.stat() if hasattr(dependency, "stat") else None
        mode = status.st_mode if status is not None else None
        if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            error = EspSecureError("is not a regular file (a device, FIFO or socket)", dependency.abspath)
            raise SCons.Errors.BuildError(node=target, errstr=str(error), exitstatus=2)
        return decide(dependency, target, prev_ni, repo_node)

    env.decide_source = decide_source


def first_node(value: Any) -> Any:
    """A builder returns a NodeList; the callers here want its (first) node. Strings pass through."""
    return value[0] if not isinstance(value, str) and hasattr(value, "__getitem__") else value


def env_str(env: Any, name: str, default: str = "") -> str:
    """A construction variable as a string, substituted, '' when unset."""
    value = env.get(name)
    if value is None:
        return default
    return env.subst(str(value)) if isinstance(value, str) else str(value)


def env_int(env: Any, name: str, default: int | None = None) -> int | None:
    """A construction variable as an integer (decimal or 0x-hex strings accepted)."""
    value = env.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, int):
        return value
    text = env.subst(str(value))
    try:
        return int(text, 0)
    except ValueError:
        raise EspSecureError(f"construction variable {name}={text!r} is not a number") from None


def env_bool(env: Any, name: str, default: bool = False) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def refuse_known_key(env: Any, kind: str, data: bytes, path: object = None) -> None:
    """Refuse a secret key anyone can know (no entropy, or published) unless ESP_ALLOW_PUBLISHED_KEY
    (which ESP_REQUIRE_PRODUCTION_KEYS overrides)."""
    from .production import production_mode

    if production_mode(env) or not env_bool(env, "ESP_ALLOW_PUBLISHED_KEY"):
        from ..secure_boot.published_keys import SCONS_OVERRIDE, refuse_weak_or_published

        refuse_weak_or_published(kind, data, path, SCONS_OVERRIDE)


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def install_one_line_errors() -> None:
    """Make mistakes found while the SConstruct is read one line, exit status 2.

    SCons prints a Python stack frame under a UserError and a 30-line traceback for
    the TypeError its node lookup raises when a directory is named where a file is
    expected (``nvs.csv``, a key file). Those, and the project's own error, are a
    user's mistake whose message names the file: only they are changed; any other
    exception in an SConstruct still gets SCons's traceback.
    """
    import SCons.Script.Main as main
    from SCons.Script import _SConscript as sconscript  # the module (SCons.Script.SConscript is a function)

    if getattr(main, "_esp_secure_one_line", False):
        return
    user_error, sconscript_exception = main._scons_user_error, sconscript.SConscript_exception

    def one_line_user_error(e: Exception) -> None:
        tb = sys.exc_info()[2]
        frames = traceback.extract_tb(tb) if tb else []
        if frames and os.path.abspath(frames[-1].filename).startswith(_PACKAGE_DIR + os.sep):
            sys.stderr.write(f"\nscons: *** {e}\n")
            sys.exit(2)
        user_error(e)

    def one_line_exception(file: Any = sys.stderr) -> None:
        value = sys.exc_info()[1]
        if isinstance(value, EspSecureError) or (
            isinstance(value, TypeError) and " found where " in str(value) and " expected" in str(value)
        ):
            file.write(f"scons: *** {' '.join(str(value).split()).rstrip('.:')}\n")
            return  # SCons exits with status 2
        sconscript_exception(file)

    main._scons_user_error = one_line_user_error
    sconscript.SConscript_exception = one_line_exception
    main._esp_secure_one_line = True
