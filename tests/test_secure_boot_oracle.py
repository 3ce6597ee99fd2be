"""Secure Boot cross-checks against espsecure 5.6.0, and the CLI's answers to bad input.

Both directions of verification for every scheme and one to three blocks,
byte comparison of everything deterministic, and tamper detection.
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import zlib

import pytest
from conftest import VECTORS, assert_one_line_error, run_cli, run_oracle
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from esp_secure_build.errors import EspSecureError
from esp_secure_build.secure_boot import keys, v1, v2
from esp_secure_build.secure_boot.signers import LocalKeySigner

SI = VECTORS / "esptool" / "secure_images"
UNSIGNED = SI / "bootloader_unsigned_v2.bin"
SCHEME_FILES = {"rsa3072": "rsa", "ecdsa192": "ecdsa192", "ecdsa256": "ecdsa256", "ecdsa384": "ecdsa384"}


cli = run_cli


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def key_path(scheme: str, n: int = 1):  # type: ignore[no-untyped-def]
    return SI / f"{SCHEME_FILES[scheme]}_secure_boot_signing_key{'' if n == 1 else n}.pem"


def masked(image: bytes) -> bytes:
    """Zero each block's signature and CRC (the only randomised bytes of espsecure's output)."""
    out = bytearray(image)
    base0 = len(image) - v2.SECTOR_SIZE
    for block in v2.leading_blocks(image[-v2.SECTOR_SIZE :]):
        base = base0 + block.index * v2.BLOCK_SIZE
        lo = {"rsa3072": 812, "ecdsa384": 149}.get(block.scheme, 101)
        out[base + lo : base + 1200] = bytes(1200 - lo)
    return bytes(out)


# --- V2 in both directions ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("scheme", list(SCHEME_FILES))
def test_v2_both_directions(scheme, count, tmp_path):
    keyfiles = [key_path(scheme, n) for n in range(1, count + 1)]
    theirs, ours = tmp_path / "theirs.bin", tmp_path / "ours.bin"
    run_oracle("espsecure", "sign-data", "--version", "2", "--keyfile", *keyfiles, "--output", theirs, UNSIGNED)
    ok(cli("sign-data", "--version", "2", "--keyfile", *keyfiles, "--output", ours, UNSIGNED))
    assert masked(ours.read_bytes()) == masked(theirs.read_bytes())
    # espsecure verifies ours with the last key, and refuses key 4.
    run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", keyfiles[-1], ours)
    assert run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", key_path(scheme, 4), ours,
                      check=False).returncode != 0  # fmt: skip
    # We verify espsecure's with every key (in-process), and refuse key 4.
    data = theirs.read_bytes()
    for kf in keyfiles:
        pub = keys.load_public_key(kf)
        assert v2.verify(data, pub).verified == [b.index for b in v2.read_blocks(data[-4096:])
                                                 if b is not None and b.verifies_with(pub)]  # fmt: skip
    with pytest.raises(EspSecureError, match="none of the"):
        v2.verify(data, keys.load_public_key(key_path(scheme, 4)))


@pytest.mark.parametrize("scheme", ["rsa3072", "ecdsa256"])
def test_skip_padding_matches_espsecure(scheme, tmp_path):
    data = tmp_path / "odd.bin"
    data.write_bytes(UNSIGNED.read_bytes()[:5000])
    theirs, ours = tmp_path / "theirs.bin", tmp_path / "ours.bin"
    run_oracle("espsecure", "sign-data", "--version", "2", "--skip-padding", "--keyfile", key_path(scheme),
               "--output", theirs, data)  # fmt: skip
    ok(cli("sign-data", "--version", "2", "--skip-padding", "--keyfile", key_path(scheme), "--output", ours, data))
    assert len(ours.read_bytes()) == 5000 + 4096
    assert masked(ours.read_bytes()) == masked(theirs.read_bytes())
    run_oracle("espsecure", "verify-signature", "--version", "2", "--skip-padding", "--keyfile", key_path(scheme), ours)
    ok(cli("verify-signature", "--version", "2", "--skip-padding", "--keyfile", key_path(scheme), theirs))
    # Without --skip-padding the file is refused (not 4096-aligned), as espsecure does.
    assert_one_line_error(cli("verify-signature", "--version", "2", "--keyfile", key_path(scheme), ours),
                          "Invalid datafile")  # fmt: skip


@pytest.mark.parametrize("scheme", list(SCHEME_FILES))
def test_precalculated_signature_byte_identical(scheme, tmp_path):
    """A signature made outside (as openssl would) gives espsecure's exact bytes."""
    sk = keys.load_private_key(key_path(scheme))
    content = UNSIGNED.read_bytes()
    digest = v2.content_digest(content, scheme)
    if isinstance(sk, rsa.RSAPrivateKey):
        sig = sk.sign(digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256()))
    else:
        algo = hashes.SHA384() if scheme == "ecdsa384" else hashes.SHA256()
        sig = sk.sign(digest, ec.ECDSA(utils.Prehashed(algo)))
    (tmp_path / "sig.bin").write_bytes(sig)
    (tmp_path / "pub.pem").write_bytes(keys.public_key_pem(sk))
    theirs, ours = tmp_path / "theirs.bin", tmp_path / "ours.bin"
    common = ["--version", "2", "--pub-key", tmp_path / "pub.pem", "--signature", tmp_path / "sig.bin"]
    run_oracle("espsecure", "sign-data", *common, "--output", theirs, UNSIGNED)
    ok(cli("sign-data", *common, "--output", ours, UNSIGNED))
    assert ours.read_bytes() == theirs.read_bytes()


