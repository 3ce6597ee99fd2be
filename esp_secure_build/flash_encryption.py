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

Speed: XTS is fully vectorised (one ECB call for all unit tweaks, the
per-block tweaks derived with big-integer arithmetic, one ECB pass over the
data). The ESP32 scheme needs a key schedule per 32-byte unit: from 16 KiB on
it runs a bitsliced AES-256 over all blocks at once (see below, about 2.5x
faster than one cipher context per unit, which is what smaller inputs use).

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

import hashlib
import operator
import os
import sys
from array import array
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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
ESP32_BITSLICE_MIN = 16 * 1024
ESP32_BITSLICE_CHUNK = 1024 * 1024
_ECB = modes.ECB()


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
    # Writing flash is AES decryption and reading it is encryption, each on
    # byte-reversed blocks. Reversing the whole buffer reverses every block's
    # bytes (and the block order, which we undo by walking units backwards).
    backwards = data[::-1]
    n = len(data)
    if conf == 0:  # no tweak: one key for everything
        ctx = Cipher(algorithms.AES(key), _ECB)
        op = ctx.encryptor() if decrypt else ctx.decryptor()
        return (op.update(backwards) + op.finalize())[::-1]

    if n >= ESP32_BITSLICE_MIN:
        chunks = range(0, n, ESP32_BITSLICE_CHUNK)
        return b"".join(
            _esp32_bitsliced(data[c : c + ESP32_BITSLICE_CHUNK], key, address + c, conf, decrypt) for c in chunks
        )

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


# --- ESP32: bitsliced AES-256 with a key per block ------------------------------------
#
# A cipher context per 32-byte unit (a C key schedule, ~3 us from Python) is the
# floor of the straight approach, and espsecure is already there. Bitslicing
# runs AES on all blocks at once instead: plane i of the state is one Python
# int whose bit k is state bit i of block k, so one big-integer XOR/AND is one
# logic gate applied to every block, and the per-block keys (the key file XOR
# an address-dependent tweak) are planes too. The S-boxes are circuits over
# the tower field GF(((2^2)^2)^2), generated on first use and checked against
# the AES S-box table; bits move between bytes and planes with 8x8 bit-matrix
# transposes done on the whole buffer as one integer.


_W = list[int]  # wires (bits or bit-planes), least significant first
_Sbox = Callable[..., tuple[int, ...]]


class _Gates(Protocol):
    """XOR, AND and constants: on ints (:class:`_Numeric`) or recorded as a circuit (:class:`_Builder`)."""

    def x(self, a: int, b: int) -> int: ...
    def a(self, a: int, b: int) -> int: ...
    def c(self, bit: int) -> int: ...


class _Numeric:
    """Gate operations on plain ints (bits or bit-planes), to evaluate the tower field."""

    x = staticmethod(operator.xor)
    a = staticmethod(operator.and_)

    @staticmethod
    def c(bit: int) -> int:
        return bit


class _Builder:
    """Records gates as Python statements on ints, without repeating work.

    Every wire is known as an XOR of "atoms" (the constant 1, the inputs and
    every AND gate's output), kept as a bit mask: an XOR whose result already
    exists as a wire, however it was reached, costs no gate.
    """

    ZERO, ONE = -1, -2

    def __init__(self, inputs: int) -> None:
        self.lines: list[str] = []
        self.next = inputs
        self.sig: dict[int, int] = {self.ZERO: 0, self.ONE: 1}
        self.sig.update({i: 1 << (i + 1) for i in range(inputs)})
        self.by_sig: dict[int, int] = {v: k for k, v in self.sig.items()}
        self.ands: dict[tuple[int, int], int] = {}
        self.atoms = inputs + 1
        self.gates = 0

    def c(self, bit: int) -> int:
        return self.ONE if bit else self.ZERO

    def _ref(self, w: int) -> str:
        return "0" if w == self.ZERO else "ONES" if w == self.ONE else f"v{w}"

    def _new(self, expr: str, sig: int) -> int:
        w = self.next
        self.next += 1
        self.lines.append(f"v{w} = {expr}")
        self.sig[w] = sig
        self.by_sig.setdefault(sig, w)
        self.gates += 1
        return w

    def n(self, a: int) -> int:
        return self.x(a, self.ONE)

    def x(self, a: int, b: int) -> int:
        sig = self.sig[a] ^ self.sig[b]
        if sig in self.by_sig:
            return self.by_sig[sig]
        return self._new(f"{self._ref(a)} ^ {self._ref(b)}", sig)

    def a(self, a: int, b: int) -> int:
        if self.ZERO in (a, b):
            return self.ZERO
        if a == self.ONE or a == b:
            return b
        if b == self.ONE:
            return a
        key = (min(a, b), max(a, b))
        if key not in self.ands:
            self.ands[key] = self._new(f"v{key[0]} & v{key[1]}", 1 << self.atoms)
            self.atoms += 1
        return self.ands[key]

    def compile(self, outputs: Sequence[int], name: str) -> _Sbox:
        args = ", ".join(f"v{i}" for i in range(8))
        body = "\n    ".join(self.lines)
        src = f"def {name}({args}, ONES):\n    {body}\n    return ({', '.join(map(self._ref, outputs))},)\n"
        scope: dict = {}
        exec(compile(src, f"<{name}>", "exec"), scope)  # generated straight-line gate list
        return scope[name]


