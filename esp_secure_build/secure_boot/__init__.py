"""Secure Boot signing and verification (V1 for ESP32, V2 for every chip), pure Python.

* :mod:`.keys`: load, generate and export keys; schemes; public-key digests for eFuse.
* :mod:`.signers`: where signatures come from (key file, pre-computed, command, PKCS#11).
* :mod:`.v1`: Secure Boot V1 app signatures and the reflashable bootloader digest.
* :mod:`.v2`: Secure Boot V2 signature blocks: sign, verify, inspect.

Everything works on bytes; the CLI and the SCons builders read and write the files.
"""

from .keys import SCHEMES, digest_private_key, load_private_key, load_public_key, public_key_digest, scheme_of
from .signers import CommandSigner, LocalKeySigner, Pkcs11Signer, PrecomputedSigner, Signer

__all__ = [
    "SCHEMES",
    "CommandSigner",
    "LocalKeySigner",
    "Pkcs11Signer",
    "PrecomputedSigner",
    "Signer",
    "digest_private_key",
    "load_private_key",
    "load_public_key",
    "public_key_digest",
    "scheme_of",
]