def test_tampering_detected(tmp_path):
    signed = v2.sign(UNSIGNED.read_bytes(), [LocalKeySigner.from_file(key_path("ecdsa256"))])
    pub = keys.load_public_key(key_path("ecdsa256"))
    path = tmp_path / "t.bin"
    # A flipped content bit: digest mismatch, for us and for espsecure.
    bad = bytearray(signed)
    bad[100] ^= 1
    path.write_bytes(bad)
    assert_one_line_error(cli("verify-signature", "-v", "2", "-k", key_path("ecdsa256"), path), "modified after signing")
    assert run_oracle("espsecure", "verify-signature", "-v", "2", "-k", key_path("ecdsa256"), path, check=False).returncode
    # A flipped signature bit with the CRC fixed up: the signature no longer verifies.
    bad = bytearray(signed)
    base = len(signed) - 4096
    bad[base + 110] ^= 0x80
    bad[base + 1196 : base + 1200] = struct.pack("<I", zlib.crc32(bytes(bad[base : base + 1196])))
    path.write_bytes(bad)
    with pytest.raises(EspSecureError, match="none of the"):
        v2.verify(bytes(bad), pub)
    assert run_oracle("espsecure", "verify-signature", "-v", "2", "-k", key_path("ecdsa256"), path, check=False).returncode
    # A flipped bit without CRC fix: the block is invalid, so the image counts as unsigned.
    bad = bytearray(signed)
    bad[base + 110] ^= 0x80
    path.write_bytes(bad)
    assert_one_line_error(cli("verify-signature", "-v", "2", "-k", key_path("ecdsa256"), path), "no valid")


def test_expect_digest_gate(tmp_path):
    out = tmp_path / "two.bin"
    k1, k2 = key_path("rsa3072"), key_path("rsa3072", 2)
    ok(cli("sign-data", "-v", "2", "-k", k1, k2, "-o", out, UNSIGNED))
    d1, d2 = tmp_path / "d1.bin", tmp_path / "d2.bin"
    run_oracle("espsecure", "digest-sbv2-public-key", "-k", k1, "-o", d1)
    run_oracle("espsecure", "digest-sbv2-public-key", "-k", k2, "-o", d2)
    ok(cli("verify-signature", "-v", "2", "--expect-digest", d1.read_bytes().hex(), "--expect-digest", d2, out))
    # Block 1 was signed by key 2, which is not expected: fail, naming that key.
    proc = cli("verify-signature", "-v", "2", "--expect-digest", d1.read_bytes().hex(), out)
    assert_one_line_error(proc, "block 1", d2.read_bytes().hex())
    # Even with a key that verifies block 0.
    assert_one_line_error(cli("verify-signature", "-v", "2", "-k", k1, "--expect_digest", d1, out), "not an expected key")
    # ESP32-C2 style: the first 16 bytes are enough.
    ok(cli("verify-signature", "-v", "2", "--expect-digest", d1.read_bytes()[:16].hex(),
           "--expect-digest", d2.read_bytes()[:16].hex(), out))  # fmt: skip


# --- V1 -------------------------------------------------------------------------------------------------


