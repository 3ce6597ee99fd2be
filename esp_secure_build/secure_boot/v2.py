"""Secure Boot V2: signature blocks, signing, verification and block information.

A signed image is ``content || signature sector``. The sector (4096 bytes) holds
up to three 1216-byte signature blocks back to back, then 0xFF. Each block:

* ``[0]`` magic 0xE7, ``[1]`` version (2 = RSA-PSS, 3 = ECDSA), ``[2]`` hash id
  for ECDSA (0 SHA-256, 1 SHA-384), ``[3]`` 0;
* the digest of the content (32 or 48 bytes), the public-key material, the
  signature (all bignums little-endian, as the ROM's hardware wants them);
* ``[1196:1200]`` CRC-32 of bytes 0..1195, ``[1200:1216]`` zeros.

RSA signatures are RSA-PSS and so differ on each run; ECDSA signatures made
with a local key are deterministic (RFC 6979), unlike espsecure's.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections import namedtuple
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..chips import Chip
from ..errors import EspSecureError
from .keys import PublicKey, check_scheme, curve_info, ec_point_le, key_material, le_bytes, scheme_of
from .signers import Signer, ecdsa_rs, verify_digest

SECTOR_SIZE = 4096
BLOCK_SIZE = 1216
MAX_BLOCKS = 3
MAGIC = 0xE7
VERSION_RSA = 0x02
VERSION_ECDSA = 0x03
CRC_OFFSET = 1196
_CURVE_SCHEMES = {1: "ecdsa192", 2: "ecdsa256", 3: "ecdsa384"}
_CURVE_CLASSES: dict[int, type[ec.EllipticCurve]] = {1: ec.SECP192R1, 2: ec.SECP256R1, 3: ec.SECP384R1}

Path = str | os.PathLike[str] | None


def content_digest(content: bytes, scheme: str) -> bytes:
    """SHA-384 for ECDSA P-384, SHA-256 for every other scheme."""
    return (hashlib.sha384 if scheme == "ecdsa384" else hashlib.sha256)(content).digest()


def build_block(digest: bytes, public_key: PublicKey, signature: bytes) -> bytes:
    """One 1216-byte signature block from a digest, a key and its signature (standard form)."""
    scheme = scheme_of(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        if len(signature) != 384:
            raise EspSecureError(f"RSA-3072 signature must be 384 bytes, not {len(signature)}")
        body = struct.pack("<BBxx", MAGIC, VERSION_RSA) + digest + key_material(public_key) + signature[::-1]
    else:
        curve_id, size = curve_info(public_key)
        r, s = ecdsa_rs(signature, public_key)
        field = 96 if scheme == "ecdsa384" else 64  # P-192 values sit in P-256-sized fields
        point = ec_point_le(public_key).ljust(field, b"\0")
        rs = (le_bytes(r, size) + le_bytes(s, size)).ljust(field, b"\0")
        hash_id = 1 if scheme == "ecdsa384" else 0
        body = struct.pack("<BBBx", MAGIC, VERSION_ECDSA, hash_id) + digest + bytes([curve_id]) + point + rs
    body = body.ljust(CRC_OFFSET, b"\0")
    assert len(body) == CRC_OFFSET
    return body + struct.pack("<I", zlib.crc32(body)) + b"\0" * 16


class SignatureBlock(namedtuple("_SignatureBlock", "index scheme digest public_key signature raw")):
    """A parsed, CRC-valid signature block.

    ``scheme``: rsa3072, ecdsa192, ecdsa256 or ecdsa384; ``digest``: the image digest
    stored in the block; ``public_key``: the key the block carries; ``signature``:
    standard form (RSA-PSS big-endian; ECDSA raw r || s, big-endian); ``raw``: the
    1216 bytes. (A namedtuple: dataclasses cost every CLI call ~6 ms to import.)
    """

    __slots__ = ()

    @property
    def key_digest(self) -> bytes:
        """SHA-256 of the block's key material: the eFuse value for this key."""
        return hashlib.sha256(key_material(self.public_key)).digest()

    def verifies_with(self, key: PublicKey) -> bool:
        """True when the block's signature over its digest verifies with ``key``."""
        try:
            if scheme_of(key) != self.scheme:
                return False
        except EspSecureError:
            return False
        return verify_digest(key, self.digest, self.signature)


