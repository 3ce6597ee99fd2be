"""Development keys: the record of the keys a build generated, kept by fingerprint.

Whenever a build makes a key (a development signing key, a flash encryption key,
random NVS keys) it notes the key's fingerprints in ``.dev-keys.json`` in the key's
folder. A key is a development key when a record names its fingerprint, however it is
passed to a later build: the generated file named explicitly, a copy under another
name, the same signing key re-encoded, or a signing command whose public key it is.

The record holds fingerprints only, never key material: a domain-separated SHA-256
over the key file's bytes and, for signing keys, the SHA-256 of the public key (the
same fingerprint as :mod:`esp_secure_build.secure_boot.published_keys`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from .errors import EspSecureError
from .fileio import PathLike, read_bytes, write_text_atomic

RECORD_NAME = ".dev-keys.json"
KIND_TITLES = {
    "signing": "Secure Boot signing key",
    "flash_encryption": "flash encryption key",
    "nvs_keys": "NVS keys",
    "nvs_hmac": "NVS HMAC key",
}
_ABOUT = (
    "Fingerprints of the development keys esp-secure-build generated in this folder "
    "(no key material). Any build using one of them says so; ESP_REQUIRE_PRODUCTION_KEYS refuses them."
)


def file_fingerprint(data: bytes) -> str:
    """SHA-256 over a key file's bytes, domain-separated from any other hash of them."""
    return hashlib.sha256(b"esp-secure-build development key file\0" + data).hexdigest()


def public_key_fingerprint(public_key: object) -> str:
    from .secure_boot.published_keys import fingerprint

    return fingerprint(public_key)


def signing_public_key(data: bytes) -> object | None:
    """The public key of a PEM/DER private or public key file, or None when it cannot be read
    without a passphrase (the build never writes an encrypted key) or is not a key."""
    from cryptography.hazmat.primitives import serialization

    loaders: list[Callable[[], Any]] = [
        lambda: serialization.load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True).public_key(),
        lambda: serialization.load_der_private_key(data, None, unsafe_skip_rsa_key_validation=True).public_key(),
        lambda: serialization.load_pem_public_key(data),
        lambda: serialization.load_der_public_key(data),
    ]
    for load in loaders:
        try:
            return load()
        except (ValueError, TypeError, AttributeError):
            continue
        except Exception:  # cryptography's UnsupportedAlgorithm and the like
            continue
    return None


def read_record(folder: PathLike) -> list[dict[str, str]]:
    """The entries of ``folder``'s record ([] when there is none)."""
    path = os.path.join(os.fspath(folder), RECORD_NAME)
    if not os.path.exists(path):
        return []
    try:
        entries = json.loads(read_bytes(path, "development key record"))["keys"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise EspSecureError("is not a development key record (bad JSON); delete it to start a new one", path) from None
    return entries


def add_to_record(key_path: PathLike, kind: str, data: bytes, public_key: object | None = None) -> None:
    """Note a key this build just generated in the record of its folder."""
    path = os.path.abspath(os.fspath(key_path))
    folder = os.path.dirname(path)
    entry = {"file": os.path.basename(path), "kind": kind, "file_sha256": file_fingerprint(data)}
    if public_key is not None:
        entry["public_key_sha256"] = public_key_fingerprint(public_key)
    entries = [e for e in read_record(folder) if e != entry] + [entry]
    text = json.dumps({"about": _ABOUT, "keys": entries}, indent=2) + "\n"
    write_text_atomic(os.path.join(folder, RECORD_NAME), text, mode=0o600)


def find_development_key(
    data: bytes, folders: Iterable[PathLike], public_key: Callable[[], object | None] | None = None
) -> dict[str, str] | None:
    """The record entry for this key file's contents, or None when it is not a development key.

    ``folders``: where records are looked for; ``public_key``: for signing keys, gives the
    file's public key, asked for only when the bytes match no entry (a copy keeps its bytes).
    """
    entries: list[dict[str, str]] = []
    for folder in dict.fromkeys(os.path.abspath(os.fspath(f)) for f in folders):
        entries += read_record(folder)
    if not entries:
        return None
    fingerprint = file_fingerprint(data)
    for entry in entries:
        if entry.get("file_sha256") == fingerprint:
            return entry
    by_public = {e["public_key_sha256"]: e for e in entries if "public_key_sha256" in e}
    if by_public and public_key is not None:
        key = public_key()
        if key is not None:
            return by_public.get(public_key_fingerprint(key))
    return None
