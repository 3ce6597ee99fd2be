"""Signers other than a local key file: an external command and a PKCS#11 token (SoftHSM2).

Every image signed here is checked by espsecure's ``verify-signature``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import VECTORS, assert_one_line_error, run_cli, run_oracle

from esp_secure_build.errors import EspSecureError
from esp_secure_build.secure_boot import keys, v1, v2
from esp_secure_build.secure_boot.signers import CommandSigner, LocalKeySigner, PrecomputedSigner

SI = VECTORS / "esptool" / "secure_images"
UNSIGNED = SI / "bootloader_unsigned_v2.bin"


cli = run_cli


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.mark.parametrize(("key", "mode"), [("rsa", "bin"), ("ecdsa256", "hex"), ("ecdsa384", "raw"), ("ecdsa192", "bin")])
def test_external_command_signer(key, mode, signer_script, tmp_path):
    keyfile = SI / f"{key}_secure_boot_signing_key.pem"
    pub = tmp_path / "pub.pem"
    ok(cli("extract-public-key", "--version", "2", "--keyfile", keyfile, pub))
    out = tmp_path / "signed.bin"
    command = f"{sys.executable} {signer_script} {keyfile} {mode} {{digest}}"
    ok(cli("sign-data", "--version", "2", "--pub-key", pub, "--signer-command", command, "--output", out, UNSIGNED))
    run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", pub, out)


def test_external_command_failures(signer_script, tmp_path):
    keyfile = SI / "ecdsa256_secure_boot_signing_key.pem"
    wrong = SI / "ecdsa256_secure_boot_signing_key2.pem"
    out = tmp_path / "signed.bin"
    base = ["sign-data", "--version", "2", "--pub-key", keyfile, "--output", out]
    fail = f"{sys.executable} {signer_script} {keyfile} fail {{digest}}"
    assert_one_line_error(cli(*base, "--signer-command", fail, UNSIGNED), "exit status 3", "signing service said no")
    other = f"{sys.executable} {signer_script} {wrong} bin {{digest}}"
    assert_one_line_error(cli(*base, "--signer-command", other, UNSIGNED), "does not verify")
    assert_one_line_error(cli(*base, "--signer-command", "/nonexistent/signer", UNSIGNED), "not found")
    assert not out.exists()


def test_command_signer_v1_in_process(signer_script):
    """The same protocol serves Secure Boot V1: RFC 6979 makes it equal espsecure's bytes."""
    pub = keys.load_public_key(SI / "ecdsa256_secure_boot_signing_key.pem")
    data = (SI / "bootloader.bin").read_bytes()
    # A signer that returns what LocalKeySigner (RFC 6979) returns gives the peer's bytes.
    local = LocalKeySigner.from_file(SI / "ecdsa256_secure_boot_signing_key.pem")
    assert v1.sign(data, local) == (SI / "bootloader_signed.bin").read_bytes()
    signer = CommandSigner([sys.executable, str(signer_script), str(SI / "ecdsa256_secure_boot_signing_key.pem"),
                            "raw", "{digest}"], pub)  # fmt: skip
    v1.verify(v1.sign(data, signer), pub)


def test_precomputed_signature_for_other_data_refused():
    pub = keys.load_public_key(SI / "ecdsa256_secure_boot_signing_pubkey.pem")
    sig = (SI / "pre_calculated_bootloader_signature_ecdsa256.bin").read_bytes()
    signer = PrecomputedSigner(pub, sig, "sig.bin")
    with pytest.raises(EspSecureError, match="does not verify"):
        v2.sign(UNSIGNED.read_bytes()[:-4096] + b"\xff" * 4096 + b"\0" * 4096, [signer])
    with pytest.raises(EspSecureError, match="4096-byte aligned"):
        v2.sign(UNSIGNED.read_bytes()[:100], [signer])


# --- PKCS#11 with SoftHSM2 ---------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "scheme"), [("sb-rsa", "rsa3072"), ("sb-ec", "ecdsa256")])
def test_hsm_sign_verified_by_espsecure(softhsm, label, scheme, tmp_path):
    cfg = softhsm[label]
    out = tmp_path / "signed.bin"
    ok(cli("sign-data", "--version", "2", "--hsm", "--hsm-config", cfg, "--output", out, UNSIGNED))
    blocks = v2.signature_info(out.read_bytes())
    assert [b.scheme for b in blocks] == [scheme]
    # espsecure reads the public key from the token itself and verifies our block.
    run_oracle("espsecure", "verify-signature", "--version", "2", "--hsm", "--hsm-config", cfg, out)
    ok(cli("verify-signature", "--version", "2", "--hsm", "--hsm-config", cfg, out))
    # And the other way: espsecure signs on the token, we verify with the token's key.
    theirs = tmp_path / "theirs.bin"
    run_oracle("espsecure", "sign-data", "--version", "2", "--hsm", "--hsm-config", cfg, "--output", theirs, UNSIGNED)
    ok(cli("verify-signature", "--version", "2", "--hsm", "--hsm-config", cfg, theirs))
    # Both tools read the same public key off the token.
    assert blocks[0].key_digest == v2.signature_info(theirs.read_bytes())[0].key_digest


def test_hsm_errors(softhsm, tmp_path):
    out = tmp_path / "o.bin"
    proc = cli("sign-data", "--version", "2", "--hsm", "--hsm-config", softhsm["nopin"], "--output", out, UNSIGNED)
    assert_one_line_error(proc, "credentials", "ESP_SECURE_HSM_PIN")
    ok(cli("sign-data", "--version", "2", "--hsm", "--hsm-config", softhsm["nopin"], "--output", out, UNSIGNED,
           env_extra={"ESP_SECURE_HSM_PIN": "1234"}))  # fmt: skip
    bad = tmp_path / "bad.ini"
    bad.write_text(softhsm["sb-ec"].read_text().replace("sb-ec", "no-such-key"))
    assert_one_line_error(cli("sign-data", "--version", "2", "--hsm", "--hsm-config", bad, "--output",
                              tmp_path / "x.bin", UNSIGNED), "no-such-key")  # fmt: skip
    assert_one_line_error(cli("sign-data", "--version", "1", "--hsm", "--hsm-config", bad, "--output",
                              tmp_path / "x.bin", SI / "bootloader.bin"), "V1")  # fmt: skip
    assert not (tmp_path / "x.bin").exists()


def test_hsm_signers_in_parallel_threads(softhsm) -> None:  # type: ignore[no-untyped-def]
    """scons -j (PlatformIO always builds in parallel) signs from several threads of one process.

    PKCS#11 login is per application: two sessions logging in at once fail (CKR_USER_ALREADY_LOGGED_IN).
    """
    import hashlib
    import threading

    from esp_secure_build.secure_boot.signers import Pkcs11Signer, verify_digest

    errors: list[str] = []
    digest = hashlib.sha256(b"parallel").digest()

    def work(label: str) -> None:
        signer = Pkcs11Signer.from_config_file(softhsm[label])
        try:
            for _ in range(6):
                if not verify_digest(signer.public_key(), digest, signer.sign_digest(digest)):
                    errors.append(f"{label}: signature does not verify")
        except Exception as exc:  # the test reports every failure, of any kind
            errors.append(f"{label}: {exc}")

    threads = [threading.Thread(target=work, args=(label,)) for label in ("sb-rsa", "sb-ec") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
