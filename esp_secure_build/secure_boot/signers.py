"""Where a signature comes from: one small interface, four implementations.

A :class:`Signer` knows its public key and turns a digest into a signature. The
digest is SHA-256 of the signed data, or SHA-384 for ECDSA P-384 keys (see
:func:`hash_name`). A signature is returned in its standard form:

* RSA-3072: the 384-byte RSA-PSS signature, big-endian (MGF1-SHA-256, salt 32);
* ECDSA: DER (``SEQUENCE { r, s }``) or raw ``r || s`` big-endian, each
  coordinate-sized; both are accepted everywhere (:func:`ecdsa_rs`).

Implementations: :class:`LocalKeySigner` (a key file), :class:`PrecomputedSigner`
(a signature made elsewhere, espsecure's ``--pub-key``/``--signature`` flow),
:class:`CommandSigner` (an external command, e.g. a CI signing service) and
:class:`Pkcs11Signer` (a PKCS#11 token; needs the optional ``python-pkcs11``).

RSA-PSS is randomised by design, so RSA signatures differ on every run. ECDSA
signatures made by :class:`LocalKeySigner` are deterministic (RFC 6979): the same
key and data always give the same bytes.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from ..errors import EspSecureError
from ..fileio import MAX_KEY_SIZE, PathLike, read_key_bytes, read_text
from .keys import PrivateKey, PublicKey, curve_info, load_private_key, load_public_key, scheme_of

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
HSM_PIN_ENV = "ESP_SECURE_HSM_PIN"


@runtime_checkable
class Signer(Protocol):
    """Anything that can sign a Secure Boot digest."""

    def public_key(self) -> PublicKey:
        """The public key a signature made by :meth:`sign_digest` verifies with."""
        ...

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a SHA-256 (SHA-384 for P-384) digest; RSA-PSS bytes or an ECDSA DER/raw signature."""
        ...


def hash_name(key: PrivateKey | PublicKey) -> str:
    """``sha384`` for P-384 keys, ``sha256`` for every other scheme."""
    return "sha384" if scheme_of(key) == "ecdsa384" else "sha256"


def _hash_algorithm(key: PrivateKey | PublicKey) -> hashes.HashAlgorithm:
    return hashes.SHA384() if hash_name(key) == "sha384" else hashes.SHA256()


def ecdsa_rs(signature: bytes, key: PublicKey, source: str = "signature") -> tuple[int, int]:
    """(r, s) of an ECDSA signature given as DER or as raw big-endian ``r || s``."""
    _, size = curve_info(key)
    try:
        r, s = utils.decode_dss_signature(signature)
        if utils.encode_dss_signature(r, s) == signature:
            return r, s
    except ValueError:
        pass
    if len(signature) == 2 * size:
        return int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    raise EspSecureError(f"{source} is neither a DER ECDSA signature nor {2 * size} raw bytes (r || s)")


def verify_digest(key: PublicKey, digest: bytes, signature: bytes) -> bool:
    """True when ``signature`` (standard form) signs ``digest`` under ``key``."""
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, PSS, utils.Prehashed(hashes.SHA256()))
        else:
            r, s = ecdsa_rs(signature, key)
            key.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(_hash_algorithm(key))))
    except (InvalidSignature, ValueError, EspSecureError):
        return False
    return True


class LocalKeySigner:
    """Signs with a private key held in this process (a PEM/DER file)."""

    def __init__(self, key: PrivateKey, name: str = "<key>"):
        scheme_of(key, name)
        self._key = key
        self.name = name

    @classmethod
    def from_file(cls, path: PathLike, password: bytes | None = None) -> LocalKeySigner:
        """Load a key file (passphrase from ESP_SECURE_KEY_PASSPHRASE or a prompt)."""
        return cls(load_private_key(path, password), os.fspath(path))

    @property
    def private_key(self) -> PrivateKey:
        return self._key

    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign_digest(self, digest: bytes) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(digest, PSS, utils.Prehashed(hashes.SHA256()))
        # RFC 6979: reproducible builds, and no dependence on a good nonce source.
        algo = ec.ECDSA(utils.Prehashed(_hash_algorithm(self._key)), deterministic_signing=True)
        return self._key.sign(digest, algo)

    def __repr__(self) -> str:  # never show key material
        return f"LocalKeySigner({self.name!r})"


