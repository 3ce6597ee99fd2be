"""NVS builders: ``NvsPartition``, ``NvsKeys``, ``EncryptedNvs``, ``NvsMfg``.

::

    keys = env.NvsKeys("keys/nvs_keys.bin")                        # random, made once, then kept
    # or: env.NvsKeys("keys/nvs_keys.bin", "factory/nvs_keys.bin")  # a keys partition you provide
    # or: env.NvsKeys("keys/nvs_keys.bin", ESP_NVS_HMAC_KEY="keys/hmac_key.bin")
    env.NvsPartition("build/nvs.bin", "nvs.csv", ESP_NVS_SIZE=0x6000)
    env.EncryptedNvs("build/nvs_enc.bin", "nvs.csv", ESP_NVS_KEYS=keys)
    env.NvsMfg("build/factory", ["mfg_config.csv", "mfg_values.csv"],
               ESP_NVS_MFG_PREFIX="dev", ESP_NVS_MFG_FILEID="serial_no")

``NvsKeys`` never overwrites a keys file that exists (a fresh checkout with the keys restored
keeps them); random keys are made only where none exist, with a note to back them up.
Keys from a source that no longer match the file are refused until replaced on purpose.

Outputs are byte-identical with ``python -m esp_idf_nvs_partition_gen`` 0.3.0
(``generate``, ``encrypt --inputkey``) and ESP-IDF's ``mfg_gen.py``; the core
(:mod:`esp_secure_build.nvs`) does the work and refuses bad input with one line.

Construction variables (defaults in brackets; each may be given as a builder override):

``ESP_NVS_SIZE`` [0x6000]
    Partition size, a multiple of 4096 (ESP-IDF's default ``nvs`` partition is 0x6000).
``ESP_NVS_VERSION`` [2]
    2: multipage blobs; 1: the old single-page blobs.
``ESP_NVS_FILE_DIR`` [unset: the CSV's folder; for ``NvsMfg`` the values CSV's folder]
    Where relative paths of ``file`` rows are looked up (itself relative to the SConscript's
    folder, ``#`` for the top). The reference tool looks in its working folder, so
    ``ESP_NVS_FILE_DIR="#"`` reads what it reads when run from the project top. The files
    are dependencies (a scanner reads the CSV): editing one rebuilds the partitions naming it.
``ESP_NVS_KEYS`` [unset]
    The keys partition ``EncryptedNvs`` encrypts with (usually the node ``NvsKeys``
    returned, or a keys file of yours); ``NvsMfg``: one keys partition for every device.
``ESP_NVS_HMAC_KEY`` [unset]
    A 32-byte eFuse HMAC key file: ``NvsKeys`` derives the keys from it as ESP-IDF does on
    the device; ``NvsMfg`` with ``ESP_NVS_MFG_KEYGEN`` derives every device's keys from it.
``ESP_NVS_KEYS_REPLACE_ALIAS`` [nvs-keys-replace]
    The target that replaces the keys ``NvsKeys`` keeps: ``scons nvs-keys-replace`` writes new
    keys (random, or derived again from the source) and keeps the old file as
    ``<name>.replaced-<UTC time>`` (mode 0600). Run it on its own. Empty: no such target.
``ESP_NVS_ALLOW_NEW_KEYS`` [False]
    A keys file an earlier build made is missing: the build stops rather than make new keys
    (devices flashed with the old ones could no longer read their NVS). Set it (e.g.
    ``scons ESP_NVS_ALLOW_NEW_KEYS=1``) to make new keys where the old are truly gone.
``ESP_NVS_MFG_PREFIX`` [required for NvsMfg], ``ESP_NVS_MFG_FILEID`` [unset: 1, 2, 3, ...]
    Device file names ``PREFIX-ID``, ``ID`` from the values column named by FILEID.
``ESP_NVS_MFG_KEYGEN`` [False], ``ESP_NVS_MFG_HMAC_KEYGEN`` [False]
    Encrypt every device with its own keys (``keys/keys-PREFIX-ID.bin``), random, derived from
    ``ESP_NVS_HMAC_KEY``, or derived from a new HMAC key per device
    (``keys/hmac-keys-PREFIX-ID.bin``). Device keys are kept like ``NvsKeys``'s; to give a
    device new keys on purpose, delete its keys files and build with ``ESP_NVS_ALLOW_NEW_KEYS=1``.
``ESP_NVS_COMSTR``, ``ESP_NVS_ENCRYPT_COMSTR``, ``ESP_NVS_KEYS_COMSTR``,
``ESP_NVS_KEYS_REPLACE_COMSTR``, ``ESP_NVS_MFG_COMSTR``
    The one line printed per step.

Keys: every key file is written with mode 0600, marked ``Precious`` (SCons never deletes it
before a build), ``NoClean`` (``scons -c`` keeps it) and ``NoCache`` (never copied into a
``CacheDir``). Key material is never printed. Keep key files outside the build folder
(``rm -rf build`` must not lose them) and back them up: devices depend on them.

``NvsMfg`` reads the config and values CSVs when the SConstruct runs (they must be source
files) and declares each device's files as the targets of one step, so editing one device's
row rebuilds that device only (its values are a ``Value`` node; blob files are dependencies).
``scons -j`` runs device steps concurrently, but in threads: for tens of thousands of
devices ``esp-secure mfg generate`` (worker processes, streamed) is several times faster.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import SCons.Action
import SCons.Builder
import SCons.Errors
import SCons.Scanner

from ..errors import EspSecureError
from ..fileio import make_private_dir, read_bytes, write_atomic, write_new
from .common import core_action, env_bool, env_int, env_str, keyed_action, refuse_known_key
from .production import new_key_folder, record_generated, refuse_generation

# The NVS core (and with it cryptography) is imported by the steps that use it, not
# when the SConstruct loads the tool: most builds never run an NVS step.
if TYPE_CHECKING:
    from ..nvs.crypto import NvsKeys
    from ..nvs.mfg import MfgConfig, MfgEncryption

NVS_VARS = ["ESP_NVS_SIZE", "ESP_NVS_VERSION", "ESP_NVS_FILE_DIR"]
MFG_VARS = [*NVS_VARS, "ESP_NVS_MFG_KEYGEN", "ESP_NVS_MFG_HMAC_KEYGEN"]


def _die(message: object) -> NoReturn:
    """A configuration error while the SConstruct runs: one line, exit status 2."""
    print(f"scons: *** {message}", file=sys.stderr)
    raise SystemExit(2)


def _note(message: str) -> None:
    print(f"esp-secure: {message}", file=sys.stderr)


# -- settings -------------------------------------------------------------
def _size_version(env: Any) -> tuple[int, int]:
    from ..nvs import parse_size

    size = parse_size(env_int(env, "ESP_NVS_SIZE", 0x6000) or 0, "ESP_NVS_SIZE")
    version = env_int(env, "ESP_NVS_VERSION", 2)
    if version not in (1, 2):
        raise EspSecureError(f"ESP_NVS_VERSION={version}: use 1 or 2")
    return size, version


def _file_dir_setting(env: Any, cwd: Any = None) -> str:
    """ESP_NVS_FILE_DIR as an absolute path ('' when unset), relative to the calling SConscript's folder."""
    value = env_str(env, "ESP_NVS_FILE_DIR")
    return str(env.Dir(value, cwd).abspath) if value else ""


