"""Every Secure Boot case of the reference vectors, through our CLI, checked as each case says.

Kinds: digest_bootloader, sign_v1, verify, sign_v2, digest_sbv2_pubkey,
digest_private_key, extract_pubkey. Randomised V2 signatures are checked by
espsecure (``verify-signature``) and by us, and byte-for-byte outside the
signature bytes.
"""

from __future__ import annotations

import subprocess

import pytest
from conftest import VECTORS, assert_one_line_error, case_ids, load_cases, run_cli, run_oracle

from esp_secure_build.secure_boot import v2

SECTOR = 4096


cli = run_cli


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def vec(rel: str):  # type: ignore[no-untyped-def]
    return VECTORS / rel


def masked(image: bytes) -> bytes:
    """The image with each V2 block's signature and CRC zeroed: what is deterministic."""
    out = bytearray(image)
    start = len(image) - SECTOR
    for i in range(3):
        base = start + i * v2.BLOCK_SIZE
        block = image[base : base + v2.BLOCK_SIZE]
        if v2.parse_block(block) is None:
            continue
        if block[1] == v2.VERSION_RSA:
            lo, hi = 812, 1200
        elif block[2] == 1:  # SHA-384 / P-384
            lo, hi = 149, 1200
        else:
            lo, hi = 101, 1200
        out[base + lo : base + hi] = bytes(hi - lo)
    return bytes(out)


def oracle_verifies(image, key) -> bool:  # type: ignore[no-untyped-def]
    proc = run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", key, image, check=False)
    return proc.returncode == 0


def ours_verifies(image, key) -> bool:  # type: ignore[no-untyped-def]
    proc = cli("verify-signature", "--version", "2", "--keyfile", key, image)
    if proc.returncode != 0:
        assert_one_line_error(proc)
    return proc.returncode == 0


# --- digest_bootloader ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", load_cases("digest_bootloader"), ids=case_ids(load_cases("digest_bootloader")))
def test_digest_bootloader(case, tmp_path):
    i = case["inputs"]
    out = tmp_path / "digest.bin"
    ok(cli("--chip", case["options"]["chip"], "digest-secure-bootloader", "--keyfile", vec(i["keyfile"]),
           "--iv", vec(i["iv"]), "--output", out, vec(i["datafile"])))  # fmt: skip
    assert case["check"] == "byte-exact"
    assert out.read_bytes() == vec(case["expected"]).read_bytes()


# --- sign_v1 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", load_cases("sign_v1"), ids=case_ids(load_cases("sign_v1")))
def test_sign_v1(case, tmp_path):
    i = case["inputs"]
    out = tmp_path / "signed.bin"
    if "keyfile" in i:
        ok(cli("sign-data", "--version", "1", "--keyfile", vec(i["keyfile"]), "--output", out, vec(i["datafile"])))
    else:
        ok(cli("sign-data", "--version", "1", "--pub-key", vec(i["pub_key"]), "--signature", vec(i["signature"]),
               "--output", out, vec(i["datafile"])))  # fmt: skip
    assert case["check"] == "byte-exact"
    assert out.read_bytes() == vec(case["expected"]).read_bytes()


# --- verify -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", load_cases("verify"), ids=case_ids(load_cases("verify")))
def test_verify(case):
    i = case["inputs"]
    proc = cli("verify-signature", "--version", str(case["options"]["version"]), "--keyfile", vec(i["keyfile"]),
               vec(i["datafile"]))  # fmt: skip
    if case["expected"]["valid"]:
        ok(proc)
        assert "Signature is valid." in proc.stdout
    else:
        needles = case["expected"].get("error_contains", [])
        assert_one_line_error(proc, *([needles] if isinstance(needles, str) else needles))


# --- sign_v2 ----------------------------------------------------------------------------------------------

SIGN_V2 = load_cases("sign_v2")


