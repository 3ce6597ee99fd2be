"""Production mode, development keys, key file permissions, and one build at a time.

Construction variables (defaults in brackets):

``ESP_REQUIRE_PRODUCTION_KEYS`` [False; an environment variable of that name also sets it]
    ``env.EspRelease`` stops (one line, exit status 2) when a key it uses (Secure Boot
    signing, flash encryption, NVS keys, NVS HMAC key) is a development key, a publicly
    known key (``ESP_ALLOW_PUBLISHED_KEY`` is then ignored) or a private key file that
    group or others can read; no development key is ever generated.

Development keys are the keys a build generated (``env.EspDevSigningKey``,
``env.EspDevFlashEncryptionKey``, random ``env.NvsKeys``). They are recognised by the
fingerprints kept in ``.dev-keys.json`` beside them (:mod:`esp_secure_build.devkeys`),
however they are passed later. A build using one says so in its last lines, also when
every artifact came from a ``CacheDir`` or nothing was rebuilt; the manifest records it.

A private key file that group or others can read gets a warning. A keys folder the
build creates is mode 0700, whatever the umask.

One build at a time: loading the tool takes ``fcntl.flock`` on ``.sconsign.lock`` at the
top of the project (beside SCons's ``.sconsign.dblite``, which it also guards), held until
SCons exits; a second build waits, saying so.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from .. import devkeys
from ..errors import EspSecureError
from ..fileio import make_private_dir, read_key_bytes
from .common import env_bool

LOCK_NAME = ".sconsign.lock"
_DEV_DIRS: set[str] = set()  # folders this build generates keys in: their records are consulted
_LOCK: list[int] = []  # the lock's file descriptor, open until the process ends


def production_mode(env: Any) -> bool:
    """True when the construction variable or the environment variable asks for it."""
    from_env = os.environ.get("ESP_REQUIRE_PRODUCTION_KEYS", "").strip().lower() in ("1", "true", "yes", "on")
    return from_env or env_bool(env, "ESP_REQUIRE_PRODUCTION_KEYS")


def new_key_folder(path: str) -> None:
    """Before generating the key file ``path``: its folder exists (0700 if made now), its record counts."""
    folder = os.path.dirname(os.path.abspath(path))
    make_private_dir(folder)
    _DEV_DIRS.add(folder)


def refuse_generation(env: Any, what: str, path: str, variable: str) -> None:
    """In production mode, no development key is made."""
    if production_mode(env):
        raise EspSecureError(
            f"ESP_REQUIRE_PRODUCTION_KEYS is set: the build makes no development {what}; set {variable}", path
        )


def record_generated(path: str, kind: str, data: bytes, public_key: object | None = None) -> None:
    """Note a key the build just generated as a development key."""
    devkeys.add_to_record(path, kind, data, public_key)
    _DEV_DIRS.add(os.path.dirname(os.path.abspath(path)))


def is_development_signer(signer: Any) -> bool:
    """True when this signer's public key is one of the recorded development keys."""
    name = getattr(signer, "name", None)
    folders = [*_DEV_DIRS, *([os.path.dirname(os.path.abspath(name))] if name and os.path.isfile(name) else [])]
    if not any(os.path.exists(os.path.join(f, devkeys.RECORD_NAME)) for f in folders):
        return False
    return devkeys.find_development_key(b"", folders, signer.public_key) is not None


class KeyUse(NamedTuple):
    """A key a release uses: its kind (a :data:`devkeys.KIND_TITLES` key) and file."""

    kind: str
    path: str
    public_only: bool = False  # an external signer's public key file: nothing secret in it
    pending: bool = False  # NvsKeys makes it during this build, at random: a development key


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _warn(message: str) -> None:
    print(f"esp-secure: warning: {message}", file=sys.stderr)


def _public_key_getter(data: bytes) -> Callable[[], object | None]:
    cache: list[object | None] = []

    def get() -> object | None:
        if not cache:
            cache.append(devkeys.signing_public_key(data))
        return cache[0]

    return get