def _file_dir(setting: str, csv_node: Any) -> str:
    """Where ``file`` rows of this CSV are looked up: the setting, or the CSV's source folder."""
    return setting or str(csv_node.srcnode().dir.abspath)


def _file_var(env: Any, name: str) -> Any | None:
    """The one file node a construction variable names (a path, a node or a builder's result)."""
    value = env.get(name)
    if value is None or value == "" or value == []:
        return None
    nodes = env.arg2nodes(value, env.fs.File)
    if len(nodes) != 1:
        raise EspSecureError(f"{name} must name one file, not {len(nodes)}")
    return nodes[0]


def _warn_small(size: int) -> None:
    from ..nvs.layout import MIN_RW_SIZE

    if size < MIN_RW_SIZE:
        _note(
            "warning: partitions smaller than 0x3000 bytes are read-only NVS; "
            "flag the partition 'readonly' in the partition table"
        )


# -- NvsPartition, EncryptedNvs ---------------------------------------------
def _scan_path(env: Any, cwd: Any = None, target: Any = None, source: Any = None) -> tuple[str]:
    # ``cwd``: the folder of the SConscript that called the builder.
    return (_file_dir_setting(env, cwd),)


def _scan_csv(node: Any, env: Any, path: tuple[str, ...] = ("",)) -> list[Any]:
    """Files named by the CSV's ``file`` rows: editing one rebuilds the partition."""
    from ..nvs.generate import referenced_files

    if not node.exists():
        return []
    try:
        found = referenced_files(node.get_abspath(), _file_dir(path[0], node))
    except EspSecureError:
        return []  # the build step reports the problem with its line number
    nodes = []
    for name in found:
        dep = env.File(str(name))
        # A missing file is left to the build step, which names the CSV line.
        if dep.exists() or dep.has_builder():
            nodes.append(dep)
    return nodes


