"""Secure Boot builders: ``SignedImage``, ``EspBootloaderDigest`` (V1), ``EspProvisioning``; ``env.EspDevSigningKey``.

Construction variables (defaults in brackets):

``ESP_SECURE_BOOT_VERSION`` [unset]
    1 (ESP32 only: ECDSA P-256 app signature, reflashable bootloader digest) or 2.
``ESP_SIGNING_KEYS`` [[]]
    Where the keys live, one entry per key (up to 3 for V2, 1 for V1):

    * a PEM/DER private key file (path or File node); a passphrase comes from
      ``ESP_SECURE_KEY_PASSPHRASE`` or a prompt, never from the build files;
    * ``{'pkcs11': 'hsm.ini'}``: a key in a PKCS#11 token, espsecure's config format
      (the private key never leaves the token);
    * ``{'command': 'sign-service --digest {digest}', 'public_key': 'pub.pem'}``: an
      external signer (protocol in :class:`esp_secure_build.secure_boot.signers.CommandSigner`).

    Key files, HSM configs and public keys are dependencies: changing one re-signs,
    and nothing is recompiled.
``ESP_ALLOW_PUBLISHED_KEY`` [False]
    Publicly known test and example keys are refused unless this is set (tests only;
    ignored with ``ESP_REQUIRE_PRODUCTION_KEYS``).
``ESP_KEYS_DIR`` ["#keys"]
    Where the build writes the secrets it derives (the Secure Boot V1 eFuse key), never
    under a release folder; the provisioning script reads secrets from ``$ESP_KEYS_DIR``.
``ESP_EXPECTED_KEY_DIGESTS`` [[]]
    Hex SHA-256 public-key digests every signature block must carry: a CI gate that a
    production build was signed by the production keys.
``ESP_APP_CHECKS`` [False], ``ESP_PREVIOUS_MANIFEST`` [unset]
    ``EspRelease`` signs its app with ``ESP_APP_CHECKS=True``: the unsigned app must carry
    Secure Boot padding, and its secure version must not be lower than the one in
    ``ESP_PREVIOUS_MANIFEST`` (the last release's ``manifest.json``, a dependency).
``ESP_APP_PARTITION`` [unset], ``ESP_APP_PARTITION_SIZE`` [unset]
    The partition the signed image goes to and its size: a signed image that does not
    fit fails here, before anything is written (``EspRelease`` sets both).
``ESP_SIGN_COMSTR``, ``ESP_DIGEST_COMSTR``, ``ESP_PROVISION_COMSTR``
    The one line printed per step.

Every signature is verified right after it is made, before the output is written.
RSA-PSS signatures are randomised by design, so a re-signed RSA image differs from
the previous one; ECDSA signatures are deterministic (RFC 6979).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import SCons.Builder
import SCons.Errors

from ..chips import get_chip
from ..errors import EspSecureError
from ..fileio import read_bytes, write_atomic, write_text_atomic
from .common import core_action, env_bool, env_int, env_str, fail, first_node
from .production import is_development_signer, new_key_folder, production_mode, record_generated, refuse_generation

SIGN_VARS = [
    "ESP_CHIP", "ESP_SECURE_BOOT_VERSION", "ESP_SIGNING_KEYS", "ESP_ALLOW_PUBLISHED_KEY", "ESP_EXPECTED_KEY_DIGESTS",
]  # fmt: skip

# Loaded keys by (path, size, mtime): an RSA-3072 load with validation costs ~0.1 s.
_KEY_CACHE: dict[tuple[str, int, int], Any] = {}


def _path(env: Any, value: Any) -> str:
    return env.File(value).abspath if isinstance(value, str) else value.abspath


def key_specs(env: Any) -> list[dict[str, str]]:
    """``ESP_SIGNING_KEYS`` normalised to dicts with absolute paths."""
    raw = env.get("ESP_SIGNING_KEYS") or []
    if isinstance(raw, (str, dict)) or hasattr(raw, "abspath"):
        raw = [raw]
    items: list[Any] = []
    for item in raw:  # a builder's NodeList counts as its nodes
        items += [item] if isinstance(item, (str, dict)) or hasattr(item, "abspath") else env.Flatten([item])
    specs = []
    for item in items:
        if isinstance(item, dict):
            if "pkcs11" in item:
                specs.append({"pkcs11": _path(env, item["pkcs11"])})
            elif "command" in item and "public_key" in item:
                specs.append({"command": str(item["command"]), "public_key": _path(env, item["public_key"])})
            else:
                raise EspSecureError(
                    f"ESP_SIGNING_KEYS entry {item!r}: use a key file, {{'pkcs11': cfg}} or "
                    "{'command': cmd, 'public_key': pem}"
                )
        else:
            specs.append({"file": _path(env, env.subst(item) if isinstance(item, str) else item)})
    return specs


def _dependencies(env: Any) -> list[Any]:
    """Nodes whose contents decide the signatures: key files, HSM configs, public keys, commands."""
    deps: list[Any] = []
    for spec in key_specs(env):
        if "file" in spec:
            deps.append(env.File(spec["file"]))
        elif "pkcs11" in spec:
            deps.append(env.File(spec["pkcs11"]))
        else:
            deps += [env.File(spec["public_key"]), env.Value(spec["command"])]
    return deps


def signers(env: Any) -> list[Any]:
    """One signer per ``ESP_SIGNING_KEYS`` entry, refusing published keys unless allowed."""
    from ..secure_boot.keys import load_public_key
    from ..secure_boot.published_keys import SCONS_OVERRIDE, refuse_known_signer
    from ..secure_boot.signers import CommandSigner, LocalKeySigner, Pkcs11Signer

    result = []
    for spec in key_specs(env):
        if "file" in spec:
            st = os.stat(spec["file"]) if os.path.exists(spec["file"]) else None
            key = (spec["file"], st.st_size, st.st_mtime_ns) if st else None
            if key is None or key not in _KEY_CACHE:
                signer = LocalKeySigner.from_file(spec["file"])
                if key is not None:
                    _KEY_CACHE[key] = signer
            else:
                signer = _KEY_CACHE[key]
        elif "pkcs11" in spec:
            signer = Pkcs11Signer.from_config_file(spec["pkcs11"])
        else:
            signer = CommandSigner(spec["command"], load_public_key(spec["public_key"]), name=spec["command"].split()[0])
        if production_mode(env) or not env_bool(env, "ESP_ALLOW_PUBLISHED_KEY"):
            refuse_known_signer(signer, getattr(signer, "name", None), SCONS_OVERRIDE)
        result.append(signer)
    if not result:
        raise EspSecureError("ESP_SIGNING_KEYS is empty: name the key file(s), PKCS#11 config or external signer")
    return result


def _version(env: Any) -> int:
    version = env_int(env, "ESP_SECURE_BOOT_VERSION", 0)
    if version not in (1, 2):
        raise EspSecureError(f"ESP_SECURE_BOOT_VERSION must be 1 or 2 to sign, not {version!r}")
    return version


def expected_digests(env: Any) -> list[bytes]:
    """``$ESP_EXPECTED_KEY_DIGESTS`` as bytes ([] when unset)."""
    values = env.get("ESP_EXPECTED_KEY_DIGESTS") or []
    try:
        return [bytes.fromhex(env.subst(str(v))) for v in env.Flatten(values)]
    except ValueError:
        raise EspSecureError("ESP_EXPECTED_KEY_DIGESTS holds something that is not a hex digest") from None


def sign_image(data: bytes, env: Any, path: str) -> bytes:
    """Sign ``data`` as the construction variables say, and verify what was made."""
    from ..secure_boot import v1, v2
    from ..secure_boot.keys import public_key_digest

    chip = get_chip(env_str(env, "ESP_CHIP"))
    version = _version(env)
    chosen = signers(env)
    expected = expected_digests(env)
    if env.get("ESP_IDF_SDKCONFIG"):  # the bootloader verifies one scheme only
        from ..chain_guards import check_signing_schemes, read_sdkconfig
        from ..secure_boot.keys import scheme_of

        sdkconfig = read_sdkconfig(env.File(env["ESP_IDF_SDKCONFIG"]).abspath)
        check_signing_schemes([scheme_of(s.public_key()) for s in chosen], sdkconfig)
    if version == 1:
        if not chip.secure_boot_v1:
            raise EspSecureError(f"{chip.title} has no Secure Boot V1 (ESP32 only); set ESP_SECURE_BOOT_VERSION=2")
        if len(chosen) != 1:
            raise EspSecureError(f"Secure Boot V1 signs with exactly one key, not {len(chosen)}")
        signed = v1.sign(data, chosen[0])
        v1.verify(signed, chosen[0].public_key(), path)
        if expected and public_key_digest(chosen[0].public_key()) not in expected:
            raise EspSecureError("the V1 signing key is not one of ESP_EXPECTED_KEY_DIGESTS", path)
        return signed
    signed = v2.sign(data, chosen, chip=chip, path=path)
    # Every block must be one we made, with the key we meant, over these bytes.
    v2.verify(signed, expect_digests=[public_key_digest(s.public_key()) for s in chosen], path=path)
    if expected:
        try:
            v2.verify(signed, expect_digests=expected, path=path)
        except EspSecureError as exc:  # say which setting refused it
            raise EspSecureError(exc.message, exc.path, hint="not one of ESP_EXPECTED_KEY_DIGESTS") from None
    return signed


def _previous_manifest(env: Any) -> Any:
    value = env.get("ESP_PREVIOUS_MANIFEST")
    return env.File(value) if value else None


def _build_signed(target: Any, source: Any, env: Any) -> None:
    src = source[0].get_abspath()
    data = read_bytes(src, "image")
    if env_bool(env, "ESP_APP_CHECKS"):  # EspRelease's app: padding and anti-rollback, before signing
        from ..chain_guards import check_app_image

        previous = _previous_manifest(env)
        check_app_image(data, env_str(env, "ESP_CHIP"), _version(env), previous.abspath if previous else None, src)
    signed = sign_image(data, env, src)
    check_fits_partition(len(signed), env, src, "signed, ")
    write_atomic(target[0].get_abspath(), signed)


def check_fits_partition(size: int, env: Any, src: str, how: str = "") -> None:
    """An app image larger than ``$ESP_APP_PARTITION_SIZE`` (when set) is refused, naming the partition."""
    limit = env_int(env, "ESP_APP_PARTITION_SIZE", 0)
    if limit and size > limit:
        raise EspSecureError(
            f"{how}the image is {size:#x} bytes: larger than partition "
            f"{env_str(env, 'ESP_APP_PARTITION', '?')!r} ({limit:#x} bytes)",
            src,
        )


def _signed_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    previous = _previous_manifest(env) if env_bool(env, "ESP_APP_CHECKS") else None
    return target, source[:1] + _dependencies(env) + ([previous] if previous else [])


def _build_bootloader_digest(target: Any, source: Any, env: Any) -> None:
    """V1 reflashable mode: hardware key = SHA-256 of the signing key; digest image for offset 0x0."""
    from ..secure_boot import v1
    from ..secure_boot.keys import digest_private_key

    if _version(env) != 1:
        raise EspSecureError("EspBootloaderDigest is for Secure Boot V1 (ESP_SECURE_BOOT_VERSION=1)")
    chosen = signers(env)
    private = getattr(chosen[0], "private_key", None)
    if private is None:
        raise EspSecureError("Secure Boot V1 reflashable mode needs the signing key as a local key file")
    hw_key = digest_private_key(private, 256)
    src = source[0].get_abspath()
    digested = v1.digest_secure_bootloader(read_bytes(src, "bootloader image"), hw_key, None, src)
    write_atomic(target[1].get_abspath(), hw_key, mode=0o600)
    write_atomic(target[0].get_abspath(), digested)


def _bootloader_digest_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    # The eFuse key is as secret as the signing key: it goes with the keys, never in the
    # release folder (which CI uploads); named after the release it belongs to.
    release = os.path.basename(os.path.dirname(target[0].get_abspath()))
    key_file = env.Dir(env.get("ESP_KEYS_DIR") or "#keys").File(f"{release}-secure-bootloader-key-256.bin")
    env.NoCache(key_file)  # the eFuse key is a secret: never in a shared cache
    return [target[0], key_file], source[:1] + _dependencies(env)


def _build_provisioning(target: Any, source: Any, env: Any) -> None:
    """Key digests, ``provisioning/efuse-script.sh`` and ``provisioning/README.txt``."""
    from ..efuse import provisioning_plan, render_readme, render_script
    from ..secure_boot.keys import public_key_digest, public_key_pem, scheme_of

    chip = get_chip(env_str(env, "ESP_CHIP"))
    version = env_int(env, "ESP_SECURE_BOOT_VERSION", 0) or 0
    chosen = signers(env) if version else []
    facts = [f"Chip: {chip.title}"]
    if any(is_development_signer(s) for s in chosen):
        facts.append("WARNING: signed with DEVELOPMENT keys generated by a build; never provision devices for them")
    pubs = target[2:]
    digest_names = []
    for i, signer in enumerate(chosen):
        pub, digest = pubs[2 * i], pubs[2 * i + 1]
        write_atomic(pub.get_abspath(), public_key_pem(signer.public_key()))
        write_atomic(digest.get_abspath(), public_key_digest(signer.public_key()))
        digest_names.append(digest.name)
        name = getattr(signer, "name", "?")
        name = os.path.relpath(name) if os.path.isabs(name) else name
        facts.append(f"Secure Boot V{version} key {i}: {name}, public-key digest {public_key_digest(signer.public_key()).hex()}")
    fe_key = env.get("ESP_FLASH_ENCRYPTION_KEY")
    fe_name = fe_bits = None
    if fe_key:
        path = env.File(first_node(fe_key)).abspath
        fe_name, fe_bits = os.path.basename(path), os.path.getsize(path) * 8
        facts.append(f"Flash encryption key: $ESP_KEYS_DIR/{fe_name} ({fe_bits} bits)")
    v1_key = env_str(env, "ESP_V1_KEY_FILE") or None
    v1_name = os.path.basename(v1_key) if v1_key else None
    if v1_name:
        facts.append(f"Secure Boot V1 eFuse key: $ESP_KEYS_DIR/{v1_name} (made by the build next to the keys)")
    scheme = scheme_of(chosen[0].public_key()) if version == 2 else None
    steps = provisioning_plan(chip.name, secure_boot_version=version or None, digest_files=digest_names,
                              v1_key_file=v1_name, flash_key_file=fe_name, flash_key_bits=fe_bits, scheme=scheme)  # fmt: skip
    secrets = [n for n in (fe_name, v1_name) if n]
    write_text_atomic(target[0].get_abspath(), render_script(chip.name, steps, facts), mode=0o755)
    readme = render_readme(chip.name, steps, facts, secrets)
    write_text_atomic(target[1].get_abspath(), readme)
    sys.stdout.write("\n".join(facts) + f"\neFuse provisioning (not run by the build): {os.path.relpath(target[0].get_abspath())}\n")


def _provisioning_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    folder = os.path.dirname(target[0].get_abspath())
    release = os.path.dirname(folder)
    extra = [env.File(os.path.join(folder, "README.txt"))]
    version = env_int(env, "ESP_SECURE_BOOT_VERSION", 0) or 0
    for i in range(len(key_specs(env)) if version else 0):
        extra += [env.File(os.path.join(release, f"secure_boot_key{i}.pub.pem")),
                  env.File(os.path.join(release, f"secure_boot_key{i}_digest.bin"))]  # fmt: skip
    deps = _dependencies(env) if version else []
    if env.get("ESP_FLASH_ENCRYPTION_KEY"):  # its size decides the key purpose; its bytes are never copied
        deps.append(env.File(first_node(env["ESP_FLASH_ENCRYPTION_KEY"])))
    return [target[0], *extra], deps


def make_dev_signing_key(path: str, version: int, scheme: str | None, chip: Any = None) -> bool:
    """Create a development signing key at ``path`` unless one is there; True when created.

    The key is recorded as a development key (:mod:`esp_secure_build.devkeys`).
    """
    from ..secure_boot.keys import check_scheme, generate_signing_key

    if os.path.lexists(path):
        return False
    scheme = "ecdsa256" if version == 1 else (scheme or "rsa3072")
    check_scheme(scheme, version, chip, path)  # no key the chip could never verify
    new_key_folder(path)
    key = generate_signing_key(path, version, scheme)  # exclusive creation: never replaces a key
    record_generated(path, "signing", read_bytes(path, "signing key"), key.public_key())
    banner = "!" * 78
    sys.stdout.write(
        f"{banner}\n!! DEVELOPMENT signing key created: {os.path.relpath(path)} ({scheme}).\n"
        "!! Devices whose eFuses hold its digest accept anything signed with it. Never use it in production:\n"
        "!! set ESP_SIGNING_KEYS to your production key(s), HSM or signing service.\n"
        f"{banner}\n"
    )
    return True


def generate(env: Any) -> None:
    env.SetDefault(
        ESP_SIGNING_KEYS=[],
        ESP_ALLOW_PUBLISHED_KEY=False,
        ESP_EXPECTED_KEY_DIGESTS=[],
        ESP_SIGN_COMSTR="ESP-SIGN $TARGET",
        ESP_DIGEST_COMSTR="ESP-DIGEST $TARGET",
        ESP_PROVISION_COMSTR="ESP-PROVISION $TARGET",
    )
    env["BUILDERS"]["SignedImage"] = SCons.Builder.Builder(
        action=core_action(_build_signed, "ESP_SIGN_COMSTR", SIGN_VARS),
        emitter=_signed_emitter,
        suffix=".bin",
    )
    env["BUILDERS"]["EspBootloaderDigest"] = SCons.Builder.Builder(
        action=core_action(_build_bootloader_digest, "ESP_DIGEST_COMSTR", SIGN_VARS),
        emitter=_bootloader_digest_emitter,
        suffix=".bin",
    )
    env["BUILDERS"]["EspProvisioning"] = SCons.Builder.Builder(
        action=core_action(
            _build_provisioning, "ESP_PROVISION_COMSTR",
            [*SIGN_VARS, "ESP_V1_KEY_FILE", "ESP_FLASH_ENCRYPTION_KEY"],
        ),
        emitter=_provisioning_emitter,
        suffix=".sh",
    )
    env.AddMethod(_dev_signing_key, "EspDevSigningKey")


def _dev_signing_key(env: Any, target: str) -> Any:
    """A development signing key: made when the SConstruct is read if missing, then kept.

    It is a source, not a build target: a target would be "rebuilt" whenever this
    package's code or a variable changed, and a signing key must never be
    replaced behind the user's back. ``scons -c`` leaves it alone; deleting the file
    is the explicit way to get a new one. With ``ESP_REQUIRE_PRODUCTION_KEYS`` none is made.
    """
    node = env.File(target)
    if not env.GetOption("clean") and not env.GetOption("help") and not os.path.lexists(node.abspath):
        try:
            refuse_generation(env, "signing key", node.abspath, "ESP_SIGNING_KEYS")
            chip = get_chip(env_str(env, "ESP_CHIP"))
            make_dev_signing_key(node.abspath, _version(env), env_str(env, "ESP_DEV_KEY_SCHEME") or None, chip)
        except EspSecureError as exc:
            fail(exc)
    return node
