"""NVS encryption: the keys partition and AES-256-XTS over 32-byte entries.

Each written entry is its own XTS data unit, with the entry's offset in the
partition (little-endian, 16 bytes) as tweak; page headers and state bitmaps
stay in clear. XTS is computed here with two batched AES-ECB passes (one for
the tweaks, one for the data) instead of one cipher object per entry: same
bytes as AES-XTS from ``cryptography``, much faster for thousands of devices.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import EspSecureError
from .layout import ENTRIES_PER_PAGE, ENTRY_SIZE, FIRST_ENTRY_OFFSET, PAGE_SIZE, crc32_nvs

KEYS_PARTITION_SIZE = 4096
HMAC_KEY_SIZE = 32
# Seeds ESP-IDF hashes with the eFuse HMAC key to get the two XTS keys.
_HMAC_EKEY_SEED = b"\x5a\x5a\xbe\xae" * 8
_HMAC_TKEY_SEED = b"\xa5\xa5\xde\xce" * 8
_EMPTY_ENTRY = b"\xff" * ENTRY_SIZE


@dataclass(frozen=True)
class NvsKeys:
    """The two 256-bit XTS keys of an NVS keys partition (data key, tweak key)."""

    eky: bytes
    tky: bytes

    def __post_init__(self) -> None:
        if len(self.eky) != 32 or len(self.tky) != 32:
            raise EspSecureError("NVS XTS keys must be two 32-byte keys")
        if self.eky == self.tky:
            # XTS is insecure with equal halves; OpenSSL refuses such keys too.
            raise EspSecureError("NVS XTS data key and tweak key are identical")

    def __repr__(self) -> str:  # never show key material
        return "NvsKeys(<hidden>)"

    @classmethod
    def generate(cls) -> NvsKeys:
        """Fresh random keys from the OS CSPRNG (the reference uses ``random``)."""
        while True:
            eky, tky = secrets.token_bytes(32), secrets.token_bytes(32)
            if eky != tky:
                return cls(eky, tky)

    @classmethod
    def from_hmac_key(cls, hmac_key: bytes) -> NvsKeys:
        """Keys as ESP-IDF derives them on the device from an eFuse HMAC key."""
        return cls(
            hmac.new(hmac_key, _HMAC_EKEY_SEED, hashlib.sha256).digest(),
            hmac.new(hmac_key, _HMAC_TKEY_SEED, hashlib.sha256).digest(),
        )

    def partition(self) -> bytes:
        """The 4096-byte ``nvs_keys`` partition: eky, tky, CRC32 of both, 0xFF fill."""
        keys = self.eky + self.tky
        return (keys + struct.pack("<I", crc32_nvs(keys))).ljust(KEYS_PARTITION_SIZE, b"\xff")

    @classmethod
    def from_partition(cls, data: bytes, path: str | None = None) -> NvsKeys:
        """Keys from a keys partition (CRC checked) or from a raw 64-byte key file."""
        if len(data) == 64:
            return cls(data[:32], data[32:])
        if len(data) < 68:
            raise EspSecureError(
                f"not an NVS keys file: {len(data)} bytes (need a 4096-byte keys partition or 64 raw key bytes)",
                path,
            )
        (crc,) = struct.unpack_from("<I", data, 64)
        if crc != crc32_nvs(data[:64]):
            raise EspSecureError("NVS keys partition CRC mismatch (corrupt or not a keys partition)", path)
        return cls(data[:32], data[32:64])


def random_hmac_key() -> bytes:
    """A new 256-bit HMAC key for the eFuse HMAC scheme, from the OS CSPRNG."""
    return secrets.token_bytes(HMAC_KEY_SIZE)


def _mul_alpha(block: int) -> int:
    """Multiply a tweak (as a little-endian 128-bit int) by x in GF(2^128), as XTS does."""
    block <<= 1
    if block >> 128:
        block = (block & ((1 << 128) - 1)) ^ 0x87
    return block


def _xts(keys: NvsKeys, units: list[tuple[int, bytes]], decrypt: bool) -> list[bytes]:
    """XTS-AES-256 over 32-byte data units given as (tweak value, data)."""
    if not units:
        return []
    tweaks = b"".join(t.to_bytes(16, "little") for t, _ in units)
    enc_t = Cipher(algorithms.AES(keys.tky), modes.ECB()).encryptor()
    t_blocks = enc_t.update(tweaks) + enc_t.finalize()
    masks = bytearray()
    for i in range(0, len(t_blocks), 16):
        t0 = int.from_bytes(t_blocks[i : i + 16], "little")
        masks += t_blocks[i : i + 16] + _mul_alpha(t0).to_bytes(16, "little")
    data = b"".join(d for _, d in units)
    width = len(data)
    mask_int = int.from_bytes(masks, "little")
    mixed = (int.from_bytes(data, "little") ^ mask_int).to_bytes(width, "little")
    aes = Cipher(algorithms.AES(keys.eky), modes.ECB())
    ctx = aes.decryptor() if decrypt else aes.encryptor()
    out = ctx.update(mixed) + ctx.finalize()
    out = (int.from_bytes(out, "little") ^ mask_int).to_bytes(width, "little")
    return [out[i : i + ENTRY_SIZE] for i in range(0, width, ENTRY_SIZE)]


def xts_entry(keys: NvsKeys, tweak: bytes, data: bytes, decrypt: bool = False) -> bytes:
    """XTS over one 32-byte entry with an explicit 16-byte tweak (for test vectors)."""
    return _xts(keys, [(int.from_bytes(tweak, "little"), data)], decrypt)[0]


def _slots(data: bytes, path: str | None) -> None:
    if not data:
        raise EspSecureError("not an NVS partition: the file is empty", path)
    if len(data) % PAGE_SIZE:
        raise EspSecureError(f"not an NVS partition: {len(data)} bytes is not a multiple of 4096", path)


def encrypt_partition(plain: bytes, keys: NvsKeys, path: str | None = None) -> bytes:
    """Encrypt every entry the state bitmaps mark as used; headers stay in clear."""
    _slots(plain, path)
    out = bytearray(plain)
    units: list[tuple[int, bytes]] = []
    for base in range(0, len(plain), PAGE_SIZE):
        bitmap = plain[base + 32 : base + 64]
        for n in range(ENTRIES_PER_PAGE):
            if (bitmap[n // 4] >> ((2 * n) % 8)) & 3 != 3:
                off = base + FIRST_ENTRY_OFFSET + n * ENTRY_SIZE
                units.append((off, plain[off : off + ENTRY_SIZE]))
    for (off, _), enc in zip(units, _xts(keys, units, decrypt=False), strict=True):
        out[off : off + ENTRY_SIZE] = enc
    return bytes(out)


def decrypt_partition(data: bytes, keys: NvsKeys, path: str | None = None) -> bytes:
    """Decrypt every entry slot that is not erased flash (all 0xFF), as the reference does."""
    _slots(data, path)
    out = bytearray(data)
    units: list[tuple[int, bytes]] = []
    for base in range(0, len(data), PAGE_SIZE):
        for n in range(ENTRIES_PER_PAGE):
            off = base + FIRST_ENTRY_OFFSET + n * ENTRY_SIZE
            entry = data[off : off + ENTRY_SIZE]
            if entry != _EMPTY_ENTRY:
                units.append((off, entry))
    for (off, _), dec in zip(units, _xts(keys, units, decrypt=True), strict=True):
        out[off : off + ENTRY_SIZE] = dec
    return bytes(out)