CSV_SCANNER = SCons.Scanner.ScannerBase(_scan_csv, name="NvsCsvScanner", path_function=_scan_path)


def _partition(target: Any, source: Any, env: Any, keys: NvsKeys | None) -> None:
    from ..nvs import NvsBuilder, read_nvs_csv

    size, version = _size_version(env)
    builder = NvsBuilder(size, version)
    setting = _file_dir_setting(env, target[0].cwd)
    for node in source:
        builder.base_dir = Path(_file_dir(setting, node))  # each CSV's files relative to its own folder
        builder.add_rows(read_nvs_csv(str(node)))
    data = builder.finish(keys)
    write_atomic(target[0].get_abspath(), data)
    _warn_small(size)


def _build_partition(target: Any, source: Any, env: Any) -> None:
    _partition(target, source, env, None)


def _build_encrypted(target: Any, source: Any, env: Any) -> None:
    from ..nvs import load_keys

    keys_node = target[0].attributes.nvs_keys  # resolved by the emitter, in the SConscript's folder
    keys = load_keys(str(keys_node))
    refuse_known_key(env, "nvs_keys", keys.eky + keys.tky, keys_node)
    _partition(target, source, env, keys)


def _encrypted_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    try:
        keys_node = _file_var(env, "ESP_NVS_KEYS")
    except EspSecureError as exc:
        _die(exc)
    if keys_node is None:
        _die(f"EncryptedNvs {target[0]}: set ESP_NVS_KEYS to the keys partition (e.g. what env.NvsKeys returns)")
    # A dependency, not a source: the CSV scanner must not read the keys.
    env.Depends(target, keys_node)
    for node in target:
        node.attributes.nvs_keys = keys_node
    return target, source


# -- NvsKeys --------------------------------------------------------------
def _protect_key_file(env: Any, node: Any) -> None:
    env.Precious(node)  # SCons must never delete it before running the step
    env.NoClean(node)  # nor `scons -c`
    env.NoCache(node)  # nor copy key material into a CacheDir


def _built_before(node: Any) -> bool:
    """True when an earlier build recorded this file (its record survives `scons -c`)."""
    return getattr(node.get_stored_info().ninfo, "csig", None) is not None


def _plan_keys(
    path: str, derived: NvsKeys | None, built_before: bool, allow_new: bool, replace_hint: str
) -> tuple[NvsKeys, bytes | None]:
    """The keys a key file holds or will hold, and the bytes to write (None: keep the file).

    ``derived``: the keys the file must hold (from an HMAC key or a keys file), or None
    for random keys, which are made only when the file never existed.
    """
    from ..nvs import NvsKeys, load_keys

    if os.path.exists(path):
        existing = load_keys(path)
        if derived is None:
            return existing, None
        if existing != derived:
            raise EspSecureError("holds other NVS keys than its source gives; refusing to replace them", path,
                                 hint=replace_hint)  # fmt: skip
        wanted = derived.partition()
        return derived, None if read_bytes(path, "NVS keys file") == wanted else wanted
    if derived is not None:
        return derived, derived.partition()
    if built_before and not allow_new:
        raise EspSecureError(
            "NVS keys made by an earlier build are missing; devices flashed with them need them", path,
            hint="restore the file from your backup, or build with ESP_NVS_ALLOW_NEW_KEYS=1 to make new keys",
        )  # fmt: skip
    return NvsKeys.generate(), b""  # b"": new random keys, written by the caller