# Tower field: GF(4) = GF(2)[w]/(w^2+w+1), GF(16) = GF(4)[z]/(z^2+z+w),
# GF(256) = GF(16)[y]/(y^2+y+L). Elements are wire lists, low half first.


def _g4_add(a: _W, b: _W, o: _Gates) -> _W:
    return [o.x(a[0], b[0]), o.x(a[1], b[1])]


def _g4_mul(a: _W, b: _W, o: _Gates) -> _W:
    t = o.a(o.x(a[0], a[1]), o.x(b[0], b[1]))
    p0, p1 = o.a(a[0], b[0]), o.a(a[1], b[1])
    return [o.x(p1, p0), o.x(t, p0)]


def _g4_sq(a: _W, o: _Gates) -> _W:  # also the inverse in GF(4)
    return [o.x(a[0], a[1]), a[1]]


def _g4_mul_w(a: _W, o: _Gates) -> _W:
    return [a[1], o.x(a[0], a[1])]


def _g16_add(a: _W, b: _W, o: _Gates) -> _W:
    return [o.x(p, q) for p, q in zip(a, b, strict=True)]


def _g16_mul(a: _W, b: _W, o: _Gates) -> _W:
    a0, a1, b0, b1 = a[:2], a[2:], b[:2], b[2:]
    t = _g4_mul(_g4_add(a0, a1, o), _g4_add(b0, b1, o), o)
    p0, p1 = _g4_mul(a0, b0, o), _g4_mul(a1, b1, o)
    return _g4_add(_g4_mul_w(p1, o), p0, o) + _g4_add(t, p0, o)


def _g16_sq(a: _W, o: _Gates) -> _W:
    s0, s1 = _g4_sq(a[:2], o), _g4_sq(a[2:], o)
    return _g4_add(_g4_mul_w(s1, o), s0, o) + s1


def _g16_inv(a: _W, o: _Gates) -> _W:
    a0, a1 = a[:2], a[2:]
    d = _g4_add(_g4_add(_g4_mul_w(_g4_sq(a1, o), o), _g4_mul(a1, a0, o), o), _g4_sq(a0, o), o)
    d_inv = _g4_sq(d, o)
    return _g4_mul(_g4_add(a1, a0, o), d_inv, o) + _g4_mul(a1, d_inv, o)


def _g256_inv(a: _W, o: _Gates, lam: int) -> _W:
    a0, a1 = a[:4], a[4:]
    lam_w = [o.c(lam >> i & 1) for i in range(4)]
    d = _g16_add(_g16_add(_g16_mul(_g16_sq(a1, o), lam_w, o), _g16_mul(a1, a0, o), o), _g16_sq(a0, o), o)
    d_inv = _g16_inv(d, o)
    return _g16_mul(_g16_add(a1, a0, o), d_inv, o) + _g16_mul(a1, d_inv, o)