def test_v1_generated_key_byte_identical(tmp_path):
    key = tmp_path / "v1.pem"
    ok(cli("generate-signing-key", "--version", "1", key))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"BEGIN EC PRIVATE KEY" in key.read_bytes()
    data = tmp_path / "app.bin"
    data.write_bytes(os.urandom(3000))
    theirs, ours = tmp_path / "theirs.bin", tmp_path / "ours.bin"
    run_oracle("espsecure", "sign-data", "--version", "1", "--keyfile", key, "--output", theirs, data)
    ok(cli("--chip", "esp32", "sign-data", "--version", "1", "--keyfile", key, "--output", ours, data))
    assert ours.read_bytes() == theirs.read_bytes()
    raw, raw_theirs = tmp_path / "raw.bin", tmp_path / "raw_theirs.bin"
    ok(cli("extract-public-key", "--version", "1", "--keyfile", key, raw))
    run_oracle("espsecure", "extract-public-key", "--version", "1", "--keyfile", key, raw_theirs)
    assert raw.read_bytes() == raw_theirs.read_bytes()
    ok(cli("verify-signature", "--version", "1", "--keyfile", raw, ours))
    for keylen in ("192", "256"):
        a, b = tmp_path / f"a{keylen}", tmp_path / f"b{keylen}"
        ok(cli("digest-private-key", "--keyfile", key, "--keylen", keylen, a))
        run_oracle("espsecure", "digest-private-key", "--keyfile", key, "--keylen", keylen, b)
        assert a.read_bytes() == b.read_bytes()


def _esp32_image(payload_len: int, hash_appended: int) -> bytes:
    header = bytes([0xE9, 1, 2, 0x20]) + struct.pack("<I", 0x40080000) + bytes([0xEE, 0, 0, 0]) + bytes(11)
    header += bytes([hash_appended])
    body = header + struct.pack("<II", 0x3FFB0000, payload_len) + os.urandom(payload_len)
    body += b"\0" * (15 - len(body) % 16) + b"\xef"
    return body + (os.urandom(32) if hash_appended else b"")


@pytest.mark.parametrize(("payload", "hashed", "keylen"), [(80, 1, 32), (80, 0, 24), (1000, 1, 16), (4096, 1, 32)])
def test_digest_bootloader_matches_espsecure(payload, hashed, keylen, tmp_path):
    image = tmp_path / "bl.bin"
    image.write_bytes(_esp32_image(payload, hashed))
    (tmp_path / "key.bin").write_bytes(os.urandom(keylen))
    (tmp_path / "iv.bin").write_bytes(os.urandom(128))
    common = ["--keyfile", tmp_path / "key.bin", "--iv", tmp_path / "iv.bin"]
    run_oracle("espsecure", "digest-secure-bootloader", *common, "--output", tmp_path / "theirs.bin", image)
    ok(cli("digest-secure-bootloader", *common, "--output", tmp_path / "ours.bin", image))
    assert (tmp_path / "ours.bin").read_bytes() == (tmp_path / "theirs.bin").read_bytes()


# --- keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", list(SCHEME_FILES))
def test_generated_v2_keys_match_espsecure_tools(scheme, tmp_path):
    key = tmp_path / "k.pem"
    ok(cli("generate-signing-key", "--version", "2", "--scheme", scheme, key))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert keys.scheme_of(keys.load_private_key(key)) == scheme
    for command, args in (("extract-public-key", ["--version", "2", "--keyfile", key]),
                          ("digest-sbv2-public-key", ["--keyfile", key, "--output"])):  # fmt: skip
        ok(cli(command, *args, tmp_path / "ours"))
        run_oracle("espsecure", command, *args, tmp_path / "theirs")
        assert (tmp_path / "ours").read_bytes() == (tmp_path / "theirs").read_bytes()
    # Refuses to overwrite.
    assert_one_line_error(cli("generate-signing-key", "--version", "2", key), "already exists")


def test_key_formats_give_one_digest(tmp_path):
    """PEM/DER, PKCS#1/PKCS#8, private/public, encrypted: one key, one public_key_digest."""
    sk = keys.load_private_key(key_path("ecdsa256"))
    want = keys.public_key_digest(sk)
    enc = serialization.BestAvailableEncryption(b"s3cret")
    forms = {
        "pkcs8.der": sk.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()),
        "pub.der": sk.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo),
        "enc.pem": sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc),
    }  # fmt: skip
    os.environ["ESP_SECURE_KEY_PASSPHRASE"] = "s3cret"
    try:
        for name, data in forms.items():
            (tmp_path / name).write_bytes(data)
            assert keys.public_key_digest(keys.load_public_key(tmp_path / name)) == want, name
    finally:
        del os.environ["ESP_SECURE_KEY_PASSPHRASE"]
    assert keys.public_key_digest(keys.load_public_key(SI / "ecdsa256_secure_boot_signing_key_pkcs8.pem")) == want