def _derived_keys(env: Any, source: Any) -> NvsKeys | None:
    from ..nvs import NvsKeys, load_keys

    if not source:
        return None
    path = str(source[0])
    if env.get("ESP_NVS_HMAC_KEY"):
        return NvsKeys.from_hmac_key(_hmac_key(env, path))
    keys = load_keys(path)
    refuse_known_key(env, "nvs_keys", keys.eky + keys.tky, path)
    return keys


def _hmac_key(env: Any, path: str) -> bytes:
    from ..nvs import load_hmac_key

    key = load_hmac_key(path)
    refuse_known_key(env, "nvs_hmac", key, path)
    return key


def _replace_hint(env: Any) -> str:
    alias = env_str(env, "ESP_NVS_KEYS_REPLACE_ALIAS")
    return f"to replace them on purpose run `scons {alias}`" if alias else "remove the file to replace them"


def _write_key(path: str, data: bytes) -> None:
    """A new key file is created exclusively (no key ever replaces another); an existing one
    is only ever rewritten with the same keys (``_plan_keys`` checked)."""
    if os.path.lexists(path):
        write_atomic(path, data, mode=0o600)
    else:
        write_new(path, data, mode=0o600)


def _build_keys(target: Any, source: Any, env: Any) -> None:
    node = target[0]
    path = str(node)
    keys, data = _plan_keys(
        path, _derived_keys(env, source), _built_before(node), env_bool(env, "ESP_NVS_ALLOW_NEW_KEYS"),
        _replace_hint(env),
    )  # fmt: skip
    if data == b"":  # new random keys: a development key
        refuse_generation(env, "NVS keys", path, "the keys source (env.NvsKeys(file, source) or ESP_NVS_HMAC_KEY)")
    if data is not None:
        _write_key(path, data or keys.partition())
    if data == b"":
        record_generated(path, "nvs_keys", keys.partition())
        _note(f"new NVS keys in {node}: back this file up; devices flashed with it need it for every NVS update")


def _backup_name(path: str) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name, n = f"{path}.replaced-{stamp}", 1
    while os.path.exists(name):
        n += 1
        name = f"{path}.replaced-{stamp}-{n}"
    return name


def _replace_keys_action(env: Any, node: Any, source: list[Any]) -> SCons.Action.Action:
    """The explicit act of replacing kept keys: new keys, the old file kept as a backup."""
    hmac = bool(env.get("ESP_NVS_HMAC_KEY"))
    label = env.subst("$ESP_NVS_KEYS_REPLACE_COMSTR", target=[node], source=source)

    key_sources = source

    def replace(target: Any, source: Any, env: Any) -> int:
        from ..nvs import NvsKeys, load_hmac_key, load_keys

        path = str(node)
        try:
            if not key_sources:
                keys = NvsKeys.generate()
            elif hmac:
                keys = NvsKeys.from_hmac_key(load_hmac_key(str(key_sources[0])))
            else:
                keys = load_keys(str(key_sources[0]))
            data = keys.partition()
            backup = None
            if not key_sources:
                refuse_generation(env, "NVS keys", path, "the keys source (env.NvsKeys(file, source) or ESP_NVS_HMAC_KEY)")
            if os.path.exists(path):
                old = read_bytes(path, "NVS keys file")
                if old == data:
                    _note(f"{node} already holds these keys")
                    return 0
                backup = _backup_name(path)
                write_new(backup, old, mode=0o600)
            new_key_folder(path)
            write_atomic(path, data, mode=0o600)  # the one place a key is replaced: on purpose, old one kept
            if not key_sources:
                record_generated(path, "nvs_keys", data)
        except EspSecureError as exc:
            raise SCons.Errors.BuildError(node=target[0], errstr=str(exc), exitstatus=2) from None
        _note(f"new NVS keys in {node}" + (f"; the old keys are kept in {backup}" if backup else ""))
        return 0

    return keyed_action(replace, strfunction=lambda target, source, env: label)


