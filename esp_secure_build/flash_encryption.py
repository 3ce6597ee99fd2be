"""Host-side flash encryption, byte-identical with ``espsecure encrypt-flash-data``.

Two schemes exist:

* ``esp32``: the original ESP32. AES-256 where every 32-byte unit of flash has
  its own key: the key file XORed with a "tweak" built from address bits 5..23,
  restricted to the bit ranges enabled by the ``FLASH_CRYPT_CONF`` eFuse. The
  hardware runs AES backwards (writing flash uses AES *decryption*) on each
  16-byte block with its byte order reversed.
* ``xts``: every later chip. XTS-AES-128 (32-byte key file) or XTS-AES-256
  (64-byte key file) over 128-byte data units, tweak = the unit's flash
  address, with each unit's byte order reversed.

Key files as espsecure reads them: 16 bytes are replaced by their SHA-256 (the
ESP32-C2 "128 eFuse bits" key, XTS only), 24 bytes (ESP32 3/4 coding scheme)
become ``key + key[8:16]``, 32 and 64 bytes are used as they are.

Speed: XTS encrypts all unit tweaks in one ECB call, derives the per-block
tweaks and runs one ECB pass over the data, in 1 MiB pieces: on numpy arrays
when numpy is loaded already (about 40x espsecure on 4 MiB in-process), else
on Python big integers (about 10x), since importing numpy costs a fresh CLI
process more than the whole job. AES-ECB runs
through OpenSSL's XTS code with a zero tweak (see :func:`_ecb`). The ESP32
scheme needs a key schedule per 32-byte unit: from 32 KiB on it runs a
bitsliced AES-256 over all units at once on Python big integers (:mod:`.aes_bitsliced`;
about 6x espsecure and 7x one cipher context per unit, which is what smaller
inputs use).

Deviations from espsecure 5.6.0, all on input it handles badly or randomly:

* where espsecure pads a short tail (ESP32 scheme, encrypt, length not a
  multiple of 16) with *random* bytes, we pad with 0xFF, the value of erased
  flash, so output is reproducible;
* ESP32 data must lie below 16 MiB (the chip's encrypted address space);
  beyond it espsecure's tweak arithmetic carries into other key bits (or
  crashes), so its output there matches no hardware;
* ``FLASH_CRYPT_CONF`` must be 0..15 (espsecure ignores higher bits);
* an XTS key whose two halves are equal is refused (espsecure crashes).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import sys
from array import array
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from .chips import Chip
from .errors import EspSecureError

SCHEME_ESP32 = "esp32"
SCHEME_XTS = "xts"
SCHEMES = (SCHEME_ESP32, SCHEME_XTS)

# Key file lengths (bytes) each scheme accepts, as espsecure 5.6 does.
KEY_FILE_LENGTHS = {SCHEME_ESP32: (24, 32), SCHEME_XTS: (16, 32, 64)}
# Key sizes generate-flash-encryption-key offers (bits).
GENERATE_KEY_BITS = (128, 192, 256, 512)

# ESP32 flash encryption covers the 24-bit flash address space; the tweak only
# uses address bits 5..23.
ESP32_ADDRESS_LIMIT = 1 << 24
XTS_UNIT = 128
# ESP32 data from this size on goes through the bitsliced AES (below it a
# cipher context per 32-byte unit is faster); processed in chunks of this size.
ESP32_BITSLICE_MIN = 32 * 1024
ESP32_BITSLICE_CHUNK = 1024 * 1024
_ECB = modes.ECB()


def _ecb(key: bytes, decrypt: bool) -> CipherContext:
    """An AES-ECB context for ``key`` (16 or 32 bytes), run by OpenSSL's XTS code.

    XTS computes E(K1, P_j ^ T_j) ^ T_j with T_j = E(K2, iv) * alpha^j; with
    iv = D(K2, 0) every T_j is zero and that is ECB. OpenSSL's XTS is
    pipelined (VAES where the CPU has it): on the benchmark machine it does
    21 GB/s where ECB does 7 GB/s. Each update takes whole blocks, at most
    16 MiB (XTS's data unit limit).
    """
    helper = bytes(len(key)) if any(key) else b"\x01" * len(key)  # OpenSSL refuses equal halves
    iv = Cipher(algorithms.AES(helper), _ECB).decryptor().update(bytes(16))
    ctx = Cipher(algorithms.AES(key + helper), modes.XTS(iv))
    return ctx.decryptor() if decrypt else ctx.encryptor()


def scheme_for_chip(chip: Chip) -> str:
    """The flash encryption scheme a chip's flash controller uses."""
    return SCHEME_ESP32 if chip.flash_encryption == "esp32-aes" else SCHEME_XTS


def expand_key(key: bytes, scheme: str, path: str | os.PathLike[str] | None = None) -> bytes:
    """Turn a key file's bytes into the key the cipher uses (32 or 64 bytes).

    Raises EspSecureError for a length the scheme does not accept.
    """
    allowed = KEY_FILE_LENGTHS[_check_scheme(scheme)]
    if len(key) not in allowed:
        bits = ", ".join(str(n * 8) for n in allowed)
        what = "ESP32 flash encryption" if scheme == SCHEME_ESP32 else "XTS-AES flash encryption"
        raise EspSecureError(f"key is {len(key)} bytes ({len(key) * 8} bits); {what} takes {bits}-bit keys", path)
    if len(key) == 16:
        return hashlib.sha256(key).digest()
    if len(key) == 24:
        # What the ESP32 hardware does with a 192-bit key under the 3/4 coding scheme.
        return key + key[8:16]
    return key


def check_key_for_chip(key: bytes, chip: Chip, path: str | os.PathLike[str] | None = None) -> None:
    """Refuse a key file whose size the chip's eFuses cannot hold."""
    bits = len(key) * 8
    if bits not in chip.flash_encryption_key_bits:
        allowed = ", ".join(str(b) for b in chip.flash_encryption_key_bits)
        raise EspSecureError(f"{chip.title} takes {allowed}-bit flash encryption keys, not {bits}-bit", path)


def generate_key(bits: int = 256) -> bytes:
    """A new random flash encryption key of ``bits`` bits (128, 192, 256 or 512)."""
    if bits not in GENERATE_KEY_BITS:
        raise EspSecureError(f"key length {bits} bits is not one of {', '.join(map(str, GENERATE_KEY_BITS))}")
    return os.urandom(bits // 8)


def encrypt(
    data: bytes,
    key: bytes,
    address: int,
    scheme: str = SCHEME_XTS,
    flash_crypt_conf: int = 0xF,
    key_path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Ciphertext of ``data`` for flash ``address``, as ``espsecure encrypt-flash-data``.

    ``key`` is the key file's content (16/24/32/64 bytes as the scheme allows).
    For the ESP32 scheme a tail shorter than 16 bytes is padded with 0xFF.
    """
    return _operate(data, key, address, scheme, flash_crypt_conf, key_path, decrypt=False)


def decrypt(
    data: bytes,
    key: bytes,
    address: int,
    scheme: str = SCHEME_XTS,
    flash_crypt_conf: int = 0xF,
    key_path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Plaintext of ``data`` read from flash ``address``, as ``espsecure decrypt-flash-data``."""
    return _operate(data, key, address, scheme, flash_crypt_conf, key_path, decrypt=True)


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise EspSecureError(f"unknown flash encryption scheme {scheme!r} (use {' or '.join(SCHEMES)})")
    return scheme


def _operate(
    data: bytes,
    key: bytes,
    address: int,
    scheme: str,
    flash_crypt_conf: int,
    key_path: str | os.PathLike[str] | None,
    decrypt: bool,
) -> bytes:
    full_key = expand_key(bytes(key), _check_scheme(scheme), key_path)
    if address < 0 or address % 16:
        raise EspSecureError(f"flash address {address:#x} is not a multiple of 16")
    data = bytes(data)
    if scheme == SCHEME_XTS:
        if full_key[: len(full_key) // 2] == full_key[len(full_key) // 2 :]:
            raise EspSecureError("the two halves of the XTS-AES key are identical (a weak key OpenSSL refuses)", key_path)
        if not data:
            raise EspSecureError("input data is empty")
        if len(data) % 16:
            raise EspSecureError(f"input length {len(data)} is not a multiple of 16 (XTS-AES works on 16-byte blocks)")
        if address + len(data) > 1 << 32:
            raise EspSecureError(f"data at {address:#x} runs past the 4 GiB flash address space")
        return _xts(data, full_key, address, decrypt)
    if not 0 <= flash_crypt_conf <= 0xF:
        raise EspSecureError(f"FLASH_CRYPT_CONF {flash_crypt_conf:#x} is not a 4-bit value (0 to 0xF)")
    if len(data) % 16:
        if decrypt:
            raise EspSecureError(f"input length {len(data)} is not a multiple of 16")
        # espsecure pads with random bytes; 0xFF (erased flash) keeps output reproducible.
        data += b"\xff" * (16 - len(data) % 16)
    if address + len(data) > ESP32_ADDRESS_LIMIT:
        raise EspSecureError(
            f"data at {address:#x}..{address + len(data):#x} goes beyond 16 MiB, "
            "the end of the ESP32's encrypted flash address space"
        )
    return _esp32(data, full_key, address, flash_crypt_conf, decrypt)


# --- ESP32: AES-256 with a per-32-byte-unit key tweak -------------------------------


def _tweak_pattern() -> list[int]:
    """Address bit that flips each key bit, key bit 0 being the MSB of key byte 0.

    Four groups (one per FLASH_CRYPT_CONF bit), each three runs of address bits
    23..5 and a shorter run ending at 5.
    """
    pattern: list[int] = []
    for last in (14, 12, 10, 8):
        pattern += list(range(23, 4, -1)) * 3 + list(range(last, 4, -1))
    return pattern


_PATTERN = _tweak_pattern()
# Key bit ranges (MSB-first indices) each FLASH_CRYPT_CONF bit enables.
_CONF_RANGES = ((0, 67), (67, 132), (132, 195), (195, 256))
_TWEAK_TABLES: dict[int, tuple[list[int], list[int]]] = {}


def _tweak_tables(conf: int) -> tuple[list[int], list[int]]:
    """Lookup tables giving the key XOR mask for unit index bits 0..9 and 10..18.

    The mask is linear in the unit index (each address bit flips its own set of
    key bits), so two small tables XORed together cover all 2**19 units.
    """
    if conf in _TWEAK_TABLES:
        return _TWEAK_TABLES[conf]
    per_bit = [0] * 19  # key mask flipped by unit-index bit n (= address bit n + 5)
    for group, (lo, hi) in enumerate(_CONF_RANGES):
        if conf >> group & 1:
            for i in range(lo, hi):
                per_bit[_PATTERN[i] - 5] |= 1 << (255 - i)

    def table(bits: Sequence[int]) -> list[int]:
        out = [0] * (1 << len(bits))
        for v in range(1, len(out)):
            low = v & -v
            out[v] = out[v ^ low] ^ bits[low.bit_length() - 1]
        return out

    tables = (table(per_bit[:10]), table(per_bit[10:]))
    _TWEAK_TABLES[conf] = tables
    return tables


def _esp32(data: bytes, key: bytes, address: int, conf: int, decrypt: bool) -> bytes:
    """The ESP32 scheme; ``data`` is a multiple of 16 bytes and below 16 MiB."""
    if not data:
        return b""
    n = len(data)
    if conf and n >= ESP32_BITSLICE_MIN:
        return _esp32_bitsliced(data, key, address, conf, decrypt)

    # Writing flash is AES decryption and reading it is encryption, each on
    # byte-reversed blocks. Reversing the whole buffer reverses every block's
    # bytes (and the block order, which we undo by walking units backwards).
    backwards = data[::-1]
    if conf == 0:  # no tweak: one key for everything
        return _ecb(key, decrypt=not decrypt).update(backwards)[::-1]

    low, high = _tweak_tables(conf)
    base = int.from_bytes(key, "big")
    aes = algorithms.AES
    pieces: list[bytes] = []
    # Units in decreasing address order = increasing position in `backwards`.
    end = address + n
    while end > address:
        start = max(address, (end - 1) & ~31)
        unit = start >> 5
        unit_key = (base ^ low[unit & 0x3FF] ^ high[unit >> 10]).to_bytes(32, "big")
        ctx = Cipher(aes(unit_key), _ECB)
        op = ctx.encryptor() if decrypt else ctx.decryptor()
        pos = address + n - end
        pieces.append(op.update(backwards[pos : pos + end - start]))
        end = start
    return b"".join(pieces)[::-1]


# --- ESP32: the bitsliced engine (aes_bitsliced.py) on units with per-unit keys ----------

@functools.lru_cache(maxsize=16)
def _key_plane_sources(conf: int) -> list[tuple[int, int, int | None]]:
    """For each key plane (byte j, bit b -> 8j+b): (plane, key bit from the MSB, address bit or None)."""
    sources = []
    for i in range(256):
        enabled = any(lo <= i < hi and conf >> g & 1 for g, (lo, hi) in enumerate(_CONF_RANGES))
        sources.append((8 * (i // 8) + 7 - i % 8, i, _PATTERN[i] if enabled else None))
    return sorted(sources)


def _esp32_bitsliced(data: bytes, key: bytes, address: int, conf: int, decrypt: bool) -> bytes:
    """The ESP32 scheme on all blocks at once; ``data`` is whole blocks below 16 MiB.

    Both blocks of a 32-byte unit share its key, so lanes are units: one key
    schedule for the unit keys, then the cipher runs on the units' first
    blocks and on their second blocks with the same round keys. Units go
    through in chunks of ESP32_BITSLICE_CHUNK bytes: each is written with
    strided byte copies into one reused bytearray, then copied in one piece
    into the result.
    """
    _keep_heap()
    front = address & 16  # data starting at a unit's second block
    back = -(front + len(data)) % 32
    padded = b"".join((bytes(front), data, bytes(back))) if front or back else data
    units = len(padded) // 32
    step = max(8, ESP32_BITSLICE_CHUNK // 32)
    chunk = bytearray(32 * min(step, units))
    out, view = _output_buffer(len(data))
    with view:
        for u in range(0, units, step):
            count = min(step, units - u)
            _esp32_units(padded, 32 * u, count, chunk, (address >> 5) + u, key, conf, decrypt)
            # Bytes [start, end) of the padded data are bytes [start - front, end - front) of the result.
            start, end = max(32 * u, front), min(32 * (u + count), front + len(data))
            view[start - front : end - front] = memoryview(chunk)[start - 32 * u : end - 32 * u]
    return out.getvalue()


def _esp32_units(
    data: bytes, offset: int, count: int, out: bytearray, first_unit: int, key: bytes, conf: int, decrypt: bool
) -> None:
    """Bitsliced ESP32 scheme on ``count`` 32-byte units at ``data[offset:]`` (unit index ``first_unit`` on).

    Writes them to the start of ``out``.
    """
    n = -(-count // 8) * 8  # lanes, padded to whole bytes of planes
    ones = (1 << n) - 1
    # Each unit's key is the key file XOR its address tweak: as planes, a
    # constant (all ones or zero) XOR the plane of the address bit flipping
    # it; address bit 5 + i is bit i of the unit index.
    from . import aes_bitsliced as bs  # only the ESP32 scheme on 32 KiB and more needs it

    index_planes = [plane for shift in (0, 8, 16) for plane in bs.column_planes(bs.index_column(first_unit, shift, n), n)]
    unit_bits = {bit: index_planes[bit - 5] for bit in range(5, 24)}
    base = int.from_bytes(key, "big")
    key_planes = []
    for _, i, addr_bit in _key_plane_sources(conf):
        plane = ones if base >> (255 - i) & 1 else 0
        key_planes.append(plane if addr_bit is None else plane ^ unit_bits[addr_bit])
    # Writing flash (encrypt) is AES decryption, reading it is AES encryption.
    states = [bs.to_planes(data, offset, count, n, first) for first in (0, 16)]
    for first, state in zip((0, 16), bs.aes_planes(states, key_planes, ones, decrypt=not decrypt), strict=True):
        bs.from_planes(state, n, out, first, count)


# --- XTS-AES --------------------------------------------------------------------------

# XTS data goes through in pieces of this many bytes (whole units), which
# bounds the temporaries and keeps each ECB call below XTS's 16 MiB limit.
XTS_PIECE = 1024 * 1024
# Below this size numpy's import (~50-100 ms) costs more than it saves (~2.5 ms
# per MiB against big integers), so a fresh process uses big integers.
XTS_NUMPY_FROM = 32 * 1024 * 1024
_XTS_LANES: dict[int, tuple[int, int]] = {}


def _xts(data: bytes, key: bytes, address: int, decrypt: bool) -> bytes:
    """XTS-AES over 128-byte units with the Espressif byte order, vectorised.

    Per unit at flash address U the chip computes
    ``reverse(XTS(key, tweak=U as u32 LE, reverse(unit)))``. XTS without
    ciphertext stealing encrypts every 16-byte block independently given its
    tweak, so we pad to whole units and, piece by piece, reverse the buffer
    (which reverses every unit and the unit order), XOR the tweaks, run one
    ECB pass and XOR again: on numpy arrays when numpy is loaded already or
    the data is large, else on Python big integers (same bytes, both tested).
    """
    half = len(key) // 2
    data_key, tweak_key = key[:half], key[half:]

    pad_left = address % XTS_UNIT
    unit_address = address - pad_left
    pad_right = -(pad_left + len(data)) % XTS_UNIT
    padded = bytes(pad_left) + data + bytes(pad_right) if pad_left or pad_right else data
    tweak_op = _ecb(tweak_key, decrypt=False)
    data_op = _ecb(data_key, decrypt)
    _keep_heap()
    out, view = _output_buffer(len(padded))
    if _xts_with_numpy(len(padded)):
        import numpy as np

        result = np.frombuffer(view, dtype=np.uint8)
        for i in range(0, len(padded), XTS_PIECE):
            piece = np.frombuffer(padded, dtype=np.uint8, count=min(XTS_PIECE, len(padded) - i), offset=i)
            result[i : i + len(piece)] = _xts_piece(piece, unit_address + i, tweak_op, data_op)
        del result
    else:
        # The source seen as rows of one 16-byte block, the output as 8-byte words.
        src = memoryview(padded).cast("B", shape=[len(padded) // 16, 16])
        with view.cast("Q") as dst:
            for i in range(0, len(padded), XTS_PIECE):
                blocks, words = slice(i // 16, (i + XTS_PIECE) // 16), slice(i // 8, (i + XTS_PIECE) // 8)
                with dst[words] as piece:
                    _xts_ints_piece(src[blocks], piece, unit_address + i, tweak_op, data_op)
    if pad_left or pad_right:
        with view:
            return view[pad_left : pad_left + len(data)].tobytes()
    view.release()
    return out.getvalue()


def _xts_with_numpy(size: int) -> bool:
    return "numpy" in sys.modules or size >= XTS_NUMPY_FROM


def _xts_ints_piece(
    src: memoryview, dst: memoryview, first_unit: int, tweak_op: CipherContext, data_op: CipherContext
) -> None:
    """XTS on whole units at ``first_unit`` with big integers, 16-byte rows in, 8-byte words out."""
    units = len(src) // 8
    lanes = _XTS_LANES.get(units)
    if lanes is None:
        lane_ones = int.from_bytes((b"\x01" + bytes(15)) * units, "little")
        lanes = lane_ones, ((1 << 128 * units) - 1) ^ (lane_ones << 127)
        if len(_XTS_LANES) > 4:
            _XTS_LANES.clear()
        _XTS_LANES[units] = lanes
    lane_ones, top_clear = lanes
    # Tweak of every unit in reversed order (highest address first): u32 LE
    # address then 12 zero bytes.
    words = array("I", bytes(16 * units))
    words[0::4] = array("I", range(first_unit + XTS_UNIT * (units - 1), first_unit - 1, -XTS_UNIT))
    if sys.byteorder == "big":
        words.byteswap()
    t = int.from_bytes(tweak_op.update(words.tobytes()), "little")
    # T_j = T_0 * alpha^j in GF(2^128) for all units at once, one 128-bit lane
    # per unit. Block j of every reversed unit is gathered with a strided slice
    # and handled with T_j; reading big-endian reverses the buffer (block j of a
    # reversed unit is block 7 - j of the original), writing big-endian undoes it.
    for j in range(8):
        if j:
            t = ((t & top_clear) << 1) ^ (((t >> 127) & lane_ones) * 0x87)
        w = 2 * (7 - j)
        pre = (int.from_bytes(src[7 - j :: 8].tobytes(), "big") ^ t).to_bytes(16 * units, "little")
        res = memoryview((int.from_bytes(data_op.update(pre), "little") ^ t).to_bytes(16 * units, "big")).cast("Q")
        dst[w::16] = res[0::2]
        dst[w + 1 :: 16] = res[1::2]


def _xts_piece(piece: Any, address: int, tweak_op: CipherContext, data_op: CipherContext) -> Any:
    """XTS with numpy on the whole units of a uint8 array at flash ``address``; returns a uint8 array.

    ``tweak_op``/``data_op`` are ECB contexts of the tweak and data key halves.
    """
    import numpy as np  # already loaded by _xts

    units = len(piece) // XTS_UNIT
    # Reversed, block j of unit u (the unit at the u-th highest address) is row [u, j]:
    # two little-endian 64-bit words, as XTS's GF(2^128) arithmetic reads them.
    blocks = np.ascontiguousarray(piece[::-1]).view("<u8").reshape(units, 8, 2)
    tweak_in = np.zeros((units, 2), dtype="<u8")  # u32 LE address, then zeros
    tweak_in[:, 0] = np.arange(address + XTS_UNIT * (units - 1), address - 1, -XTS_UNIT, dtype="<u8")
    lo, hi = np.frombuffer(tweak_op.update(tweak_in.data.cast("B")), dtype="<u8").reshape(units, 2).T
    tweaks = np.empty_like(blocks)
    one, top, poly = np.uint64(1), np.uint64(63), np.uint64(0x87)
    for j in range(8):
        if j:  # T_j = T_{j-1} * alpha
            lo, hi = (lo << one) ^ ((hi >> top) * poly), (hi << one) | (lo >> top)
        tweaks[:, j, 0], tweaks[:, j, 1] = lo, hi
    crypted = data_op.update((blocks ^ tweaks).data.cast("B"))
    return (np.frombuffer(crypted, dtype="<u8").reshape(units, 8, 2) ^ tweaks).view(np.uint8).reshape(-1)[::-1]


def _keep_heap() -> None:
    """Stop glibc from handing freed heap memory back to the OS, once per process.

    The vectorised paths allocate and free megabytes of big integers; each
    time more than glibc's trim threshold is free at the top of the heap it
    goes back to the OS, and the next allocation pays a page fault per 4 KiB
    again (about 1.6 us each on the benchmark machine: 12% of the ESP32 time
    on 4 MiB). glibc raises that threshold to twice the size of any freed
    mmap-ed block (up to 32 MiB), so allocating and freeing one untouched
    16 MiB block is enough; with other allocators it costs microseconds and
    does nothing. The process may keep up to 32 MiB more resident.
    """
    global _heap_kept
    if not _heap_kept:
        bytes(16 << 20)  # calloc'ed, so mapped but never touched
        _heap_kept = True


_heap_kept = False


def _output_buffer(size: int) -> tuple[io.BytesIO, memoryview]:
    """A zeroed ``size``-byte buffer and a writable view of it.

    Once the view is released, ``getvalue()`` returns the buffer as bytes:
    CPython's BytesIO hands over its internal bytes object without a copy.
    A fresh 4 MiB allocation costs about 1.6 ms in first-touch page faults
    on the benchmark machine, so the result is the only one made.
    """
    out = io.BytesIO()
    out.seek(size - 1)
    out.write(b"\0")
    return out, out.getbuffer()
