"""Public keys whose private halves are published: signing a release with one is refused.

Each entry is the SHA-256 of the key's DER SubjectPublicKeyInfo, so a key matches
whatever file format or name it comes in. The list holds esptool's Secure Boot test
keys, PlatformIO's secure-boot example key and MCUboot's development root keys
(copies and origins in the project's shared test vectors, ``published-keys/``);
tests/test_published_keys.py checks that it covers every one of them.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization

from ..errors import EspSecureError

PUBLISHED_KEY_FINGERPRINTS = frozenset({
    "c7e5970095e3365cd78808bab70f55ea33d48e38cc06a22a28120da973d5e948",  # esptool test key: ecdsa192_secure_boot_signing_key
    "fffeafdf99ae035bd6a658044db81923b8b622e0938611525fffd14024c553b7",  # esptool test key: ecdsa192_secure_boot_signing_key2
    "2029eb613973316b6ec98429b9816237472fb8005a6775d69885debc274ab695",  # esptool test key: ecdsa192_secure_boot_signing_key3
    "aaeeed0caf65d7a4a9582d0f24b4b2e61d9608f70aff849b071a23719533c7b9",  # esptool test key: ecdsa192_secure_boot_signing_key4
    "7400553d7a3b1c46aa2b572ba2978475b5ba9116ae6f311bf7d20a3243478ddd",  # esptool test key: ecdsa192_secure_boot_signing_key_v2
    "c9aa0de6e3f9c806b4bbd78753f8960a543353c272005d6b903ed05fbcb2e8f4",  # esptool test key: ecdsa256_secure_boot_signing_key
    "be6673e2e2088fe37a7c0d9ad42a4ad1669578a450e9daac387392cbca87e473",  # esptool test key: ecdsa256_secure_boot_signing_key2
    "10a122f30a2d0953225750cc11d58b91d40750e6d47588c8e6e7e001b0cf10d7",  # esptool test key: ecdsa256_secure_boot_signing_key3
    "bc719addcb27b375edec12ae4ce3cc4b3d21961482f98cbf464a5abb180fe4f1",  # esptool test key: ecdsa256_secure_boot_signing_key4
    "5938c05dfb34e93c48d3241a4135a0fbdb1a33b3acf05581555dea5e4a87a240",  # esptool test key: ecdsa256_secure_boot_signing_key_v2
    "f59288721ff1c6dd1d0346e23d30444524bd6e53919f3cbfe0dfb6e9bd0633b1",  # esptool test key: ecdsa384_secure_boot_signing_key
    "7063d5577350185d8a751a3cdc6c32c3724683eeef1f84c7df4ebd9629ed41a7",  # esptool test key: ecdsa384_secure_boot_signing_key2
    "b397c28cb2c63aeda0c8c903bf63786ddfd7739e5480542371abd949a8874029",  # esptool test key: ecdsa384_secure_boot_signing_key3
    "cabd3956fb11652c36f92bc4066c0520bb5281c5d42e95041a019cf62e9a6d62",  # esptool test key: ecdsa384_secure_boot_signing_key4
    "ea65882064b6349fa1cba7a6cca5653734b2fe9190095f561c199c2525c4a886",  # esptool test key: rsa_secure_boot_signing_key
    "df594d59bf90e79dd7d9eaa3a277e5c6f9465f6a47bd118e18a2cb6be9db9acd",  # esptool test key: rsa_secure_boot_signing_key2
    "11f0c4dad080f1f8967c52ba6268623e283f83ef7a6031d044525941c6f88321",  # esptool test key: rsa_secure_boot_signing_key3
    "2cf2f4c0243f8ce6e73cba224730dd0308d18c8e285226859e0185be9e9577c8",  # esptool test key: rsa_secure_boot_signing_key4
    "bb868a727f0ef75e890a6a52bccd1d936fb34438afd6f237e8af259865742446",  # mcuboot-cypress-test-ec-p256: mcuboot-cypress-test-ec-p256
    "e30466f6b8470c1f29070b17f1e2d3e94d445e3f608087fdc711e4382bb538b6",  # mcuboot-root-ec-p256: mcuboot-root-ec-p256
    "6bcd1e16d80e5fe13a5307e6f1de8344c7e50e537d9962ce35ef6db5e642fae8",  # mcuboot-root-ec-p384: mcuboot-root-ec-p384
    "159d8b7930769d887f3ff0b4e9ec176b82313663f2ef76dc24f5e964da1bc482",  # mcuboot-root-rsa-3072: mcuboot-root-rsa-3072
    "678e5ca0ea7974458ff23e235eb8683e925901fb87a77e8c3154602a077b1264",  # platformio-espidf-security-secureboot: platformio-espidf-security-secureboot
})  # fmt: skip


def fingerprint(public_key: object) -> str:
    """SHA-256 (hex) of the key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]
    return hashlib.sha256(der).hexdigest()


def is_published(public_key: object) -> bool:
    """True when the private half of this public key is known to everyone."""
    return fingerprint(public_key) in PUBLISHED_KEY_FINGERPRINTS


def refuse_published(public_key: object, name: str | None = None) -> None:
    """Raise unless the key is private to its owner (override: --allow-published-key)."""
    if is_published(public_key):
        raise EspSecureError(
            "is a publicly known key (a test or example key from a public repository): anyone can sign with it",
            name,
            hint="use your own key; --allow-published-key / ESP_ALLOW_PUBLISHED_KEY=1 only for tests",
        )