def _keys_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    if len(target) != 1:
        _die("NvsKeys makes one keys file per call")
    try:
        hmac = _file_var(env, "ESP_NVS_HMAC_KEY")
    except EspSecureError as exc:
        _die(exc)
    if len(source) > 1 or (hmac is not None and source):
        _die(f"NvsKeys {target[0]}: give one source: a keys partition file, or ESP_NVS_HMAC_KEY, not both")
    if hmac is not None:
        source = [hmac]
    node = target[0]
    # What the keys come from, for the release's key checks (production mode, development keys).
    origin = "hmac" if hmac is not None else ("keys" if source else "random")
    node.attributes.esp_nvs_keys_origin = (origin, source[0].get_abspath() if source else None)
    if not env.GetOption("clean") and not env.GetOption("help"):
        try:
            new_key_folder(node.get_abspath())  # before SCons makes it 0755
        except EspSecureError as exc:
            _die(exc)
    _protect_key_file(env, node)
    alias = env_str(env, "ESP_NVS_KEYS_REPLACE_ALIAS")
    if alias:
        env.AlwaysBuild(env.Alias(alias, [], _replace_keys_action(env, node, list(source))))
    return target, source


_KEYS_BUILDER = SCons.Builder.Builder(
    action=core_action(_build_keys, "ESP_NVS_KEYS_COMSTR", []), emitter=_keys_emitter, suffix=".bin"
)


def nvs_keys(env: Any, target: Any, source: Any = None, **overrides: Any) -> Any:
    """``env.NvsKeys(keys_file[, keys_partition_file])``: the kept NVS keys partition.

    A method rather than a plain builder: a builder called with one argument takes it
    as the source, and a keys file has none.
    """
    sources = env.Flatten([source]) if source is not None else []
    return _KEYS_BUILDER(env, env.Flatten([target]), sources, **overrides)


# -- NvsMfg ---------------------------------------------------------------
_CONFIGS: dict[tuple[str, int, int], MfgConfig] = {}


def _config(path: str) -> MfgConfig:
    """The parsed config, read once per build rather than once per device."""
    from ..nvs.mfg import read_mfg_config

    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _CONFIGS:
        _CONFIGS[key] = read_mfg_config(path)
    return _CONFIGS[key]


