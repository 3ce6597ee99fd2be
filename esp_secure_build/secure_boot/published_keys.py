"""Keys everyone knows: published keys and keys without entropy are refused for releases.

Signing keys: each entry is the SHA-256 of the key's DER SubjectPublicKeyInfo, so a
key matches whatever file format or name it comes in. The list holds esptool's Secure
Boot test keys, this project's own test keys (``tests/vectors/esptool/secure_images/``),
PlatformIO's secure-boot example key and MCUboot's development root keys (copies and
origins in ``tests/vectors/published-keys/``).

Secret keys (flash encryption, Secure Boot V1, NVS keys, NVS HMAC keys): each entry
is the SHA-256 of the raw key bytes (for a 64-byte key also of each 32-byte half, so
half of a published key is caught too): esptool's test flash keys, this project's
own (``tests/vectors/esptool/secure_images/``), ESP-IDF's NVS test keys and HMAC key,
and the NVS keys of the manufacturing test run. A key whose
bytes are all the same, or with either half all the same, is refused as well.
tests/test_published_keys.py checks that the lists cover every one of them (and every
private signing key under ``tests/``).
"""

from __future__ import annotations

import hashlib

from ..errors import EspSecureError

# What each override is called where the error is seen.
CLI_OVERRIDE = "--allow-published-key"
SCONS_OVERRIDE = "ESP_ALLOW_PUBLISHED_KEY=1"

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
    "c7697c615b0eb16f6c53b6d8997996dfae3c525048c05d6a6df221baeeb20fb8",  # esp-secure-build test key: ecdsa192_secure_boot_signing_key
    "b760b850846e31168eaa26a3b56bcb6376506168aa2a914db4b104c94710b441",  # esp-secure-build test key: ecdsa192_secure_boot_signing_key2
    "0f2de24b883a1908cd140cd415fe01ff1c55218a4ca422532abef6a413ca4739",  # esp-secure-build test key: ecdsa192_secure_boot_signing_key3
    "645f200f5437b023ec718a203a2012c409050b4544986c80c61f770685206951",  # esp-secure-build test key: ecdsa192_secure_boot_signing_key4
    "dc0dace2c91fb0b937cf121d098024d3a6c219f8fcf10ac0a1e84801beafd377",  # esp-secure-build test key: ecdsa192_secure_boot_signing_key_v2
    "86889ef98adc86fdc127596f16a3fc25cc36661718827b1e69b98b7fc85ef776",  # esp-secure-build test key: ecdsa256_secure_boot_signing_key
    "19bda2b0b1a5d22057dc244135a8b1773a3bf3b5ccc4e9b979c74fd76a221965",  # esp-secure-build test key: ecdsa256_secure_boot_signing_key2
    "1a4e1e1164574173087442f29e117db7cb11b84ce491b6918e522bc296e830a5",  # esp-secure-build test key: ecdsa256_secure_boot_signing_key3
    "f7e436d7ef41fc0d3174a044179b4b62d93a2e59f83f330ad0fae40254dac145",  # esp-secure-build test key: ecdsa256_secure_boot_signing_key4
    "3c16d01eda0650f69cd5ae58741d9aa6464884a4755451858643288d23782465",  # esp-secure-build test key: ecdsa256_secure_boot_signing_key_v2
    "2e5fc0ca0f6481643869b9838da3de7fa36587360eda162020db7e7dc974de2c",  # esp-secure-build test key: ecdsa384_secure_boot_signing_key
    "0c0ecfd821925f1a6d62e121deecea11336cc2227bce3f5311d94b843d98063c",  # esp-secure-build test key: ecdsa384_secure_boot_signing_key2
    "aa93f1a8f564b604a10feee07f2de409e90e796b2ce72f87d67eddd0b7bbf11a",  # esp-secure-build test key: ecdsa384_secure_boot_signing_key3
    "b0fc7831a2c893434619e4fbb935e4ec6af0f55a29389baf3d3a6fb786340b7b",  # esp-secure-build test key: ecdsa384_secure_boot_signing_key4
    "b141dd34921a4d65a0670a2512fea79f5d18d8daed2605a4cea430ea14471e1c",  # esp-secure-build test key: rsa_secure_boot_signing_key
    "62008576dca3c119afe2ce41be213a4b9c46f5ff08f0de60619bea495f9c92d3",  # esp-secure-build test key: rsa_secure_boot_signing_key2
    "b7254097dc60eef06a96c5ca7405dbb91e4605a0e6cc3dc269357caf07f69ba5",  # esp-secure-build test key: rsa_secure_boot_signing_key3
    "cfe2854f221cb4c91dc83b993163b3ff90bb7f57c2d7cc2f6b1dedb4255f1fc0",  # esp-secure-build test key: rsa_secure_boot_signing_key4
    "bb868a727f0ef75e890a6a52bccd1d936fb34438afd6f237e8af259865742446",  # mcuboot-cypress-test-ec-p256: mcuboot-cypress-test-ec-p256
    "e30466f6b8470c1f29070b17f1e2d3e94d445e3f608087fdc711e4382bb538b6",  # mcuboot-root-ec-p256: mcuboot-root-ec-p256
    "6bcd1e16d80e5fe13a5307e6f1de8344c7e50e537d9962ce35ef6db5e642fae8",  # mcuboot-root-ec-p384: mcuboot-root-ec-p384
    "159d8b7930769d887f3ff0b4e9ec176b82313663f2ef76dc24f5e964da1bc482",  # mcuboot-root-rsa-3072: mcuboot-root-rsa-3072
    "678e5ca0ea7974458ff23e235eb8683e925901fb87a77e8c3154602a077b1264",  # platformio-espidf-security-secureboot: platformio-espidf-security-secureboot
})  # fmt: skip


