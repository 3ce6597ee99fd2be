"""Secure Boot V1 (ESP32 only): app signatures and the reflashable bootloader digest.

Signed app = data || u32 version 0 || r || s (32 bytes each, big-endian): an
ECDSA P-256 / SHA-256 signature over the whole input as given. With a local key
the signature is RFC 6979 deterministic, like espsecure's, so the output is
byte-identical to espsecure's.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import EspSecureError
from .keys import PublicKey, scheme_of
from .signers import Signer, ecdsa_rs, verify_digest

SIGNATURE_BLOCK_LEN = 68  # u32 version + r + s
IV_LEN = 128
DIGEST_SECTOR = 0x1000
IMAGE_MAGIC = 0xE9


def _check_v1_key(key: PublicKey, name: str | None = None) -> None:
    scheme = scheme_of(key, name)
    if scheme != "ecdsa256":
        raise EspSecureError(f"Secure Boot V1 signs with ECDSA P-256 only, not {scheme}", name)


def signature_block(data: bytes, signer: Signer) -> bytes:
    """The 68 bytes appended to ``data``; the signature is checked before it is returned."""
    pub = signer.public_key()
    _check_v1_key(pub, getattr(signer, "name", None))
    digest = hashlib.sha256(data).digest()
    signature = signer.sign_digest(digest)
    if not verify_digest(pub, digest, signature):
        raise EspSecureError("signature made for Secure Boot V1 does not verify", getattr(signer, "name", None))
    r, s = ecdsa_rs(signature, pub)
    return struct.pack("<I", 0) + r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign(data: bytes, signer: Signer) -> bytes:
    """``data`` with its Secure Boot V1 signature block appended."""
    return data + signature_block(data, signer)


def verify(signed: bytes, public_key: PublicKey, path: str | os.PathLike[str] | None = None) -> None:
    """Check the trailing V1 signature with ``public_key``; raises EspSecureError if it fails."""
    _check_v1_key(public_key)
    if len(signed) < SIGNATURE_BLOCK_LEN:
        raise EspSecureError(f"file is {len(signed)} bytes, too short to hold a V1 signature", path)
    data, block = signed[:-SIGNATURE_BLOCK_LEN], signed[-SIGNATURE_BLOCK_LEN:]
    (version,) = struct.unpack_from("<I", block)
    if version != 0:
        raise EspSecureError(f"V1 signature block has version {version}, only version 0 exists (not signed?)", path)
    if not verify_digest(public_key, hashlib.sha256(data).digest(), block[4:]):
        raise EspSecureError("Secure Boot V1 signature is not valid for this key and data", path)


# --- reflashable bootloader digest ----------------------------------------------------------------------


def expand_hardware_key(key: bytes, path: str | os.PathLike[str] | None = None) -> bytes:
    """A 256-bit AES key from a secure-boot key file as the hardware extends it.

    24 bytes (3/4 coding scheme): key || key[8:16]; 16 bytes: SHA-256(key).
    """
    if len(key) == 32:
        return key
    if len(key) == 24:
        return key + key[8:16]
    if len(key) == 16:
        return hashlib.sha256(key).digest()
    raise EspSecureError(f"secure boot key is {len(key)} bytes; expected 16, 24 or 32", path)


def _image_has_digest(image: bytes, path: str | os.PathLike[str] | None) -> bool:
    """Parse the ESP32 image header and segments; True when a SHA-256 is appended."""
    if len(image) < 24 or image[0] != IMAGE_MAGIC:
        raise EspSecureError("not an ESP32 image (no 0xE9 magic)", path)
    hash_appended = image[23]
    if hash_appended not in (0, 1):
        raise EspSecureError(f"image header byte 23 (hash appended) is {hash_appended:#x}, must be 0 or 1", path)
    count = image[1]
    if count > 16:
        raise EspSecureError(f"image has {count} segments (max 16)", path)
    pos = 24
    for index in range(count):
        if pos + 8 > len(image):
            raise EspSecureError(f"image is truncated in the header of segment {index}", path)
        _, size = struct.unpack_from("<II", image, pos)
        pos += 8 + size
        if pos > len(image):
            raise EspSecureError(f"image is truncated in segment {index}", path)
    return hash_appended == 1


def digest_secure_bootloader(
    image: bytes, key: bytes, iv: bytes | None = None, path: str | os.PathLike[str] | None = None
) -> bytes:
    """The flashable ``IV || digest || 0xFF.. || image`` that the V1 ROM checks at offset 0x0.

    The ROM reads the bootloader in 128-byte blocks and ignores an appended
    SHA-256 that starts a block of its own, so that tail is dropped and the
    rest padded with 0xFF (unwritten flash). The digest is SHA-512 over
    AES-256-ECB of ``IV || image``, with the hardware's byte orders.
    ``iv`` (128 bytes; for tests only) defaults to 128 random bytes.
    """
    aes_key = expand_hardware_key(key)
    if iv is None:
        iv = os.urandom(IV_LEN)
    elif not iv:
        raise EspSecureError("IV file is empty")
    # espsecure uses the first 128 bytes of the IV file, or fewer when the file is
    # shorter (esptool's own test IV is 32 bytes); the ROM itself reads 128.
    iv = iv[:IV_LEN]
    if _image_has_digest(image, path) and len(image) % 128 <= 32:
        image = image[: len(image) - len(image) % 128]
    if len(image) % 128:
        image += b"\xff" * (128 - len(image) % 128)
    plaintext = iv + image
    # Each 16-byte block is byte-reversed into AES; the output block's 32-bit words
    # go into SHA-512 in reverse order (bytes within a word unchanged).
    reversed_in = b"".join(plaintext[i : i + 16][::-1] for i in range(0, len(plaintext), 16))
    encrypted = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor().update(reversed_in)
    sha = hashlib.sha512()
    for i in range(0, len(encrypted), 16):
        block = encrypted[i : i + 16]
        sha.update(block[12:16] + block[8:12] + block[4:8] + block[0:4])
    digest = sha.digest()
    swapped = b"".join(digest[i : i + 4][::-1] for i in range(0, 64, 4))
    header = iv + swapped
    return header + b"\xff" * (DIGEST_SECTOR - len(header)) + image