def _build_mfg_device(target: Any, source: Any, env: Any) -> None:
    """One device: its CSV, its partition and, with ESP_NVS_MFG_KEYGEN, its kept keys."""
    from ..nvs import NvsKeys, load_hmac_key, load_keys, random_hmac_key
    from ..nvs.mfg import MfgEncryption, MfgOptions, build_device

    size, version = _size_version(env)
    ident, values = source[0].read()
    config = _config(str(source[1]))
    values_path = str(env["ESP_NVS_MFG_VALUES"])  # raw: a path may hold a "$"
    base = Path(env["ESP_NVS_MFG_BASE"])
    writes: list[tuple[Any, bytes, int | None]] = []
    encryption: MfgEncryption | None = None
    if env_bool(env, "ESP_NVS_MFG_KEYGEN"):
        allow = env_bool(env, "ESP_NVS_ALLOW_NEW_KEYS")
        hint = "delete it to give the device new keys"
        keys_node = target[2]
        derived: NvsKeys | None = None
        if env_bool(env, "ESP_NVS_MFG_HMAC_KEYGEN"):
            hmac_node = target[3]
            hmac_path = str(hmac_node)
            if os.path.lexists(hmac_path):
                hmac_key = load_hmac_key(hmac_path)
            elif _built_before(hmac_node) and not allow:
                raise EspSecureError(
                    "HMAC key made by an earlier build is missing; the device holds it in eFuse", hmac_path,
                    hint="restore it, or build with ESP_NVS_ALLOW_NEW_KEYS=1 to make a new one",
                )  # fmt: skip
            else:
                hmac_key = random_hmac_key()
                writes.append((hmac_node, hmac_key, 0o600))
            derived = NvsKeys.from_hmac_key(hmac_key)
        elif env.get("ESP_NVS_HMAC_KEY"):
            derived = NvsKeys.from_hmac_key(_hmac_key(env, str(source[2])))
        keys, data = _plan_keys(str(keys_node), derived, _built_before(keys_node), allow, hint)
        if data is not None:
            writes.insert(0, (keys_node, data or keys.partition(), 0o600))
        encryption = MfgEncryption(keys=keys)
    elif env.get("ESP_NVS_KEYS"):
        keys = load_keys(str(source[2]))
        refuse_known_key(env, "nvs_keys", keys.eky + keys.tky, source[2])
        encryption = MfgEncryption(keys=keys)
    opts = MfgOptions(size=size, version=version, encryption=encryption, base_dir=base)
    line = env_int(env, "ESP_NVS_MFG_LINE", 0) or 0
    device = build_device(config, opts, values_path, line, ident, list(values))
    # Everything is built in memory first: a bad value leaves nothing written for the device.
    writes += [(target[0], device.nvs, None), (target[1], device.csv, None)]
    done: list[str] = []
    try:
        for node, data, mode in writes:
            if mode is None:
                write_atomic(node.get_abspath(), data)
            else:
                _write_key(node.get_abspath(), data)
            done.append(node.get_abspath())
    except BaseException:
        for path in done:  # all or nothing for this device (new keys never reached it)
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise


_DEVICE_BUILDER = SCons.Builder.Builder(action=core_action(_build_mfg_device, "ESP_NVS_MFG_COMSTR", MFG_VARS))


def _mfg_encryption_sources(env: Any) -> tuple[bool, list[Any]]:
    """(keygen, extra sources) for the encryption settings, checked as the CLI checks them."""
    keygen = env_bool(env, "ESP_NVS_MFG_KEYGEN")
    hmac_keygen = env_bool(env, "ESP_NVS_MFG_HMAC_KEYGEN")
    keys = _file_var(env, "ESP_NVS_KEYS")
    hmac = _file_var(env, "ESP_NVS_HMAC_KEY")
    if keys is not None and (keygen or hmac is not None or hmac_keygen):
        raise EspSecureError("NvsMfg: ESP_NVS_KEYS gives every device the same keys; it excludes the keygen settings")
    if (hmac is not None or hmac_keygen) and not keygen:
        raise EspSecureError("NvsMfg: ESP_NVS_HMAC_KEY/ESP_NVS_MFG_HMAC_KEYGEN need ESP_NVS_MFG_KEYGEN")
    if hmac is not None and hmac_keygen:
        raise EspSecureError("NvsMfg: give ESP_NVS_HMAC_KEY or ESP_NVS_MFG_HMAC_KEYGEN, not both")
    return keygen, [n for n in (keys, hmac) if n is not None]


