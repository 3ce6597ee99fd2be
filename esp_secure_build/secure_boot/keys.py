"""Secure Boot signing keys: loading, generation, scheme detection and key digests.

Schemes are named as espsecure names them: ``rsa3072``, ``ecdsa192``,
``ecdsa256``, ``ecdsa384``. Secure Boot V1 uses ``ecdsa256`` only.

A passphrase for an encrypted private key comes from the environment variable
:data:`PASSPHRASE_ENV` or from a prompt on the terminal, never from the command
line (it would show up in ``ps`` and shell history).
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..chips import Chip
from ..errors import EspSecureError
from ..fileio import PathLike, read_key_bytes, write_new

PASSPHRASE_ENV = "ESP_SECURE_KEY_PASSPHRASE"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

SCHEMES: tuple[str, ...] = ("rsa3072", "ecdsa192", "ecdsa256", "ecdsa384")
# Curve name -> (scheme, curve id in a V2 signature block, coordinate bytes).
_CURVES: dict[str, tuple[str, int, int]] = {
    "secp192r1": ("ecdsa192", 1, 24),
    "secp256r1": ("ecdsa256", 2, 32),
    "secp384r1": ("ecdsa384", 3, 48),
}
_SCHEME_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ecdsa192": ec.SECP192R1,
    "ecdsa256": ec.SECP256R1,
    "ecdsa384": ec.SECP384R1,
}
RSA_BITS = 3072


def _describe(key: object) -> str:
    """A short human name for any key object (for error messages)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__.removesuffix("PrivateKey").removesuffix("PublicKey") or "unknown"


def scheme_of(key: PrivateKey | PublicKey, path: PathLike | None = None) -> str:
    """The Secure Boot scheme of a key; refuses key types no ESP ROM accepts."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size != RSA_BITS:
            raise EspSecureError(
                f"RSA key has {key.key_size} bits; Secure Boot V2 accepts only RSA-3072", path
            )
        return "rsa3072"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise EspSecureError(
                f"ECDSA curve {key.curve.name} is not supported; Secure Boot accepts P-192, P-256 and P-384", path
            )
        return _CURVES[key.curve.name][0]
    raise EspSecureError(
        f"{_describe(key)} keys are not supported; Secure Boot accepts RSA-3072 and ECDSA P-192/P-256/P-384", path
    )


def curve_info(key: PrivateKey | PublicKey) -> tuple[int, int]:
    """(curve id as in a V2 block, coordinate size in bytes) of an ECDSA key."""
    assert isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
    _, curve_id, size = _CURVES[key.curve.name]
    return curve_id, size


def check_scheme(scheme: str, version: int, chip: Chip | None, path: PathLike | None = None) -> None:
    """Refuse a scheme the Secure Boot version, or the given chip's ROM, does not accept."""
    if version == 1:
        if chip is not None and not chip.secure_boot_v1:
            raise EspSecureError(f"{chip.title} has no Secure Boot V1 (it is ESP32 only); use --version 2", path)
        if scheme != "ecdsa256":
            raise EspSecureError(f"Secure Boot V1 signs with ECDSA P-256 only, not {scheme}", path)
        return
    if chip is not None and scheme not in chip.secure_boot_v2:
        raise EspSecureError(
            f"{chip.title} Secure Boot V2 does not accept {scheme} (it accepts {', '.join(chip.secure_boot_v2)})",
            path,
        )


# --- loading ---------------------------------------------------------------------------------------