def _g256_mul_num(a: int, b: int, lam: int) -> int:
    """Product of two tower-field bytes (low nibble = constant term), for the set-up checks."""
    o = _Numeric()

    def bits(v: int) -> _W:
        return [v >> i & 1 for i in range(4)]

    a0, a1, b0, b1 = bits(a & 15), bits(a >> 4), bits(b & 15), bits(b >> 4)
    t = _g16_mul(_g16_add(a0, a1, o), _g16_add(b0, b1, o), o)
    p0, p1 = _g16_mul(a0, b0, o), _g16_mul(a1, b1, o)
    lo = _g16_add(_g16_mul(p1, bits(lam), o), p0, o)
    hi = _g16_add(t, p0, o)
    return sum(bit << i for i, bit in enumerate(lo + hi))


def _aes_inverses() -> list[int]:
    """Multiplicative inverses in the AES field (0 -> 0), from powers of the generator 3."""
    powers = [1]
    for _ in range(254):
        v = powers[-1]
        powers.append(v ^ ((v << 1) ^ (0x11B if v & 0x80 else 0)))  # v * 3
    inverse = [0] * 256
    for e, v in enumerate(powers):
        inverse[v] = powers[-e % 255]
    return inverse


def _linear_matrix(func: Callable[[int], int]) -> list[int]:
    """Rows of the 8x8 GF(2) matrix of a linear byte map: row j = inputs feeding output bit j."""
    cols = [func(1 << i) for i in range(8)]
    return [sum(1 << i for i in range(8) if cols[i] >> j & 1) for j in range(8)]


def _apply(rows: list[int], wires: _W, o: _Gates) -> _W:
    out = []
    for row in rows:
        acc = o.c(0)
        for i in range(8):
            if row >> i & 1:
                acc = o.x(acc, wires[i])
        out.append(acc)
    return out


_TOWER_L = 0x8
_TOWER_BETA = 0x41


def _build_sboxes() -> tuple[_Sbox, _Sbox]:
    """The AES S-box and its inverse as gate circuits on bit-planes, checked on all 256 inputs.

    Each is a linear map into the tower field, the tower-field inversion, and
    a linear map back (with the S-box's affine step folded into the maps).
    """
    # Searched once, then fixed here: t^2 + t = L has no root in GF(16) (so
    # y^2 + y + L is irreducible), and beta is a root of the AES polynomial
    # x^8 + x^4 + x^3 + x + 1, which fixes the isomorphism x -> beta. Both are re-checked.
    lam, beta = _TOWER_L, _TOWER_BETA
    if any(_g256_mul_num(t, t, lam) ^ t == lam for t in range(16)):
        raise RuntimeError("internal error: tower field constant is wrong")
    basis = [1]
    for _ in range(8):
        basis.append(_g256_mul_num(basis[-1], beta, lam))
    if basis[8] ^ basis[4] ^ basis[3] ^ basis[1] ^ basis[0]:
        raise RuntimeError("internal error: tower field constant is wrong")
    del basis[8]

    def to_tower(v: int) -> int:
        r = 0
        for i in range(8):
            if v >> i & 1:
                r ^= basis[i]
        return r

    from_tower_table = {to_tower(v): v for v in range(256)}

    def affine(v: int) -> int:  # without the 0x63 constant
        return (
            v
            ^ ((v << 1 | v >> 7) & 0xFF)
            ^ ((v << 2 | v >> 6) & 0xFF)
            ^ ((v << 3 | v >> 5) & 0xFF)
            ^ ((v << 4 | v >> 4) & 0xFF)
        )

    affine_inv_table = {affine(v): v for v in range(256)}
    m_rows = _linear_matrix(to_tower)
    out_rows = _linear_matrix(lambda v: affine(from_tower_table[v]))
    in_rows = _linear_matrix(lambda v: to_tower(affine_inv_table[v]))
    in_const = to_tower(affine_inv_table[0x63])
    back_rows = _linear_matrix(lambda v: from_tower_table[v])

    def circuit(top: list[int], const: int, bottom: list[int], out_const: int, name: str) -> tuple[_Sbox, int]:
        b = _Builder(8)
        wires = _apply(top, list(range(8)), b)
        wires = [b.n(w) if const >> i & 1 else w for i, w in enumerate(wires)]
        wires = _apply(bottom, _g256_inv(wires, b, lam), b)
        wires = [b.n(w) if out_const >> i & 1 else w for i, w in enumerate(wires)]
        return b.compile(wires, name), b.gates

    sbox, _ = circuit(m_rows, 0, out_rows, 0x63, "sbox")
    inv_sbox, _ = circuit(in_rows, in_const, back_rows, 0, "inv_sbox")

    # Check both against the AES S-box computed the textbook way, on all 256 inputs at once.
    ones = (1 << 256) - 1
    lanes = [sum(1 << k for k in range(256) if k >> i & 1) for i in range(8)]
    table = [affine(inv) ^ 0x63 for inv in _aes_inverses()]
    for func, expect in ((sbox, table), (inv_sbox, [table.index(v) for v in range(256)])):
        out = func(*lanes, ones)
        got = [sum((out[i] >> k & 1) << i for i in range(8)) for k in range(256)]
        if got != expect:
            raise RuntimeError("internal error: generated AES S-box circuit is wrong")
    return sbox, inv_sbox