def nvs_mfg(env: Any, target: Any, source: Any, **overrides: Any) -> list[Any]:
    """``env.NvsMfg(outdir, [config_csv, values_csv])``: one partition per device, as mfg_gen.py.

    Writes ``OUTDIR/bin/PREFIX-ID.bin`` and ``OUTDIR/csv/PREFIX-ID.csv`` (plus the keys
    under ``OUTDIR/keys/`` with ESP_NVS_MFG_KEYGEN); returns every device's nodes.
    """
    from ..nvs.mfg import device_paths, iter_device_values

    if overrides:
        env = env.Override(overrides)
    try:
        sources = env.arg2nodes(source, env.fs.File)
        if len(sources) != 2:
            raise EspSecureError("NvsMfg needs two sources: the config CSV and the values CSV")
        targets = env.arg2nodes(target, env.fs.Dir)
        if len(targets) != 1:
            raise EspSecureError("NvsMfg needs one target: the output folder")
        outdir = Path(targets[0].get_abspath())
        prefix = env_str(env, "ESP_NVS_MFG_PREFIX")
        if not prefix or "/" in prefix or "\\" in prefix:
            raise EspSecureError(f"NvsMfg: ESP_NVS_MFG_PREFIX={prefix!r} cannot start a file name")
        config_node, values_node = sources
        # Read while the SConscript runs, in its folder: a relative path names the right file.
        config = _config(os.path.relpath(config_node.srcnode().get_abspath()))
        values_path = os.path.relpath(values_node.srcnode().get_abspath())
        keygen, extra = _mfg_encryption_sources(env)
        hmac_keygen = keygen and env_bool(env, "ESP_NVS_MFG_HMAC_KEYGEN")
        base = _file_dir(_file_dir_setting(env), values_node)
        file_columns = [i for i, c in enumerate(config.data_lines) if c.fields[1] == "file"]
        seen: set[str] = set()
        nodes: list[Any] = []
        for line, ident, values in iter_device_values(config, values_path, env_str(env, "ESP_NVS_MFG_FILEID") or None):
            if ident in seen:
                raise EspSecureError(f"line {line}: file id {ident!r} repeats an earlier device", values_path)
            seen.add(ident)
            paths = device_paths(outdir, prefix, ident)
            outs = [str(paths["bin"]), str(paths["csv"])]
            if keygen and not env.GetOption("clean") and not env.GetOption("help"):
                make_private_dir(paths["keys"].parent)  # before SCons makes it 0755
            if keygen:
                outs.append(str(paths["keys"]))
                if hmac_keygen:
                    outs.append(str(paths["hmac"]))
            blobs = [env.File(os.path.join(base, values[i])) for i in file_columns if values[i]]
            # The device's values are a Value node: editing one row rebuilds that device only.
            srcs = [env.Value((ident, tuple(values))), config_node, *extra]
            srcs += [b for b in blobs if b.exists() or b.has_builder()]
            device = _DEVICE_BUILDER(
                env, outs, srcs, ESP_NVS_MFG_LINE=line, ESP_NVS_MFG_VALUES=str(values_node), ESP_NVS_MFG_BASE=base
            )
            for key_node in device[2:]:
                _protect_key_file(env, key_node)
            nodes.extend(device)
    except EspSecureError as exc:
        _die(exc)
    return nodes


def generate(env: Any) -> None:
    env.SetDefault(
        ESP_NVS_SIZE=0x6000,
        ESP_NVS_VERSION=2,
        ESP_NVS_KEYS_REPLACE_ALIAS="nvs-keys-replace",
        ESP_NVS_ALLOW_NEW_KEYS=False,
        ESP_NVS_MFG_KEYGEN=False,
        ESP_NVS_MFG_HMAC_KEYGEN=False,
        ESP_NVS_COMSTR="ESP-NVS $TARGET",
        ESP_NVS_ENCRYPT_COMSTR="ESP-NVS-ENCRYPT $TARGET",
        ESP_NVS_KEYS_COMSTR="ESP-NVS-KEYS $TARGET",
        ESP_NVS_KEYS_REPLACE_COMSTR="ESP-NVS-KEYS-REPLACE $TARGET",
        ESP_NVS_MFG_COMSTR="ESP-NVS-MFG $TARGET",
    )
    env["BUILDERS"]["NvsPartition"] = SCons.Builder.Builder(
        action=core_action(_build_partition, "ESP_NVS_COMSTR", NVS_VARS),
        source_scanner=CSV_SCANNER,
        suffix=".bin",
        src_suffix=".csv",
    )
    env["BUILDERS"]["EncryptedNvs"] = SCons.Builder.Builder(
        action=core_action(_build_encrypted, "ESP_NVS_ENCRYPT_COMSTR", NVS_VARS),
        emitter=_encrypted_emitter,
        source_scanner=CSV_SCANNER,
        suffix=".bin",
        src_suffix=".csv",
    )
    env.AddMethod(nvs_keys, "NvsKeys")
    env.AddMethod(nvs_mfg, "NvsMfg")