def parse_block(raw: bytes, index: int = 0) -> SignatureBlock | None:
    """A :class:`SignatureBlock` when magic, version and CRC are right, else None."""
    if len(raw) != BLOCK_SIZE or raw[0] != MAGIC or raw[1] not in (VERSION_RSA, VERSION_ECDSA):
        return None
    if struct.unpack_from("<I", raw, CRC_OFFSET)[0] != zlib.crc32(raw[:CRC_OFFSET]):
        return None
    try:
        if raw[1] == VERSION_RSA:
            n = int.from_bytes(raw[36:420], "little")
            (e,) = struct.unpack_from("<I", raw, 420)
            key: PublicKey = rsa.RSAPublicNumbers(e, n).public_key()
            scheme_of(key)
            return SignatureBlock(index, "rsa3072", raw[4:36], key, raw[812:1196][::-1], raw)
        hash_id = raw[2]
        digest_len = 48 if hash_id == 1 else 32
        pos = 4 + digest_len
        curve_id = raw[pos]
        if curve_id not in _CURVE_CLASSES or (curve_id == 3) != (hash_id == 1):
            return None
        size = {1: 24, 2: 32, 3: 48}[curve_id]
        field = 96 if curve_id == 3 else 64
        point, rs = raw[pos + 1 : pos + 1 + field], raw[pos + 1 + field : pos + 1 + 2 * field]
        x, y = int.from_bytes(point[:size], "little"), int.from_bytes(point[size : 2 * size], "little")
        key = ec.EllipticCurvePublicNumbers(x, y, _CURVE_CLASSES[curve_id]()).public_key()
        r, s = int.from_bytes(rs[:size], "little"), int.from_bytes(rs[size : 2 * size], "little")
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return SignatureBlock(index, _CURVE_SCHEMES[curve_id], raw[4:pos], key, signature, raw)
    except (ValueError, EspSecureError):
        return None  # a CRC-valid block with an impossible key: treat as invalid


def split_signed(image: bytes, skip_padding: bool = False, path: Path = None) -> tuple[bytes, bytes]:
    """(content, signature sector) of a signed image; checks the size rules the ROM relies on."""
    if skip_padding:
        if len(image) < SECTOR_SIZE:
            raise EspSecureError(f"Invalid datafile: {len(image)} bytes, smaller than a 4096-byte signature sector", path)
    elif len(image) < SECTOR_SIZE or len(image) % SECTOR_SIZE:
        raise EspSecureError(
            f"Invalid datafile: size {len(image)} is not a non-zero multiple of 4096, so it has no "
            "Secure Boot V2 signature sector",
            path,
        )
    return image[:-SECTOR_SIZE], image[-SECTOR_SIZE:]


def read_blocks(sector: bytes) -> list[SignatureBlock | None]:
    """The three block slots of a signature sector, None where a slot is not a valid block."""
    return [parse_block(sector[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE], i) for i in range(MAX_BLOCKS)]


def leading_blocks(sector: bytes) -> list[SignatureBlock]:
    """Valid blocks from the start of the sector, up to the first invalid slot (as the ROM reads)."""
    result: list[SignatureBlock] = []
    for block in read_blocks(sector):
        if block is None:
            break
        result.append(block)
    return result


def _signer_name(signer: Signer, index: int) -> str:
    return str(getattr(signer, "name", f"signer {index + 1}"))