def fingerprint(public_key: object) -> str:
    """SHA-256 (hex) of the key's DER SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]
    return hashlib.sha256(der).hexdigest()


def is_published(public_key: object) -> bool:
    """True when the private half of this public key is known to everyone."""
    return fingerprint(public_key) in PUBLISHED_KEY_FINGERPRINTS


def refuse_published(public_key: object, name: str | None = None, override: str = CLI_OVERRIDE) -> None:
    """Raise unless the key is private to its owner (``override`` names how to allow it, for tests)."""
    if is_published(public_key):
        raise EspSecureError(
            "is a publicly known key (a test or example key from a public repository): anyone can sign with it",
            name,
            hint=f"use your own key; {override} only for tests",
        )


def refuse_known_signer(signer: object, name: str | None = None, override: str = CLI_OVERRIDE) -> None:
    """Refuse a signer whose key anyone can know: published, or an ECDSA key without entropy."""
    refuse_published(signer.public_key(), name, override)  # type: ignore[attr-defined]
    private = getattr(signer, "private_key", None)
    scalar = getattr(private, "private_numbers", None)
    if scalar is not None and hasattr(private, "curve"):
        value = scalar().private_value
        weak = _weak(value.to_bytes((private.curve.key_size + 7) // 8, "big"))  # type: ignore[attr-defined]
        if weak:
            raise EspSecureError(f"ECDSA signing key has no entropy ({weak}): anyone can guess it", name,
                                 hint=f"make a new key; {override} only for tests")  # fmt: skip


# -- secret (symmetric) keys -------------------------------------------------------------
PUBLISHED_SECRET_KEYS: dict[str, str] = {
    "18f3c96989c9277af8340212de514cbc992ec61f99d63c75ac37c1694f597eee": "esptool's test key 256bit_key.bin",
    "a6882157be0ab8e4c0258ece332db64e6d697213dffcfd086433ec31cf7afebb": "esptool's test key 512bit_key.bin",
    "9f6909d154fd4dc9332c036fa6082ebf5ac3f428b8c2ef9d92b7a61c3ba96276": "first half of esptool's test key 512bit_key.bin",
    "7104e1253150724e6b9a755d2a6157b5b3908a1f858134f84a0569cfdb69af71": "second half of esptool's test key 512bit_key.bin",
    "62a497f3aa523e1c7bf513787d089676a18db8a9d1778dce35d0096dcf98a6ba": "esptool's test key ef-flashencryption-key.bin",
    "c77d36f67b3f689635a4bcb511e3445fcbb74f37bfb4725acfa77df229882ec9": "this project's test key 256bit_key.bin",
    "e283049fff1220fe2660ecbcb917365db588aa4811053f44f8e769f0e57bdd94": "this project's test key 512bit_key.bin",
    "b82dab34a704b18267d8c2ac19b198ed4f02c4f3691f57529beb769e5a76dd48": "first half of this project's test key 512bit_key.bin",
    "218b36243ea8917d8b12328f2336804cef71d59a0be7126b160d1110f39f2b6d": "second half of this project's test key 512bit_key.bin",
    "b9e33afd6bb71f33bf782c4073e31e2fc1ffd9b5db44ca52a3b4f33a32cc15c9": "this project's test key ef-flashencryption-key.bin",
    "5189c77d29fe5d546a045ec46986852785fea5c13ac7da9c115ff5fb6edf817c": "ESP-IDF's NVS test keys sample_encryption_keys.bin",
    "02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc": "ESP-IDF's NVS test keys sample_encryption_keys.bin (first half)",
    "9f72ea0cf49536e3c66c787f705186df9a4378083753ae9536d65b3ad7fcddc4": "ESP-IDF's NVS test keys sample_encryption_keys.bin (second half)",
    "b32f54f51bda2ea068f9fbeb6a1d9506f66431a6ed2c7dae79c792679e00a8f6": "ESP-IDF's NVS test keys sample_encryption_keys_hmac.bin",
    "b24f52f0e7625e3c0b04b1d36cab07c569eeb7f515a32d913d07779eac611726": "ESP-IDF's NVS test keys sample_encryption_keys_hmac.bin (first half)",
    "1e8863712f08e9cad66906f1a1b210911a5fdc4289b4e66bba269248aa2c48ee": "ESP-IDF's NVS test keys sample_encryption_keys_hmac.bin (second half)",
    "ae216c2ef5247a3782c135efa279a3e4cdc61094270f5d2be58c6204b7a612c9": "ESP-IDF's NVS test HMAC key sample_hmac_key.bin",
    "5f733c069e265e497c3dd78510343e844269a83e190f5f6811f46fc8220fa08a": "the manufacturing test NVS keys (mfg run-a nvs_keys.bin)",
    "33ec7f4cc8daa7c43f1628a79d1b99083cf533b54c2f0d9a7a70fbc85ed08f8b": "the manufacturing test NVS keys (mfg run-a nvs_keys.bin, first half)",
    "70372b2acd08cc9fb8a2756041aa96c68e2fd36eba33c873b86d32b236f38a84": "the manufacturing test NVS keys (mfg run-a nvs_keys.bin, second half)",
}  # fmt: skip

# kind -> what the key is called in messages
SECRET_KEY_KINDS: dict[str, str] = {
    "flash_encryption": "flash encryption key",
    "secure_boot_v1": "Secure Boot V1 key",
    "nvs_keys": "NVS keys",
    "nvs_hmac": "NVS HMAC key",
}


def _key_bytes(kind: str, data: bytes) -> bytes:
    if kind not in SECRET_KEY_KINDS:
        raise ValueError(f"unknown key kind {kind!r}")
    # An NVS keys partition: the two XTS keys, then a CRC and 0xFF fill.
    return data[:64] if kind == "nvs_keys" else data


def is_published_secret_key(kind: str, data: bytes) -> str | None:
    """Which published key ``data`` is (or a half of), or None.

    ``kind`` is one of :data:`SECRET_KEY_KINDS`; ``data`` the raw key (for
    ``nvs_keys`` a keys partition or its 64 key bytes).
    """
    key = _key_bytes(kind, data)
    parts = [key, key[:32], key[32:]] if len(key) == 64 else [key]
    for part in parts:
        name = PUBLISHED_SECRET_KEYS.get(hashlib.sha256(part).hexdigest())
        if name:
            return name
    return None


def weak_secret_key(kind: str, data: bytes) -> str | None:
    """Why a key has no entropy (all bytes equal, or either half), or None."""
    return _weak(_key_bytes(kind, data))


def _weak(key: bytes) -> str | None:
    if not key:
        return "it is empty"
    if len(set(key)) == 1:
        return f"all {len(key)} bytes are {key[0]:#04x}"
    half = len(key) // 2
    for name, part in (("first", key[:half]), ("second", key[half:])):
        if len(set(part)) == 1:
            return f"its {name} half is {len(part)} bytes of {part[0]:#04x}"
    return None


def refuse_weak_or_published(
    kind: str, data: bytes, path: object = None, override: str = CLI_OVERRIDE
) -> None:
    """Raise for a key anyone can know: no entropy, or published (``override`` allows it, for tests)."""
    what = SECRET_KEY_KINDS.get(kind, kind)
    weak = weak_secret_key(kind, data)
    if weak:
        raise EspSecureError(f"{what} has no entropy ({weak}): anyone can guess it", path,  # type: ignore[arg-type]
                             hint=f"make a random key; {override} only for tests")  # fmt: skip
    published = is_published_secret_key(kind, data)
    if published:
        raise EspSecureError(f"{what} is a publicly known key ({published}): anyone can use it", path,  # type: ignore[arg-type]
                             hint=f"make your own key; {override} only for tests")  # fmt: skip