def test_encrypted_key_via_environment(tmp_path):
    sk = keys.load_private_key(key_path("ecdsa256"))
    enc = tmp_path / "enc.pem"
    enc.write_bytes(sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.BestAvailableEncryption(b"pw")))  # fmt: skip
    out = tmp_path / "o.bin"
    assert_one_line_error(cli("sign-data", "-v", "1", "-k", enc, "-o", out, SI / "bootloader.bin"),
                          "encrypted", "ESP_SECURE_KEY_PASSPHRASE")  # fmt: skip
    assert not out.exists()
    assert_one_line_error(cli("sign-data", "-v", "1", "-k", enc, "-o", out, SI / "bootloader.bin",
                              env_extra={"ESP_SECURE_KEY_PASSPHRASE": "wrong"}), "passphrase")  # fmt: skip
    ok(cli("sign-data", "-v", "1", "-k", enc, "-o", out, SI / "bootloader.bin",
           env_extra={"ESP_SECURE_KEY_PASSPHRASE": "pw"}))  # fmt: skip
    assert out.read_bytes() == (SI / "bootloader_signed.bin").read_bytes()


# --- bad input: one line, exit 2, no output ------------------------------------------------------------


def _write_key(path, key) -> None:  # type: ignore[no-untyped-def]
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip


@pytest.fixture(scope="module")
def odd_keys(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("oddkeys")
    _write_key(d / "rsa2048.pem", rsa.generate_private_key(65537, 2048))
    _write_key(d / "p521.pem", ec.generate_private_key(ec.SECP521R1()))
    _write_key(d / "ed25519.pem", ed25519.Ed25519PrivateKey.generate())
    (d / "garbage.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    return d


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["sign-data", "-v", "2", "-k", "{odd}/rsa2048.pem"], ["2048", "RSA-3072"]),
        (["sign-data", "-v", "2", "-k", "{odd}/p521.pem"], ["secp521r1"]),
        (["sign-data", "-v", "2", "-k", "{odd}/ed25519.pem"], ["Ed25519"]),
        (["sign-data", "-v", "2", "-k", "{odd}/garbage.pem"], ["garbage.pem"]),
        (["sign-data", "-v", "1", "-k", "{si}/rsa_secure_boot_signing_key.pem"], ["V1", "rsa3072"]),
        (["--chip", "esp32c3", "sign-data", "-v", "2", "-k", "{si}/ecdsa256_secure_boot_signing_key.pem"],
         ["ESP32-C3", "ecdsa256"]),
        (["--chip", "esp32c3", "sign-data", "-v", "1", "-k", "{si}/ecdsa256_secure_boot_signing_key.pem"], ["V1"]),
        (["--chip", "esp32c2", "sign-data", "-v", "2", "-k", "{si}/ecdsa256_secure_boot_signing_key.pem",
          "{si}/ecdsa256_secure_boot_signing_key2.pem"], ["ESP32-C2", "at most 1"]),
        (["sign-data", "-v", "2", "-k", "{si}/rsa_secure_boot_signing_key.pem", "{si}/rsa_secure_boot_signing_key2.pem",
          "{si}/rsa_secure_boot_signing_key3.pem", "{si}/rsa_secure_boot_signing_key4.pem"], ["at most 3"]),
        (["sign-data", "-v", "2", "-k", "{si}/ecdsa256_secure_boot_signing_key.pem",
          "{si}/ecdsa384_secure_boot_signing_key.pem"], ["mix schemes"]),
    ],
    ids=["rsa2048", "p521", "ed25519", "garbage", "rsa-v1", "chip-scheme", "chip-v1", "c2-two-keys", "four-keys",
         "mixed"],
)
def test_sign_refusals(args, needles, odd_keys, tmp_path):
    out = tmp_path / "out.bin"
    argv = [a.format(odd=odd_keys, si=SI) for a in args]
    assert_one_line_error(cli(*argv, "-o", out, UNSIGNED), *needles)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_fourth_signature_and_already_signed(tmp_path):
    three = SI / "bootloader_multi_signed_v2_rsa.bin"
    out = tmp_path / "out.bin"
    assert_one_line_error(cli("sign-data", "-v", "2", "-a", "-k", key_path("rsa3072", 4), "-o", out, three),
                          "3 existing", "at most 3")  # fmt: skip
    assert_one_line_error(cli("sign-data", "-v", "2", "-k", key_path("rsa3072", 4), "-o", out, three),
                          "already signed")  # fmt: skip
    assert not out.exists()