def sign(
    data: bytes,
    signers: Sequence[Signer],
    *,
    append: bool = False,
    skip_padding: bool = False,
    chip: Chip | None = None,
    path: Path = None,
) -> bytes:
    """Sign ``data`` with each signer: the signed image (content || signature sector).

    * ``data`` not 4096-aligned is padded with 0xFF (unless ``skip_padding``).
    * ``append``: an aligned image whose last sector holds valid blocks keeps them
      and gets the new blocks after them; with no valid block it is signed afresh.
    * An already-signed image is refused unless ``append`` (signing it again as plain
      data would hide the old sector inside the signed content).
    * At most 3 blocks (fewer when ``chip`` says so), one scheme for all blocks,
      each scheme accepted by ``chip``. Every new signature is verified first.
    """
    if not signers:
        raise EspSecureError("no signing key given", path)
    if not data:
        raise EspSecureError("data file is empty", path)
    existing: list[SignatureBlock] = []
    content = data
    precomputed = any(getattr(s, "precomputed", False) for s in signers)
    if len(data) % SECTOR_SIZE:
        if precomputed:
            raise EspSecureError(
                "pre-calculated signatures need a 4096-byte aligned image (sign the padded image)", path
            )
        if not skip_padding:
            content = data + b"\xff" * (SECTOR_SIZE - len(data) % SECTOR_SIZE)
    else:
        found = leading_blocks(data[-SECTOR_SIZE:])
        if found and not append:
            raise EspSecureError(
                f"image is already signed ({len(found)} signature block(s))",
                path,
                hint="use --append-signatures to add a signature, or sign the unsigned image",
            )
        if found:
            existing = found
            content = data[:-SECTOR_SIZE]
    limit = min(MAX_BLOCKS, chip.max_signatures) if chip is not None else MAX_BLOCKS
    if len(existing) + len(signers) > limit:
        where = f"{chip.title} honours" if chip is not None and chip.max_signatures < MAX_BLOCKS else "a sector holds"
        raise EspSecureError(
            f"{len(existing)} existing + {len(signers)} new signature blocks: {where} at most {limit}", path
        )

    for block in existing:
        check_scheme(block.scheme, 2, chip, path)
        if block.digest != content_digest(content, block.scheme):
            raise EspSecureError(
                f"existing signature block {block.index} does not match the image content (modified after signing?)",
                path,
            )
    schemes = {b.scheme for b in existing}
    blocks = [b.raw for b in existing]
    digests: dict[str, bytes] = {}
    for i, signer in enumerate(signers):
        name = _signer_name(signer, i)
        pub = signer.public_key()
        scheme = scheme_of(pub, name)
        check_scheme(scheme, 2, chip, name)
        schemes.add(scheme)
        if len(schemes) > 1:
            raise EspSecureError(
                f"signature blocks would mix schemes ({', '.join(sorted(schemes))}); "
                "the bootloader verifies one scheme",
                name,
            )
        if scheme not in digests:
            digests[scheme] = content_digest(content, scheme)
        digest = digests[scheme]
        signature = signer.sign_digest(digest)
        if not verify_digest(pub, digest, signature):
            raise EspSecureError("signature does not verify with the signer's public key", name)
        blocks.append(build_block(digest, pub, signature))
    sector = b"".join(blocks)
    return content + sector + b"\xff" * (SECTOR_SIZE - len(sector))


VerifyResult = namedtuple("VerifyResult", "blocks verified")
VerifyResult.__doc__ = """What :func:`verify` found: every valid block (``blocks``), and the indexes of
blocks whose signature verified with a supplied or expected key (``verified``)."""


def verify(
    image: bytes,
    public_key: PublicKey | None = None,
    *,
    expect_digests: Sequence[bytes] = (),
    skip_padding: bool = False,
    path: Path = None,
) -> VerifyResult:
    """Verify a V2-signed image; raises EspSecureError with the reason when it does not verify.

    With ``public_key`` (espsecure's check): at least one block must verify with it.
    With ``expect_digests`` (public-key digests, 32 bytes, or the 16-byte prefix the
    ESP32-C2 eFuse holds): every valid block must carry one of those keys and verify
    with the key it carries, so an image also signed by any other key fails.
    Every valid block's stored digest must match the content (else: tampered).
    """
    if public_key is None and not expect_digests:
        raise EspSecureError("nothing to verify against: give a public key or expected key digests")
    content, sector = split_signed(image, skip_padding, path)
    slots = read_blocks(sector)
    blocks = [b for b in slots if b is not None]
    if not blocks:
        raise EspSecureError("image has no valid Secure Boot V2 signature block (not signed?)", path)
    for block in blocks:
        if block.digest != content_digest(content, block.scheme):
            raise EspSecureError(
                f"image digest does not match signature block {block.index} (image modified after signing)", path
            )
    verified: list[int] = []
    if expect_digests:
        for want in expect_digests:
            if len(want) not in (16, 32):
                raise EspSecureError(f"expected key digest is {len(want)} bytes; must be 32 (or 16 for ESP32-C2)")
        for block in blocks:
            if not any(block.key_digest.startswith(want) for want in expect_digests):
                raise EspSecureError(
                    f"signature block {block.index} is signed by key {block.key_digest.hex()}, "
                    "which is not an expected key",
                    path,
                )
            if not block.verifies_with(block.public_key):
                raise EspSecureError(f"signature block {block.index} signature is not valid", path)
            verified.append(block.index)
    if public_key is not None:
        with_key = [b.index for b in blocks if b.verifies_with(public_key)]
        if not with_key:
            raise EspSecureError(
                f"none of the {len(blocks)} signature block(s) is signed by the supplied key", path
            )
        verified = sorted(set(verified) | set(with_key))
    return VerifyResult(blocks, verified)


def signature_info(image: bytes, path: Path = None) -> list[SignatureBlock]:
    """The leading valid blocks of a signed image, each checked against the content digest."""
    content, sector = split_signed(image, False, path)
    blocks = leading_blocks(sector)
    for block in blocks:
        if block.digest != content_digest(content, block.scheme):
            raise EspSecureError(f"Digest in signature block {block.index} doesn't match the image digest", path)
    return blocks