@pytest.mark.parametrize("case", SIGN_V2, ids=case_ids(SIGN_V2))
def test_sign_v2(case, tmp_path):
    i, opts, expected = case["inputs"], case["options"], case["expected"]
    out = tmp_path / "signed.bin"
    # Same order as the oracle commands: a list option ends where the next option starts.
    args = ["sign-data", "--version", "2"]
    if opts.get("append_signatures"):
        args.append("--append-signatures")
    if "keyfiles" in i:
        args += ["--keyfile", *map(str, map(vec, i["keyfiles"]))]
    elif "keyfile" in i:
        args += ["--keyfile", str(vec(i["keyfile"]))]
    else:
        args += ["--pub-key", str(vec(i["pub_key"])), "--signature", str(vec(i["signature"]))]
    ok(cli(*args, "--output", out, vec(i["datafile"])))
    signed = out.read_bytes()

    if case["check"] == "byte-exact":  # pre-calculated signature: deterministic
        assert signed == vec(expected).read_bytes()
        assert oracle_verifies(out, vec(case["verify_with"]))
        return
    if "random_byte_range" in opts:  # one fresh signature: equal outside the random bytes
        ref = vec(expected).read_bytes()
        lo, hi = opts["random_byte_range"]
        assert len(signed) == len(ref)
        assert signed[:lo] == ref[:lo] and signed[hi:] == ref[hi:]
        assert oracle_verifies(out, vec(i["keyfile"]))
        assert ours_verifies(out, vec(i["keyfile"]))
        if opts["scheme"] != "rsa":  # RFC 6979: a second run gives the same bytes
            again = tmp_path / "again.bin"
            ok(cli("sign-data", "--version", "2", "--keyfile", vec(i["keyfile"]), "--output", again,
                   vec(i["datafile"])))  # fmt: skip
            assert again.read_bytes() == signed
        return
    # Several keys, or appended signatures.
    if "reference" in expected:
        assert masked(signed) == masked(vec(expected["reference"]).read_bytes())
    if "unchanged_prefix_from_input" in expected:
        n = expected["unchanged_prefix_from_input"]
        assert signed[:n] == vec(i["datafile"]).read_bytes()[:n]
    assert len(v2.leading_blocks(signed[-SECTOR:])) == 3
    for key in expected["verify_ok_with"]:
        assert oracle_verifies(out, vec(key)), key
        assert ours_verifies(out, vec(key)), key
    for key in expected["verify_fail_with"]:
        assert not oracle_verifies(out, vec(key)), key
        assert not ours_verifies(out, vec(key)), key


# --- key digests and public keys ----------------------------------------------------------------------


@pytest.mark.parametrize("case", load_cases("digest_sbv2_pubkey"), ids=case_ids(load_cases("digest_sbv2_pubkey")))
@pytest.mark.parametrize("command", ["digest-sbv2-public-key", "digest-rsa-public-key"])
def test_digest_sbv2_pubkey(case, command, tmp_path):
    out = tmp_path / "digest.bin"
    ok(cli(command, "--keyfile", vec(case["inputs"]["keyfile"]), "--output", out))
    assert out.read_bytes() == vec(case["expected"]).read_bytes()


@pytest.mark.parametrize("case", load_cases("digest_private_key"), ids=case_ids(load_cases("digest_private_key")))
def test_digest_private_key(case, tmp_path):
    out = tmp_path / "digest.bin"
    ok(cli("digest-private-key", "--keyfile", vec(case["inputs"]["keyfile"]), out))
    assert out.read_bytes() == bytes.fromhex(case["expected"]["hex"])
    assert (out.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("case", load_cases("extract_pubkey"), ids=case_ids(load_cases("extract_pubkey")))
def test_extract_pubkey(case, tmp_path):
    out = tmp_path / "pub"
    ok(cli("extract-public-key", "--version", str(case["options"]["version"]), "--keyfile",
           vec(case["inputs"]["keyfile"]), out))  # fmt: skip
    assert out.read_bytes() == vec(case["expected"]).read_bytes()


@pytest.mark.parametrize("name", ["bootloader_multi_signed_v2_rsa.bin", "bootloader_multi_signed_v2_ecdsa192.bin",
                                  "bootloader_multi_signed_v2_ecdsa384.bin", "bootloader_signed_v2_ecdsa256.bin"])
def test_signature_info_v2_matches_espsecure(name):
    """Our signature-info-v2 prints the same per-block key digest lines as espsecure's."""
    image = vec(f"esptool/secure_images/{name}")
    theirs = [ln for ln in run_oracle("espsecure", "signature-info-v2", image).stdout.splitlines()
              if ln.startswith("Public key digest for block")]  # fmt: skip
    ours = [ln for ln in ok(cli("signature-info-v2", image)).stdout.splitlines()
            if ln.startswith("Public key digest for block")]  # fmt: skip
    assert ours == theirs and ours