class PrecomputedSigner:
    """A signature made elsewhere (e.g. by an offline HSM), paired with its public key.

    It can "sign" only the digest it was made for; :func:`sign_digest` checks that.
    """

    precomputed = True

    def __init__(self, public_key: PublicKey, signature: bytes, name: str = "<signature>"):
        scheme_of(public_key, name)
        self._pub = public_key
        self.signature = signature
        self.name = name

    @classmethod
    def from_files(cls, pub_key_path: PathLike, signature_path: PathLike, allow_raw_v1: bool = False) -> PrecomputedSigner:
        return cls(
            load_public_key(pub_key_path, allow_raw_v1),
            read_key_bytes(signature_path, "signature file"),
            os.fspath(signature_path),
        )

    def public_key(self) -> PublicKey:
        return self._pub

    def sign_digest(self, digest: bytes) -> bytes:
        if not verify_digest(self._pub, digest, self.signature):
            raise EspSecureError(
                "pre-calculated signature does not verify with the given public key over this data", self.name
            )
        return self.signature


class CommandSigner:
    """Runs an external command to sign each digest (a remote signing service, a CLI HSM).

    Protocol, once per signature:

    * the command is run without a shell; ``command`` is a list of arguments, or a
      string split with :func:`shlex.split`. In each argument, ``{digest}`` becomes the
      digest in lower-case hex, ``{hash}`` ``sha256`` or ``sha384``, ``{scheme}`` the
      scheme (``rsa3072``, ``ecdsa256``, ...);
    * the raw digest bytes are written to its standard input, and the same values are
      in the environment as ``ESP_SECURE_DIGEST`` (hex), ``ESP_SECURE_HASH`` and
      ``ESP_SECURE_SCHEME``;
    * it writes the signature to standard output, as binary or as hex text: RSA-PSS
      (MGF1-SHA-256, salt length 32) over the given digest, 384 bytes big-endian; or
      an ECDSA signature over the given digest, DER or raw ``r || s``;
    * exit status 0 means success; otherwise the first line of its standard error is
      reported.

    The signature is verified against ``public_key`` before it is used.
    """

    def __init__(self, command: str | list[str], public_key: PublicKey, timeout: float = 300.0, name: str | None = None):
        import shlex  # the modules only some signers need are imported by them (CLI start-up)

        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            raise EspSecureError("external signer command is empty")
        scheme_of(public_key, name)
        self._pub = public_key
        self.timeout = timeout
        self.name = name or self.argv[0]

    def public_key(self) -> PublicKey:
        return self._pub

    def sign_digest(self, digest: bytes) -> bytes:
        values = {"digest": digest.hex(), "hash": hash_name(self._pub), "scheme": scheme_of(self._pub)}
        argv = [arg.replace("{digest}", values["digest"]).replace("{hash}", values["hash"]).replace(
            "{scheme}", values["scheme"]) for arg in self.argv]  # fmt: skip
        env = dict(os.environ, ESP_SECURE_DIGEST=values["digest"], ESP_SECURE_HASH=values["hash"],
                   ESP_SECURE_SCHEME=values["scheme"])  # fmt: skip
        import subprocess

        try:
            proc = subprocess.run(argv, input=digest, capture_output=True, timeout=self.timeout, env=env)
        except FileNotFoundError:
            raise EspSecureError(f"external signer not found: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise EspSecureError(f"external signer {self.name} did not answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise EspSecureError(f"cannot run external signer {self.name}: {exc.strerror}") from None
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()), "")
            raise EspSecureError(f"external signer {self.name} failed with exit status {proc.returncode}: {first}")
        signature = _maybe_hex(proc.stdout)
        if not signature:
            raise EspSecureError(f"external signer {self.name} returned no signature")
        if not verify_digest(self._pub, digest, signature):
            raise EspSecureError(f"external signer {self.name} returned a signature that does not verify with its public key")
        return signature