def test_verify_refusals(tmp_path):
    assert_one_line_error(cli("verify-signature", "-v", "2", "-k", key_path("rsa3072"), UNSIGNED), "no valid")
    assert_one_line_error(cli("verify-signature", "-v", "2", UNSIGNED), "--keyfile")
    assert_one_line_error(cli("verify-signature", "-v", "2", "-k", key_path("rsa3072"), tmp_path / "nope.bin"),
                          "nope.bin", "not found")  # fmt: skip
    assert_one_line_error(cli("verify-signature", "-v", "2", "--expect-digest", "abc", UNSIGNED), "abc")
    short = tmp_path / "short.bin"
    short.write_bytes(b"\0" * 10)
    assert_one_line_error(cli("verify-signature", "-v", "1", "-k", key_path("ecdsa256"), short), "too short")
    assert_one_line_error(cli("digest-secure-bootloader", "-k", key_path("ecdsa256"), "-o", tmp_path / "d.bin",
                              SI / "bootloader.bin"), "secure boot key")  # fmt: skip
    assert_one_line_error(cli("digest-private-key", "-k", key_path("rsa3072"), tmp_path / "d.bin"), "P-256")
    assert not (tmp_path / "d.bin").exists()


def test_in_place_and_output_is_input(tmp_path):
    data = tmp_path / "img.bin"
    data.write_bytes(UNSIGNED.read_bytes())
    # No --output: in place. (As in espsecure, --keyfile takes every word up to the next option.)
    ok(cli("sign-data", "-v", "2", data, "-k", key_path("ecdsa256")))
    run_oracle("espsecure", "verify-signature", "-v", "2", "-k", key_path("ecdsa256"), data)
    key_copy = tmp_path / "k.pem"
    key_copy.write_bytes(key_path("ecdsa256").read_bytes())
    assert_one_line_error(cli("sign-data", "-v", "2", "-k", key_copy, "-o", key_copy, UNSIGNED), "input of this command")


def test_v1_core_rejects_wrong_key_and_version():
    signed = (SI / "bootloader_signed.bin").read_bytes()
    with pytest.raises(EspSecureError, match="not valid"):
        v1.verify(signed, keys.load_public_key(SI / "ecdsa256_secure_boot_signing_key2.pem"))
    bad = bytearray(signed)
    bad[-68] = 1
    with pytest.raises(EspSecureError, match="version 1"):
        v1.verify(bytes(bad), keys.load_public_key(key_path("ecdsa256")))


def test_old_spellings(tmp_path):
    """espsecure 4.x spellings: sign_data, --append_signatures, verify_signature, --skip_padding."""
    once = tmp_path / "once.bin"
    ok(cli("sign_data", "--version", "2", "--keyfile", key_path("ecdsa384"), "--output", once, UNSIGNED))
    twice = tmp_path / "twice.bin"
    ok(cli("sign_data", "--version", "2", "--append_signatures", "--keyfile", key_path("ecdsa384", 2),
           "--output", twice, once))  # fmt: skip
    assert twice.read_bytes()[: len(once.read_bytes()) - 4096 + 1216] == once.read_bytes()[: -4096 + 1216]
    for n in (1, 2):
        run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", key_path("ecdsa384", n), twice)
    ok(cli("verify_signature", "--version", "2", "--skip_padding", "--keyfile", key_path("ecdsa384", 2), twice))


def test_v1_expect_digest(tmp_path):
    signed = SI / "bootloader_signed.bin"
    pub = SI / "ecdsa256_secure_boot_signing_pubkey.pem"
    want = keys.public_key_digest(keys.load_public_key(pub)).hex()
    ok(cli("verify-signature", "--version", "1", "--keyfile", pub, "--expect-digest", want, signed))
    other = keys.public_key_digest(keys.load_public_key(SI / "ecdsa256_secure_boot_signing_pubkey2.pem")).hex()
    assert_one_line_error(cli("verify-signature", "--version", "1", "--keyfile", pub, "--expect-digest", other, signed),
                          "not an expected key")  # fmt: skip