def _published(use: KeyUse, data: bytes, public_key: Callable[[], object | None]) -> str | None:
    from ..secure_boot import published_keys

    if use.kind == "signing":
        key = public_key()
        published = key is not None and published_keys.is_published(key)
        return "is publicly known (a test or example key from a public repository)" if published else None
    if weak := published_keys.weak_secret_key(use.kind, data):
        return f"has no entropy ({weak})"
    published = published_keys.is_published_secret_key(use.kind, data)
    return f"is publicly known ({published})" if published else None


def check_keys(env: Any, uses: list[KeyUse]) -> list[KeyUse]:
    """The development keys among ``uses``; warns about readable key files.

    In production mode any development key, published key or readable private key file
    raises instead, naming the first (and how many more).
    """
    production = production_mode(env)
    dev: list[KeyUse] = []
    problems: list[str] = []
    for use in dict.fromkeys(uses):
        title = devkeys.KIND_TITLES[use.kind]
        if use.pending:
            dev.append(use)
            problems.append(f"{_rel(use.path)}: the {title} would be generated by this build (a development key)")
            continue
        if not os.path.isfile(use.path):
            continue  # the step that reads it says what is wrong
        mode = os.stat(use.path).st_mode & 0o777
        if not use.public_only and mode & 0o044:
            problems.append(f"{_rel(use.path)}: the {title} file is readable by group/others (mode {mode:04o}); chmod 600 it")
            if not production:
                _warn(problems[-1])
        data = read_key_bytes(use.path, title)
        public_key = _public_key_getter(data)
        folders = [os.path.dirname(use.path), *_DEV_DIRS]
        if devkeys.find_development_key(data, folders, public_key if use.kind == "signing" else None):
            dev.append(use)
            problems.append(f"{_rel(use.path)}: the {title} is a development key a build generated (in {devkeys.RECORD_NAME})")
        elif production and (known := _published(use, data, public_key)):
            problems.append(f"{_rel(use.path)}: the {title} {known}")
    if production and problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise EspSecureError(f"ESP_REQUIRE_PRODUCTION_KEYS: {problems[0]}{more}")
    return dev


def development_summary(folder: str, dev: list[KeyUse]) -> str:
    keys = ", ".join(f"{devkeys.KIND_TITLES[u.kind]} {_rel(u.path)}" for u in dev)
    return (
        f"WARNING: {_rel(folder)} uses DEVELOPMENT keys ({keys}): for development only; "
        "never ship it or burn these keys into eFuses\n"
    )


def summary_at_exit(folder: str, dev: list[KeyUse], nodes: list[Any]) -> None:
    """Print the development-key warning as the build's last line when it built (or found up to
    date, or took from a cache) any of ``nodes`` and nothing failed."""
    if not dev:
        return
    text = development_summary(folder, dev)

    def report() -> None:
        from SCons.Script import GetBuildFailures, GetOption

        if GetOption("clean") or GetOption("help") or GetOption("question") or GetBuildFailures():
            return
        if any(node.get_state() for node in nodes):  # no_state (0): not part of this build
            sys.stdout.write(text)
            sys.stdout.flush()

    atexit.register(report)


def take_build_lock(env: Any) -> None:
    """One build of a project at a time (see the module docstring); once per process."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    if _LOCK or env.GetOption("help"):
        return
    path = os.path.join(env.Dir("#").abspath, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        pid = f" (pid {holder})" if holder.isdigit() else ""
        print(f"esp-secure: another build of this project is running{pid}; waiting for it to finish "
              f"({LOCK_NAME})", file=sys.stderr, flush=True)  # fmt: skip
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _LOCK.append(fd)


def generate(env: Any) -> None:
    take_build_lock(env)
    env.SetDefault(ESP_REQUIRE_PRODUCTION_KEYS=False)