# --- transposition between bytes and bit-planes ------------------------------------------------

_TRANSPOSE_MASKS: dict[int, tuple[int, int, int]] = {}


def _transpose8(x: int, nbytes: int) -> int:
    """Transpose the 8x8 bit matrix (bytes x bits) inside every 64-bit word of ``x``."""
    masks = _TRANSPOSE_MASKS.get(nbytes)
    if masks is None:
        words = nbytes // 8
        masks = tuple(int.from_bytes(m.to_bytes(8, "little") * words, "little")
                      for m in (0x00AA00AA00AA00AA, 0x0000CCCC0000CCCC, 0x00000000F0F0F0F0))  # fmt: skip
        _TRANSPOSE_MASKS.clear()
        _TRANSPOSE_MASKS[nbytes] = masks
    for shift, mask in zip((7, 14, 28), masks, strict=True):
        t = (x ^ (x >> shift)) & mask
        x ^= t ^ (t << shift)
    return x


def _to_planes(columns: Sequence[bytes], n: int) -> list[int]:
    """Bit-planes of byte columns (each ``n`` bytes, n a multiple of 8): plane 8c+b = bit b of column c."""
    joined = b"".join(columns)
    z = _transpose8(int.from_bytes(joined, "little"), len(joined)).to_bytes(len(joined), "little")
    return [int.from_bytes(z[c * n + b : (c + 1) * n : 8], "little") for c in range(len(columns)) for b in range(8)]


