"""``env.EspRelease(...)``: the whole secure release in one call.

::

    artifacts = env.EspRelease(
        "build/release",
        app=env.EspImage("build/app-unsigned.bin", app_elf, ESP_SECURE_PAD="v2"),
        bootloader=env.EspImage("build/bootloader-unsigned.bin", bootloader_elf),
        partitions="partitions.csv",
        nvs={"nvs": ("nvs.csv", env.NvsKeys("keys/nvs_keys.bin"))},
        certificates=[ca_cert_summary_json],
    )

``partitions`` is a CSV or a binary table (``partition-table.bin`` as gen_esp32part writes
it: a signed or enlarged one is refused). Addresses and sizes come from it, read when the SConstruct is read: the
app goes to the factory partition (else the first OTA slot), NVS partitions are made at
their table size, and an ``otadata`` partition gets an erased ``ota_data_initial.bin``.
``extra_images={'otadata': 'boot_app0.bin'}`` flashes given files into named partitions
instead (an otadata image that selects a slot, a file system image): they are copied
into the release and flash-encrypted where the device encrypts that partition.

In the hardware's order: sign app and bootloader (``$ESP_SECURE_BOOT_VERSION``; V1
digests the bootloader for reflashable mode), write the provisioning values, build the
partition table, make the encrypted NVS, flash-encrypt every region the device encrypts
at the address the table gives (when ``$ESP_FLASH_ENCRYPTION_KEY`` is set), then the
factory image (``.bin``/``.hex``), ``flash_args`` and ``manifest.json``. Returns every
artifact node; each step is an ordinary builder, so rebuilds stay exact.

Before anything is built, the chain of trust is checked
(:mod:`esp_secure_build.chain_guards`); each refusal is one line naming the setting and the fix:

``ESP_BOOTLOADER_VERIFIES_APP`` [unset]
    With Secure Boot and a bare bootloader binary, say that it was built with Secure Boot
    (``True``; the build prints that it assumed so) or not (``False``: refused). Unset:
    refused, unless ``ESP_IDF_SDKCONFIG`` tells.
``ESP_IDF_SDKCONFIG`` [unset; set by ``EspIdfBuild``]
    The sdkconfig (``sdkconfig.json`` or ``sdkconfig``) the bootloader and app were built with:
    Secure Boot version and signature scheme, flash encryption (and key size), NVS
    encryption and its key scheme, partition table offset must agree with the release.
``ESP_PREVIOUS_MANIFEST`` [unset]
    The previous release's ``manifest.json``: an app whose secure version (anti-rollback)
    is lower is refused. Signed apps must carry Secure Boot padding (``ESP_SECURE_PAD``).

Every build of the release ends by verifying it as the chip will read it
(:mod:`esp_secure_build.release_check`, an always-run alias that prints one
"verified" line), no-op builds included; a failed check fails the build with its
name. Release files changed since SCons built them (SCons itself only compares
sources) are found when the SConstruct is read, by content, and built again;
so are the images and ELFs they come from (by size and time, then content).
``scons -q`` leaves the verification out, so it still answers "up to date".
When every file of the folder, the keys and the expected digests hash as they did at
the last successful verification (recorded beside the folder in ``.<folder>.verified``),
its verdict stands and nothing is decrypted again.

Layout of ``folder``: ``app.bin``, ``bootloader.bin`` (signed plaintext),
``partition-table.bin``, NVS partitions, ``encrypted/`` (what the factory flashes),
``factory-encrypted.bin``/``.hex`` (or ``factory.bin``/``.hex`` without flash encryption),
``flash_args``, ``flasher_args.json``, ``provisioning/efuse-script.sh`` (ESP-IDF's
release-mode eFuse sequence as espefuse commands) and ``provisioning/README.txt``, key
digests, ``manifest.json``. Secrets (the V1 eFuse key) go to ``$ESP_KEYS_DIR``, never here.

The keys it uses are checked when the SConstruct is read (:mod:`.production`): with
``ESP_REQUIRE_PRODUCTION_KEYS`` a development key, a published key or a private key
file group/others can read stops the build; otherwise a release made with development
keys says so in the build's last line and in the manifest (``development_keys``). The
manifest also says where the build time came from (``build_time_source``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import SCons.Builder
import SCons.Errors

from ..devkeys import KIND_TITLES
from ..errors import EspSecureError
from .common import core_action, env_bool, env_int, env_str, fail, first_node, keyed_action
from .image import build_time
from .production import KeyUse, check_keys, summary_at_exit


def _read_table(env: Any, partitions: Any, version: int) -> tuple[Any, bool]:
    """The partition table (CSV or binary), parsed when the SConstruct is read (it is a source file).

    Returns (table, is_binary). A binary table must be what gen_esp32part writes:
    never signed or enlarged (:func:`esp_secure_build.chain_guards.check_partition_table_binary`).
    """
    from ..chain_guards import check_partition_table_binary
    from ..fileio import read_bytes
    from ..partition_table import load, verify

    path = env.File(partitions).srcnode().abspath
    try:
        data = read_bytes(path, "partition table")
        table, binary = load(data, path, offset=env_int(env, "ESP_PARTITION_TABLE_OFFSET", 0x8000) or 0x8000)
        if binary:
            check_partition_table_binary(data, version, path)
            verify(table, path, secure={1: "v1", 2: "v2"}.get(version))
        return table, binary
    except EspSecureError as exc:
        raise SCons.Errors.UserError(str(exc)) from None


def _check_chain(env: Any, version: int, encrypt: bool, bootloader: Any, nvs_keys: list[Any]) -> None:
    """The configuration guards (:mod:`esp_secure_build.chain_guards`), when the SConstruct is read."""
    from ..chain_guards import check_release, read_sdkconfig

    sdk = env.get("ESP_IDF_SDKCONFIG")
    verifies = env.get("ESP_BOOTLOADER_VERIFIES_APP")
    key = env.get("ESP_FLASH_ENCRYPTION_KEY")
    key_path = env.File(first_node(key)).abspath if key else None

    def hmac(keys: Any) -> bool:
        node = first_node(keys)
        build_env = node.get_build_env() if hasattr(node, "has_builder") and node.has_builder() else env
        return bool(build_env.get("ESP_NVS_HMAC_KEY"))

    try:
        notes = check_release(
            secure_boot_version=version,
            flash_encryption=encrypt,
            partition_table_offset=env_int(env, "ESP_PARTITION_TABLE_OFFSET", 0x8000) or 0x8000,
            sdkconfig=read_sdkconfig(env.File(sdk).abspath) if sdk else None,
            bootloader_verifies_app=None if verifies in (None, "") else env_bool(env, "ESP_BOOTLOADER_VERIFIES_APP"),
            bootloader=str(first_node(bootloader)),
            flash_encryption_key_bytes=os.path.getsize(key_path) if key_path and os.path.isfile(key_path) else None,
            nvs_encrypted=any(k is not None for k in nvs_keys),
            nvs_plain=any(k is None for k in nvs_keys),
            nvs_hmac=any(hmac(k) for k in nvs_keys if k is not None),
        )
    except EspSecureError as exc:
        raise SCons.Errors.UserError(str(exc)) from None
    for note in notes:
        print(f"esp-secure: WARNING: {note}", file=sys.stderr)


def _first_app(table: Any, source: str) -> str:
    from ..partition_table import APP

    apps = [p for p in table if p.type == APP]
    factory = [p for p in apps if p.subtype == 0x00]
    if not apps:
        raise SCons.Errors.UserError(f"{source}: the partition table has no app partition")
    return (factory or apps)[0].name


def _build_erased(target: Any, source: Any, env: Any) -> None:
    from ..fileio import write_atomic

    write_atomic(target[0].get_abspath(), b"\xff" * source[0].read())


def _build_app_copy(target: Any, source: Any, env: Any) -> None:
    """A release without Secure Boot ships the app as it is; it must still fit its partition."""
    from ..fileio import read_bytes, write_atomic
    from .signing import check_fits_partition

    src = source[0].get_abspath()
    data = read_bytes(src, "image")
    check_fits_partition(len(data), env, src)
    write_atomic(target[0].get_abspath(), data)


def _key_uses(env: Any, version: int, nvs: dict[str, tuple[str, Any]]) -> list[KeyUse]:
    """Every key file the release uses: signing, flash encryption, NVS keys and their source."""
    from .signing import key_specs

    uses = []
    for spec in key_specs(env) if version else []:
        if "file" in spec:
            uses.append(KeyUse("signing", spec["file"]))
        elif "public_key" in spec:  # an external signer: its public key says whose key it is
            uses.append(KeyUse("signing", spec["public_key"], public_only=True))
    if env.get("ESP_FLASH_ENCRYPTION_KEY"):
        uses.append(KeyUse("flash_encryption", env.File(first_node(env["ESP_FLASH_ENCRYPTION_KEY"])).abspath))
    for _, keys in nvs.values():
        if keys is None:
            continue
        node = env.File(first_node(keys))
        origin, source = getattr(node.attributes, "esp_nvs_keys_origin", (None, None))
        if origin in ("hmac", "keys"):
            uses.append(KeyUse("nvs_hmac" if origin == "hmac" else "nvs_keys", source))
        pending = origin == "random" and not os.path.lexists(node.abspath)
        uses.append(KeyUse("nvs_keys", node.abspath, pending=pending))
    return uses


def esp_release(
    env: Any,
    folder: str,
    app: Any,
    bootloader: Any,
    partitions: Any,
    nvs: dict[str, tuple[str, Any]] | None = None,
    app_partition: str | None = None,
    certificates: list[Any] | None = None,
    extra_images: dict[str, Any] | None = None,
) -> list[Any]:
    """Build the release in ``folder``; see the module docstring.

    The app goes to ``app_partition`` (default: the factory app, else the first OTA
    slot); each NVS partition is made at its size in the table; an ``otadata``
    partition gets ESP-IDF's erased ``ota_data_initial.bin`` unless ``extra_images``
    names a file for it.
    """
    from ..partition_table import DATA, SUBTYPE_NVS_KEYS, SUBTYPE_OTA

    version = env_int(env, "ESP_SECURE_BOOT_VERSION", 0) or 0
    if version not in (0, 1, 2):
        raise EspSecureError(f"ESP_SECURE_BOOT_VERSION must be 1 or 2 (or unset), not {version}")
    encrypt = bool(env.get("ESP_FLASH_ENCRYPTION_KEY"))
    _check_chain(env, version, encrypt, bootloader, [keys for _csv, keys in (nvs or {}).values()])
    table_csv, table_is_binary = _read_table(env, partitions, version)
    app_partition = app_partition or _first_app(table_csv, str(partitions))
    dev: list[KeyUse] = []
    if not env.GetOption("clean") and not env.GetOption("help"):
        try:
            dev = check_keys(env, _key_uses(env, version, nvs or {}))
        except EspSecureError as exc:
            fail(exc)
    def path(name: str) -> str:
        return os.path.join(folder, name)

    artifacts: list[Any] = []
    # V1 signs only the app; the bootloader is protected by the digest below.
    # The app is checked before it is signed: Secure Boot padding, anti-rollback ($ESP_PREVIOUS_MANIFEST).
    # The app must fit its partition: checked when app.bin is made, so a failed build writes none.
    app_size = table_csv.find(app_partition).size
    fit = {"ESP_APP_PARTITION": app_partition, "ESP_APP_PARTITION_SIZE": app_size}
    if version:
        app_bin = env.SignedImage(path("app.bin"), app, ESP_APP_CHECKS=True, **fit)
    else:
        app_bin = env._EspAppCopy(path("app.bin"), app, **fit)
    sign_boot = version == 2
    boot_bin = env.SignedImage(path("bootloader.bin"), bootloader) if sign_boot else env.InstallAs(path("bootloader.bin"), bootloader)
    artifacts += [app_bin, boot_bin]
    boot_region, boot_flash = "bootloader", boot_bin
    if version == 1:
        # The ROM checks a digest made with a key derived from the signing key; the
        # digest image (flashed at 0x0) carries the bootloader as well.
        digest = env.EspBootloaderDigest(path("bootloader-reflash-digest.bin"), bootloader)
        artifacts.append(digest)
        env["ESP_V1_KEY_FILE"] = digest[1].path
        boot_region, boot_flash = "secure-boot-v1-digest", digest[0]
    if version or env.get("ESP_FLASH_ENCRYPTION_KEY"):
        # espefuse script + README; it names secrets by $ESP_KEYS_DIR and never copies them.
        artifacts.append(env.EspProvisioning(path("provisioning/efuse-script.sh")))

    if table_is_binary:
        table = env.InstallAs(path("partition-table.bin"), partitions)
    else:
        table = env.PartitionTable(path("partition-table.bin"), partitions)
    env["ESP_PARTITION_TABLE"] = table
    artifacts.append(table)

    # ESP-IDF's tables call it nvs_key, ours nvs_keys: the subtype decides.
    keys_part = next((p.name for p in table_csv.find_type(DATA, SUBTYPE_NVS_KEYS)), "nvs_keys")
    nvs_parts: list[tuple[str, Any, Any]] = []  # (partition, partition node, keys node)
    for name, (csv, keys) in (nvs or {}).items():
        try:
            size = table_csv.find(name).size
        except EspSecureError as exc:
            raise SCons.Errors.UserError(f"{partitions}: {exc}") from None
        if keys is None:
            node = env.NvsPartition(path(f"{name}.bin"), csv, ESP_NVS_SIZE=size)
        else:
            node = env.EncryptedNvs(path(f"{name}.bin"), csv, ESP_NVS_KEYS=keys, ESP_NVS_SIZE=size)
        artifacts.append(node)
        nvs_parts.append((name, node, keys))

    def flash(region: str, node: Any, base: str) -> Any:
        if not encrypt:
            return node
        return env.EncryptedImage(os.path.join(folder, "encrypted", base), node, partition=region)

    layout = [(boot_region, flash(boot_region, boot_flash, "bootloader.bin")),
              ("partition-table", flash("partition-table", table, "partition-table.bin"))]  # fmt: skip
    plain = {boot_region: boot_flash, "partition-table": table}
    for name, node, keys in nvs_parts:
        layout.append((name, node))  # NVS has its own encryption; the device never flash-encrypts it
        if keys is not None and encrypt and keys_part not in {r for r, _ in layout}:
            layout.append((keys_part, flash(keys_part, keys, "nvs_keys.bin")))
            plain[keys_part] = keys
    extra_images = dict(extra_images or {})
    for name in extra_images:
        try:
            table_csv.find(name)
        except EspSecureError as exc:
            raise SCons.Errors.UserError(f"{partitions}: extra image for {name!r}: {exc}") from None
        if name == app_partition or name in (nvs or {}):
            raise SCons.Errors.UserError(f"extra image for {name!r}: the release already fills that partition")
    for part in table_csv.find_type(DATA, SUBTYPE_OTA):  # otadata starts erased: boot the first app
        if part.name in extra_images:
            continue
        erased = env["BUILDERS"]["_EspErased"](env, path("ota_data_initial.bin"), env.Value(part.size))
        artifacts.append(erased)
        layout.append((part.name, flash(part.name, erased, "ota_data_initial.bin")))
        plain[part.name] = erased
    for name, image in extra_images.items():
        base = f"{name}.bin"
        copy = env.InstallAs(path(base), image)
        artifacts.append(copy)
        part = table_csv.find(name)
        layout.append((name, flash(name, copy, base) if part.flash_encrypted else copy))
        plain[name] = copy
    layout.append((app_partition, flash(app_partition, app_bin, "app.bin")))
    plain[app_partition] = app_bin
    if encrypt:
        artifacts += [node for region, node in layout if region not in {n for n, _, _ in nvs_parts} and node not in artifacts]

    artifacts.append(env.EspFactoryImage(path("factory-encrypted" if encrypt else "factory"), layout))
    artifacts.append(env.EspFlashArgs(folder, layout))
    release = {
        "secure_boot_version": version,
        "nvs_encryption": [{"partition": name, "keys_partition": keys_part, "scheme": "XTS-AES-256 (NVS)"}
                           for name, _, keys in nvs_parts if keys is not None],
        "source_date_epoch": build_time(env).epoch,
        "build_time_source": build_time(env).source,
        **({"build_time_commit": build_time(env).commit} if build_time(env).commit else {}),
        "development_keys": bool(dev),
        "development_key_kinds": [kind for kind in KIND_TITLES if kind in {u.kind for u in dev}],
    }  # fmt: skip
    files = _release_files(env, folder, artifacts)
    manifest = env.EspReleaseManifest(path("manifest.json"), layout, images=[app_bin, boot_bin], artifacts=files,
                                      certificates=list(certificates or []),
                                      plain={r: n for r, n in plain.items() if encrypt}, release=release)  # fmt: skip
    artifacts.append(manifest)
    if not env.GetOption("clean"):
        _rebuild_tampered(env, folder, [*files, first_node(manifest)])
    if not env.GetOption("question"):  # `scons -q` must answer "up to date" when nothing changed
        artifacts.append(_verify_step(env, folder, manifest))
    summary_at_exit(folder, dev, env.Flatten(artifacts))
    return artifacts


def _release_files(env: Any, folder: str, artifacts: list[Any]) -> list[Any]:
    """Every file node the release writes in ``folder`` (side targets included)."""
    base = env.Dir(folder).abspath + os.sep
    files = []
    for node in env.Flatten(artifacts):
        if isinstance(node, str):
            node = env.File(node)
        if node.abspath.startswith(base) and node not in files:
            files.append(node)
    return files


def _rebuild_tampered(env: Any, folder: str, nodes: list[Any]) -> None:
    """Rebuild targets whose file changed since SCons built them (SCons itself only looks at sources).

    Release files are compared by content hash with what SCons recorded; the
    targets they are made from (images, ELFs) by size and time first, as the
    ``content-timestamp`` decider does. A changed target is built again.
    """
    release_dir = env.Dir(folder).abspath + os.sep
    seen: set[Any] = set()
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if node in seen or not node.has_builder() or node.precious:
            continue  # precious targets (key files) are the user's to change
        seen.add(node)
        todo += [n for n in node.sources if hasattr(n, "has_builder")]
        try:
            stat = os.stat(node.abspath)
        except OSError:
            continue  # missing: SCons rebuilds it anyway
        stored = getattr(node.get_stored_info(), "ninfo", None)
        csig = getattr(stored, "csig", None)
        if csig is None:
            continue
        unchanged = getattr(stored, "timestamp", None) == int(stat.st_mtime) and getattr(stored, "size", None) == stat.st_size
        if unchanged and not node.abspath.startswith(release_dir):  # release files: always by content
            continue
        import SCons.Util

        current = SCons.Util.hash_file_signature(node.abspath, env.GetOption("md5_chunksize") * 1024)
        node.get_ninfo().csig = current  # what SCons would compute next: it need not read the file again
        if current != csig:
            print(f"esp-secure: {node.path} changed since it was built: building it again", file=sys.stderr)
            env.AlwaysBuild(node)


def _verify_step(env: Any, folder: str, manifest: Any) -> Any:
    """Run verify-release on the folder after every build of it, no-op builds included.

    The target is the verification stamp beside the folder: a file, so that a plain
    ``scons`` (default target ``.``) runs it too; always built, never cached, kept
    between runs (it is what a later run compares with), removed by ``scons -c``.
    """
    stamp = env.Command(_stamp_path(env, env.Dir(folder).abspath), manifest, keyed_action(_verify, strfunction=_verify_str))
    env.AlwaysBuild(stamp)
    env.Precious(stamp)
    env.NoCache(stamp)
    return stamp


def _stamp_path(env: Any, folder: str) -> str:
    """Where the last successful verification of ``folder`` is recorded (beside it, never in it)."""
    return os.path.join(os.path.dirname(folder), f".{os.path.basename(folder)}.verified")


def _stamp(folder: str, flash_key: bytes | None, v1_key: bytes | None, digests: list[bytes]) -> str:
    """SHA-256 over everything a verification reads: every file's path and content, the keys'
    hashes, the expected digests and the checking code. Equal stamps, equal verdicts."""
    import hashlib

    from .. import __version__, manifest, release_check

    h = hashlib.sha256(__version__.encode())
    for module in (release_check, manifest):
        st = os.stat(module.__file__ or "")
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                h.update(os.path.relpath(path, folder).encode() + b"\0" + hashlib.sha256(fh.read()).digest())
    for value in (flash_key, v1_key, *digests):
        h.update(b"\1" + hashlib.sha256(value).digest() if value is not None else b"\0")
    return h.hexdigest()


def _read_stamp(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _verify_str(target: Any, source: Any, env: Any) -> None:
    return None  # silent on success: a no-op build prints no step


def _verify(target: Any, source: Any, env: Any) -> int:
    from ..fileio import read_bytes, write_text_atomic
    from .signing import expected_digests

    manifest = source[0].get_abspath()
    folder = os.path.dirname(manifest)
    stamp_path = target[0].get_abspath()
    try:
        key = env.get("ESP_FLASH_ENCRYPTION_KEY")
        flash_key = read_bytes(env.File(first_node(key)).abspath, "flash encryption key") if key else None
        v1_path = env_str(env, "ESP_V1_KEY_FILE")
        v1_key = None
        if v1_path:
            from ..secure_boot.v1 import expand_hardware_key  # with cryptography: only when needed

            v1_key = expand_hardware_key(read_bytes(env.File(v1_path).abspath), v1_path)
        digests = expected_digests(env)
        stamp = _stamp(folder, flash_key, v1_key, digests)
        if _read_stamp(stamp_path) == stamp:
            print(f"esp-secure: release {os.path.relpath(folder)} verified (unchanged since its last verification)")
            return 0
        from ..release_check import verify_release

        report = verify_release(folder, flash_key=flash_key, expect_digests=digests, v1_key=v1_key)
    except EspSecureError as exc:
        raise SCons.Errors.BuildError(errstr=f"verify-release {os.path.relpath(folder)}: {exc}", exitstatus=2) from None
    if os.path.exists(stamp_path):
        os.unlink(stamp_path)
    if not report.passed:
        bad = report.failures[0]
        raise SCons.Errors.BuildError(
            errstr=f"verify-release {os.path.relpath(folder)}: {bad.name}: {bad.detail} "
            f"(delete the file named and run the build again to rebuild it)", exitstatus=2)  # fmt: skip
    write_text_atomic(stamp_path, stamp + "\n")
    skipped = [c.name for c in report.checks if c.status == "skipped"]
    print(f"esp-secure: release {os.path.relpath(folder)} verified ({len(report.checks)} checks"
          + (f"; skipped: {', '.join(skipped)}" if skipped else "") + ")")  # fmt: skip
    return 0


def generate(env: Any) -> None:
    env.SetDefault(ESP_ERASED_COMSTR="ESP-ERASED $TARGET", ESP_APP_COPY_COMSTR="ESP-APP $TARGET")
    env["BUILDERS"]["_EspErased"] = SCons.Builder.Builder(action=core_action(_build_erased, "ESP_ERASED_COMSTR", []))
    env["BUILDERS"]["_EspAppCopy"] = SCons.Builder.Builder(
        action=core_action(_build_app_copy, "ESP_APP_COPY_COMSTR", ["ESP_APP_PARTITION_SIZE"]), single_source=True
    )
    env.AddMethod(esp_release, "EspRelease")