def _maybe_hex(out: bytes) -> bytes:
    """Binary as is; hex text (whitespace allowed) decoded."""
    text = b"".join(out.split())
    if text and len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text.decode())
    return out


# --- PKCS#11 -----------------------------------------------------------------------------------------


def read_hsm_config(path: PathLike) -> dict[str, str]:
    """espsecure's HSM config: INI section ``[hsm_config]`` with pkcs11_lib, slot, label,
    optional label_pubkey and credentials (the PIN; else ESP_SECURE_HSM_PIN, else a prompt)."""
    import configparser

    parser = configparser.ConfigParser()
    try:
        parser.read_string(read_text(path, "HSM config", MAX_KEY_SIZE))
    except configparser.Error as exc:
        raise EspSecureError(f"not a valid HSM config: {exc.__class__.__name__}", path) from None
    if not parser.has_section("hsm_config"):
        raise EspSecureError("HSM config has no [hsm_config] section", path)
    try:
        section = dict(parser["hsm_config"])  # values are interpolated ("%(name)s") here
    except configparser.Error as exc:
        raise EspSecureError(f"not a valid HSM config: {exc.__class__.__name__}", path) from None
    for option in ("pkcs11_lib", "slot", "label"):
        if not section.get(option):
            raise EspSecureError(f"HSM config lacks '{option}'", path)
    try:
        int(section["slot"], 0)
    except ValueError:
        raise EspSecureError(f"HSM config slot {section['slot']!r} is not a number", path) from None
    if not os.path.exists(section["pkcs11_lib"]):
        raise EspSecureError(f"PKCS#11 library {section['pkcs11_lib']} does not exist", path)
    return section


def _import_pkcs11():  # type: ignore[no-untyped-def]
    try:
        import pkcs11  # type: ignore[import-not-found]
    except ImportError:
        raise EspSecureError(
            "PKCS#11 signing needs the python-pkcs11 package", hint="pip install python-pkcs11"
        ) from None
    return pkcs11


# PKCS#11 login state belongs to the application, not the session: a second thread logging
# in while a session is open fails (CKR_USER_ALREADY_LOGGED_IN), and closing the last session
# logs the other out. scons -j (PlatformIO always builds in parallel) signs from several
# threads, so one token conversation at a time.
_PKCS11_LOCK = threading.RLock()