def _from_planes(planes: Sequence[int], n: int) -> list[bytes]:
    """Inverse of :func:`_to_planes`: the byte columns."""
    count = len(planes) // 8
    z = bytearray(count * n)
    for c in range(count):
        for b in range(8):
            z[c * n + b : (c + 1) * n : 8] = planes[8 * c + b].to_bytes(n // 8, "little")
    y = _transpose8(int.from_bytes(z, "little"), len(z)).to_bytes(len(z), "little")
    return [y[c * n : (c + 1) * n] for c in range(count)]


# --- bitsliced AES-256 -----------------------------------------------------------------------

_SBOXES: tuple[_Sbox, _Sbox] | None = None
_RCON = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40)
# State byte p is row p % 4, column p // 4. Source byte of each destination after (Inv)ShiftRows.
_SHIFT = [4 * ((p // 4 + p % 4) % 4) + p % 4 for p in range(16)]
_INV_SHIFT = [4 * ((p // 4 - p % 4) % 4) + p % 4 for p in range(16)]


def _sboxes() -> tuple[_Sbox, _Sbox]:
    global _SBOXES
    if _SBOXES is None:
        _SBOXES = _build_sboxes()
    return _SBOXES


def _xtime(v: list[int]) -> list[int]:
    return [v[7], v[0] ^ v[7], v[1], v[2] ^ v[7], v[3] ^ v[7], v[4], v[5], v[6]]


def _mix_columns(s: list[int], inverse: bool) -> list[int]:
    out: list[int] = []
    for c in range(4):
        a = [s[8 * (4 * c + r) : 8 * (4 * c + r) + 8] for r in range(4)]
        if inverse:  # InvMixColumns = MixColumns after this cheap step
            u = _xtime(_xtime([p ^ q for p, q in zip(a[0], a[2], strict=True)]))
            v = _xtime(_xtime([p ^ q for p, q in zip(a[1], a[3], strict=True)]))
            a = [[p ^ q for p, q in zip(a[0], u, strict=True)], [p ^ q for p, q in zip(a[1], v, strict=True)],
                 [p ^ q for p, q in zip(a[2], u, strict=True)], [p ^ q for p, q in zip(a[3], v, strict=True)]]  # fmt: skip
        t = [w ^ x ^ y ^ z for w, x, y, z in zip(*a, strict=True)]
        for r in range(4):
            m = _xtime([p ^ q for p, q in zip(a[r], a[(r + 1) % 4], strict=True)])
            out += [p ^ q ^ x for p, q, x in zip(a[r], t, m, strict=True)]
    return out


def _key_schedule(key: list[int], ones: int) -> list[list[int]]:
    """The 15 round keys (128 planes each) of AES-256 keys given as 256 planes (byte j, bit b -> 8j+b)."""
    sbox = _sboxes()[0]
    words = [key[32 * i : 32 * i + 32] for i in range(8)]
    for i in range(8, 60):
        temp = words[i - 1]
        if i % 4 == 0:
            if i % 8 == 0:
                temp = temp[8:] + temp[:8]
            temp = [bit for k in range(4) for bit in sbox(*temp[8 * k : 8 * k + 8], ones)]
            if i % 8 == 0:
                rcon = _RCON[i // 8 - 1]
                temp = [p ^ ones if rcon >> b & 1 else p for b, p in enumerate(temp[:8])] + temp[8:]
        words.append([p ^ q for p, q in zip(words[i - 8], temp, strict=True)])
    return [words[4 * r] + words[4 * r + 1] + words[4 * r + 2] + words[4 * r + 3] for r in range(15)]


def _aes_planes(state: list[int], round_keys: list[list[int]], ones: int, decrypt: bool) -> list[int]:
    """AES-256 encryption (or the inverse cipher) on bit-planes, every block with its own key."""
    sbox, inv_sbox = _sboxes()
    if decrypt:
        s = [p ^ k for p, k in zip(state, round_keys[14], strict=True)]
        for r in range(13, -1, -1):
            s = [bit for p in _INV_SHIFT for bit in inv_sbox(*s[8 * p : 8 * p + 8], ones)]
            s = [p ^ k for p, k in zip(s, round_keys[r], strict=True)]
            if r:
                s = _mix_columns(s, inverse=True)
        return s
    s = [p ^ k for p, k in zip(state, round_keys[0], strict=True)]
    for r in range(1, 15):
        s = [bit for p in _SHIFT for bit in sbox(*s[8 * p : 8 * p + 8], ones)]
        if r != 14:
            s = _mix_columns(s, inverse=False)
        s = [p ^ k for p, k in zip(s, round_keys[r], strict=True)]
    return s


def _key_plane_sources(conf: int) -> list[tuple[int, int, int | None]]:
    """For each key plane (byte j, bit b -> 8j+b): (plane, key bit from the MSB, address bit or None)."""
    sources = []
    for i in range(256):
        enabled = any(lo <= i < hi and conf >> g & 1 for g, (lo, hi) in enumerate(_CONF_RANGES))
        sources.append((8 * (i // 8) + 7 - i % 8, i, _PATTERN[i] if enabled else None))
    return sorted(sources)


def _esp32_bitsliced(data: bytes, key: bytes, address: int, conf: int, decrypt: bool) -> bytes:
    """The ESP32 scheme on all blocks at once; ``data`` is whole blocks below 16 MiB."""
    nb = len(data) // 16
    n = -(-nb // 8) * 8  # lanes, padded to whole bytes of planes
    ones = (1 << n) - 1
    # Blocks run backwards (the buffer is reversed, which reverses every block's bytes).
    backwards = data[::-1] + bytes(16 * (n - nb))
    addresses = array("I", range(address + 16 * (nb - 1), address - 1, -16))
    if sys.byteorder == "big":
        addresses.byteswap()
    addr_bytes = addresses.tobytes() + bytes(4 * (n - nb))
    addr_planes = _to_planes([addr_bytes[j::4] for j in range(3)], n)  # address bit i -> plane i

    # Each block's key is the key file XOR its address tweak: as planes, a
    # constant (all ones or zero) XOR the plane of the address bit flipping it.
    base = int.from_bytes(key, "big")
    key_planes = []
    for _, i, addr_bit in _key_plane_sources(conf):
        plane = ones if base >> (255 - i) & 1 else 0
        key_planes.append(plane if addr_bit is None else plane ^ addr_planes[addr_bit])
    round_keys = _key_schedule(key_planes, ones)
    state = _to_planes([backwards[p::16] for p in range(16)], n)
    # Writing flash (encrypt) is AES decryption, reading it is AES encryption.
    out_planes = _aes_planes(state, round_keys, ones, decrypt=not decrypt)
    out = bytearray(16 * n)
    for p, column in enumerate(_from_planes(out_planes, n)):
        out[p::16] = column
    return bytes(out[: 16 * nb])[::-1]


# --- XTS-AES --------------------------------------------------------------------------


def _xts(data: bytes, key: bytes, address: int, decrypt: bool) -> bytes:
    """XTS-AES over 128-byte units with the Espressif byte order, vectorised.

    Per unit at flash address U the chip computes
    ``reverse(XTS(key, tweak=U as u32 LE, reverse(unit)))``. XTS without
    ciphertext stealing encrypts every 16-byte block independently given its
    tweak, so we pad to whole units, reverse the entire buffer (which reverses
    every unit and the unit order), XOR the tweaks, run one ECB pass and XOR
    again.
    """
    half = len(key) // 2
    data_key, tweak_key = key[:half], key[half:]
    if data_key == tweak_key:
        raise EspSecureError("the two halves of the XTS-AES key are identical (a weak key OpenSSL refuses)")

    pad_left = address % XTS_UNIT
    first_unit = address - pad_left
    total = pad_left + len(data)
    pad_right = -total % XTS_UNIT
    units = (total + pad_right) // XTS_UNIT
    padded = bytes(pad_left) + data + bytes(pad_right) if pad_left or pad_right else data

    # Tweak of every unit in `backwards` order (highest address first):
    # u32 LE address then 12 zero bytes, built as an array of 32-bit words.
    words = array("I", bytes(16 * units))
    words[0::4] = array("I", range(first_unit + XTS_UNIT * (units - 1), first_unit - 1, -XTS_UNIT))
    if sys.byteorder == "big":
        words.byteswap()
    enc = Cipher(algorithms.AES(tweak_key), _ECB).encryptor()
    t0 = int.from_bytes(enc.update(words.tobytes()) + enc.finalize(), "little")

    # Per-block tweaks T_j = T_0 * alpha^j (GF(2^128), little-endian), all
    # units at once: each 128-bit lane of the big integer is one unit.
    lane_ones = int.from_bytes((b"\x01" + bytes(15)) * units, "little")
    top_clear = ((1 << 128 * units) - 1) ^ (lane_ones << 127)
    t = t0
    # Interleave into the mask stream: unit u, block j -> T_j of unit u, moving
    # 8-byte halves with strided array copies (native order, undone below).
    stream = array("Q", bytes(len(padded)))
    for j in range(8):
        if j:
            t = ((t & top_clear) << 1) ^ (((t >> 127) & lane_ones) * 0x87)
        lanes = array("Q", t.to_bytes(16 * units, "little"))
        stream[2 * j :: 16] = lanes[0::2]
        stream[2 * j + 1 :: 16] = lanes[1::2]
    mask = int.from_bytes(stream.tobytes(), "little")

    # Reading the buffer big-endian reverses it for free; writing big-endian reverses it back.
    nbytes = len(padded)
    pre = (int.from_bytes(padded, "big") ^ mask).to_bytes(nbytes, "little")
    ctx = Cipher(algorithms.AES(data_key), _ECB)
    op = ctx.decryptor() if decrypt else ctx.encryptor()
    mid = op.update(pre) + op.finalize()
    out = (int.from_bytes(mid, "little") ^ mask).to_bytes(nbytes, "big")
    if not (pad_left or pad_right):
        return out
    return out[pad_left : pad_left + len(data)]