def _passphrase(path: PathLike) -> bytes:
    """The passphrase of an encrypted key: environment first, then a terminal prompt."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env.encode("utf-8")
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            import getpass

            return getpass.getpass(f"Passphrase for {os.fspath(path)}: ").encode("utf-8")
        except (EOFError, KeyboardInterrupt):
            pass
    raise EspSecureError(
        "private key is encrypted and no passphrase was given", path, hint=f"set {PASSPHRASE_ENV} or run on a terminal"
    )


def _looks_encrypted(data: bytes) -> bool:
    return b"ENCRYPTED" in data[:200] or b"Proc-Type: 4,ENCRYPTED" in data


def load_private_key_bytes(data: bytes, path: PathLike | None = None, password: bytes | None = None) -> PrivateKey:
    """Parse a PEM or DER private key (PKCS#1, SEC1 or PKCS#8, encrypted or not).

    ``password`` overrides the environment/prompt lookup (for the API, not the CLI).
    """
    label = path if path is not None else "<key>"
    loader = serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
    if password is None and _looks_encrypted(data):
        password = _passphrase(label)
    # RSA key validation costs ~85 ms per load, most of a CLI call. It is not needed
    # for safety here: every signature is verified with the public key before it is
    # used (signers and v1/v2.sign), so an inconsistent key can never produce output.
    fast = {"unsafe_skip_rsa_key_validation": True}
    try:
        key = loader(data, password=password, **fast)
    except TypeError:
        # Encrypted DER (PKCS#8) is not marked in the text: ask now.
        if password is not None:
            raise EspSecureError("private key is not encrypted but a passphrase was given", path) from None
        try:
            key = loader(data, password=_passphrase(label), **fast)
        except ValueError:
            raise EspSecureError("cannot decrypt private key (wrong passphrase?)", path) from None
    except ValueError:
        if password is not None:
            raise EspSecureError("cannot decrypt private key (wrong passphrase?)", path) from None
        if b"PUBLIC KEY-----" in data:
            raise EspSecureError("this is a public key; signing needs the private key", path) from None
        raise EspSecureError("not a PEM or DER private key", path) from None
    except Exception as exc:  # cryptography raises a few other types on unsupported data
        raise EspSecureError(f"cannot load private key: {exc.__class__.__name__}", path) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise EspSecureError(
            f"{_describe(key)} keys are not supported; Secure Boot accepts RSA-3072 and ECDSA P-192/P-256/P-384",
            path,
        )
    return key


def load_private_key(path: PathLike, password: bytes | None = None) -> PrivateKey:
    """Read and parse a private key file; the key type is checked by :func:`scheme_of`."""
    key = load_private_key_bytes(read_key_bytes(path), path, password)
    scheme_of(key, path)
    return key


def _is_private(data: bytes) -> bool:
    return b"PRIVATE KEY-----" in data


def load_public_key_bytes(data: bytes, path: PathLike | None = None, allow_raw_v1: bool = False) -> PublicKey:
    """A public key from a public PEM/DER, a private PEM/DER, or (V1) a raw 64-byte X||Y."""
    if b"-----BEGIN" in data:
        if _is_private(data):
            return load_private_key_bytes(data, path).public_key()
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise EspSecureError("not a valid PEM public key", path) from None
        except Exception as exc:
            raise EspSecureError(f"cannot load public key: {exc.__class__.__name__}", path) from None
    elif allow_raw_v1 and len(data) == 64:
        x, y = int.from_bytes(data[:32], "big"), int.from_bytes(data[32:], "big")
        try:
            return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        except ValueError:
            raise EspSecureError("raw 64-byte public key is not a point on P-256", path) from None
    else:
        try:
            key = serialization.load_der_public_key(data)
        except Exception:
            try:
                return load_private_key_bytes(data, path).public_key()
            except EspSecureError:
                what = "a PEM/DER key or a raw 64-byte P-256 public key" if allow_raw_v1 else "a PEM or DER key"
                raise EspSecureError(f"not {what}", path) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise EspSecureError(
            f"{_describe(key)} keys are not supported; Secure Boot accepts RSA-3072 and ECDSA P-192/P-256/P-384",
            path,
        )
    return key


def load_public_key(path: PathLike, allow_raw_v1: bool = False) -> PublicKey:
    """Read a public key (or the public half of a private key) from a file; type-checked."""
    key = load_public_key_bytes(read_key_bytes(path), path, allow_raw_v1)
    scheme_of(key, path)
    return key


# --- generation and export ---------------------------------------------------------------------------


def generate_private_key(scheme: str) -> PrivateKey:
    """A new key for a scheme (RSA exponent 65537), from the OS random source."""
    if scheme == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if scheme in _SCHEME_CURVES:
        return ec.generate_private_key(_SCHEME_CURVES[scheme]())
    raise EspSecureError(f"unknown signing scheme {scheme!r}; known: {', '.join(SCHEMES)}")


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted traditional OpenSSL PEM, as espsecure writes (BEGIN RSA/EC PRIVATE KEY)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def generate_signing_key(path: PathLike, version: int = 1, scheme: str | None = None) -> PrivateKey:
    """Write a new signing key to ``path`` (mode 0600); refuses to overwrite a file."""
    if version == 1:
        if scheme not in (None, "ecdsa256"):
            raise EspSecureError(f"Secure Boot V1 supports only ecdsa256, not {scheme}", path)
        scheme = "ecdsa256"
    elif version == 2:
        scheme = scheme or "rsa3072"
    else:
        raise EspSecureError(f"unknown Secure Boot version {version}")
    if os.path.lexists(path):
        raise EspSecureError("key file already exists; not overwriting it", path)
    key = generate_private_key(scheme)
    write_new(path, private_key_pem(key), mode=0o600)  # exclusive: a key made meanwhile stays
    return key


def public_key_pem(key: PrivateKey | PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of the public key (espsecure extract-public-key --version 2)."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_raw_v1(key: PrivateKey | PublicKey) -> bytes:
    """Raw 64-byte X||Y big-endian P-256 public key (extract-public-key --version 1)."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve, ec.SECP256R1):
        raise EspSecureError(f"Secure Boot V1 needs an ECDSA P-256 key, not {_describe(pub)}")
    nums = pub.public_numbers()
    return nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")


# --- the public-key material of a V2 block and its digest ----------------------------------------------


def le_bytes(value: int, size: int) -> bytes:
    """A non-negative integer as fixed-width little-endian bytes (the ROM's bignum order)."""
    return value.to_bytes(size, "little")


def rsa_key_material(pub: rsa.RSAPublicKey) -> bytes:
    """n, e, R^2 mod n and -n^-1 mod 2^32 as the ROM's RSA peripheral wants them (776 bytes).

    The ROM does Montgomery multiplication, so the block carries the precomputed
    R^2 mod n (R = 2^3072) and m' instead of making the ROM compute them.
    """
    nums = pub.public_numbers()
    n, e = nums.n, nums.e
    rinv = pow(2, 2 * RSA_BITS, n)
    m_prime = (-pow(n, -1, 1 << 32)) & 0xFFFFFFFF
    return le_bytes(n, 384) + struct.pack("<I", e) + le_bytes(rinv, 384) + struct.pack("<I", m_prime)


def ec_point_le(pub: ec.EllipticCurvePublicKey) -> bytes:
    """X||Y little-endian, each the curve's coordinate width (micro-ecc native order)."""
    _, size = curve_info(pub)
    nums = pub.public_numbers()
    return le_bytes(nums.x, size) + le_bytes(nums.y, size)


def key_material(key: PrivateKey | PublicKey) -> bytes:
    """The public-key bytes exactly as a V2 signature block holds them (what eFuse digests).

    RSA: 776 bytes; P-192/P-256: curve id + 64-byte point field (P-192 zero
    padded); P-384: curve id + 96-byte point.
    """
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    scheme_of(pub)
    if isinstance(pub, rsa.RSAPublicKey):
        return rsa_key_material(pub)
    curve_id, size = curve_info(pub)
    field = 96 if size == 48 else 64
    return bytes([curve_id]) + ec_point_le(pub).ljust(field, b"\0")


def public_key_digest(key: PrivateKey | PublicKey) -> bytes:
    """SHA-256 of :func:`key_material`: the value burned into eFuse for Secure Boot V2.

    Also a stable identity of a key (private or public half give the same value),
    e.g. to recognise a published key whatever file format it comes in.
    """
    return hashlib.sha256(key_material(key)).digest()


def digest_private_key(key: PrivateKey, keylen: int = 256) -> bytes:
    """Secure Boot V1: SHA-256 of the P-256 private scalar (32 bytes BE), 24 bytes for --keylen 192."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EspSecureError(f"digest-private-key needs an ECDSA P-256 key, not {_describe(key)}")
    if keylen not in (192, 256):
        raise EspSecureError(f"--keylen must be 192 or 256, not {keylen}")
    digest = hashlib.sha256(key.private_numbers().private_value.to_bytes(32, "big")).digest()
    return digest[:24] if keylen == 192 else digest