class Pkcs11Signer:
    """Signs on a PKCS#11 token; the private key never leaves it.

    RSA uses CKM_RSA_PKCS_PSS (SHA-256, MGF1-SHA-256, salt 32) on the digest; ECDSA
    uses CKM_ECDSA on the digest (the token picks the nonce). One session per call,
    one call at a time in a process (:data:`_PKCS11_LOCK`).
    """

    def __init__(self, config: dict[str, str], name: str = "<hsm>"):
        self.config = config
        self.name = name
        self._pub: PublicKey | None = None

    @classmethod
    def from_config_file(cls, path: PathLike) -> Pkcs11Signer:
        return cls(read_hsm_config(path), os.fspath(path))

    def _pin(self) -> str:
        pin = self.config.get("credentials") or os.environ.get(HSM_PIN_ENV)
        if pin:
            return pin
        if sys.stdin is not None and sys.stdin.isatty():
            import getpass

            return getpass.getpass(f"PIN of the HSM token ({self.name}): ")
        raise EspSecureError("HSM config has no credentials", self.name, hint=f"set {HSM_PIN_ENV} or run on a terminal")

    def _session(self):  # type: ignore[no-untyped-def]
        pkcs11 = _import_pkcs11()
        try:
            lib = pkcs11.lib(self.config["pkcs11_lib"])
            slot_id = int(self.config["slot"], 0)
            slots = [s for s in lib.get_slots(token_present=True) if s.slot_id == slot_id]
            if not slots:
                raise EspSecureError(f"no token in PKCS#11 slot {slot_id}", self.name)
            return slots[0].get_token().open(user_pin=self._pin())
        except (pkcs11.exceptions.PKCS11Error, RuntimeError, OSError) as exc:
            raise EspSecureError(f"cannot open a session on the HSM: {exc.__class__.__name__}", self.name) from None

    def _find(self, session, object_class, label: str):  # type: ignore[no-untyped-def]
        pkcs11 = _import_pkcs11()
        try:
            return session.get_key(object_class=object_class, label=label)
        except pkcs11.exceptions.NoSuchKey:
            raise EspSecureError(f"HSM has no key labelled {label!r}", self.name) from None
        except (pkcs11.exceptions.MultipleObjectsReturned, pkcs11.exceptions.PKCS11Error) as exc:
            raise EspSecureError(f"HSM key {label!r}: {exc.__class__.__name__}", self.name) from None

    def public_key(self) -> PublicKey:
        if self._pub is None:
            pkcs11 = _import_pkcs11()
            label = self.config.get("label_pubkey") or self.config["label"]
            with _PKCS11_LOCK, self._session() as session:
                obj = self._find(session, pkcs11.ObjectClass.PUBLIC_KEY, label)
                self._pub = _pkcs11_public_key(pkcs11, obj, self.name)
            scheme_of(self._pub, self.name)
        return self._pub

    def sign_digest(self, digest: bytes) -> bytes:
        pkcs11 = _import_pkcs11()
        pub = self.public_key()
        with _PKCS11_LOCK, self._session() as session:
            key = self._find(session, pkcs11.ObjectClass.PRIVATE_KEY, self.config["label"])
            try:
                if isinstance(pub, rsa.RSAPublicKey):
                    params = (pkcs11.Mechanism.SHA256, pkcs11.MGF.SHA256, 32)
                    return bytes(key.sign(digest, mechanism=pkcs11.Mechanism.RSA_PKCS_PSS, mechanism_param=params))
                raw = bytes(key.sign(digest, mechanism=pkcs11.Mechanism.ECDSA))
            except pkcs11.exceptions.PKCS11Error as exc:
                raise EspSecureError(f"HSM signing failed: {exc.__class__.__name__}", self.name) from None
        _, size = curve_info(pub)
        if len(raw) != 2 * size:
            raise EspSecureError(f"HSM returned a {len(raw)}-byte ECDSA signature, expected {2 * size}", self.name)
        return raw  # raw r || s is a standard form here


def _pkcs11_public_key(pkcs11, obj, name: str) -> PublicKey:  # type: ignore[no-untyped-def]
    """A cryptography public key from a PKCS#11 public-key object's attributes."""
    try:
        if obj.key_type == pkcs11.KeyType.RSA:
            n = int.from_bytes(obj[pkcs11.Attribute.MODULUS], "big")
            e = int.from_bytes(obj[pkcs11.Attribute.PUBLIC_EXPONENT], "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if obj.key_type == pkcs11.KeyType.EC:
            point = bytes(obj[pkcs11.Attribute.EC_POINT])
            # An uncompressed point's length names the curve among those the ROM accepts.
            curves = {49: ec.SECP192R1, 65: ec.SECP256R1, 97: ec.SECP384R1}
            # CKA_EC_POINT is a DER OCTET STRING around the point (some tokens omit it).
            if len(point) - 2 in curves and point[0] == 0x04 and point[1] == len(point) - 2:
                point = point[2:]
            if len(point) not in curves:
                raise EspSecureError("HSM EC key is not on P-192, P-256 or P-384", name)
            return ec.EllipticCurvePublicKey.from_encoded_point(curves[len(point)](), point)
    except pkcs11.exceptions.PKCS11Error as exc:
        raise EspSecureError(f"cannot read the HSM public key: {exc.__class__.__name__}", name) from None
    except ValueError:
        raise EspSecureError("HSM public key is not a valid point", name) from None
    raise EspSecureError("HSM key is neither RSA nor EC", name)
