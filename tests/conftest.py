"""Shared test fixtures: the reference vectors, the oracles and our CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The reference vectors ship with the repository (sources and licences: tests/vectors/README.md).
VECTORS = REPO / "tests" / "vectors"


def load_cases(*kinds: str) -> list[dict]:
    """The cases of ``cases.json`` of the given kinds (all when none given)."""
    cases = json.loads((VECTORS / "cases.json").read_text())
    return [c for c in cases if not kinds or c["kind"] in kinds]


def expected_bytes(case: dict) -> bytes:
    """A case's expected file, with its ``expected_patch`` (peer file vs reference 0.3.0) applied."""
    data = bytearray((VECTORS / case["expected"]).read_bytes())
    for patch in case.get("expected_patch", []):
        assert data[patch["offset"]] == int(patch["peer"], 16)
        data[patch["offset"]] = int(patch["oracle_0_3_0"], 16)
    return bytes(data)


def case_ids(cases: list[dict]) -> list[str]:
    return [c["id"] for c in cases]


def run_oracle(tool: str, *args: str, cwd: str | os.PathLike[str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a reference tool (esptool, espsecure, esp_idf_nvs_partition_gen) as a subprocess.

    They are GPL test oracles: tests talk to them only through their command line.
    """
    cmd = [sys.executable, "-m", tool, *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"oracle failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_cli(
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    env_extra: dict[str, str] | None = None,
    allow_published_key: bool = True,
    timeout: float | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``esp-secure`` as a separate process, as a user would (no terminal on stdin).

    The vectors sign and encrypt with published test keys (tests/vectors/, and constant
    keys), which a real release must never use: every command that refuses them gets
    ``--allow-published-key`` unless told otherwise.
    """
    argv = [str(a) for a in args]
    if allow_published_key and "--allow-published-key" not in argv:
        at = _override_position(argv)
        if at is not None:
            argv.insert(at, "--allow-published-key")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ESP_SECURE_KEY_PASSPHRASE", None)
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "esp_secure_build", *argv]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          timeout=timeout)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"esp-secure failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr}")
    return proc


# Commands that take --allow-published-key, and those of ``nvs``/``mfg`` (``nvs mfg`` too).
_KEY_COMMANDS = {"sign-data", "sign_data", "encrypt-flash-data", "encrypt_flash_data", "digest-secure-bootloader",
                 "digest_secure_bootloader"}  # fmt: skip
_NVS_KEY_SUBCOMMANDS = {"nvs": {"encrypt", "generate-key"}, "mfg": {"generate", "generate-key"}}


def _override_position(argv: list[str]) -> int | None:
    """Where --allow-published-key goes in a command line, or None when the command has no such option."""
    words = [i for i, a in enumerate(argv) if not a.startswith("-") and (i == 0 or argv[i - 1] not in ("-c", "--chip"))]
    if not words:
        return None
    command = argv[words[0]]
    if command in _KEY_COMMANDS:
        return words[0] + 1
    subs = [argv[i] for i in words[1:3]]
    if command == "nvs" and subs[:1] == ["mfg"]:
        command, words = "mfg", words[1:]
        subs = subs[1:]
    if command in _NVS_KEY_SUBCOMMANDS and subs and subs[0] in _NVS_KEY_SUBCOMMANDS[command]:
        return words[1] + 1
    return None


@pytest.fixture
def vectors() -> Path:
    return VECTORS


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """The CLI's contract for bad input: exit 2, one line on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"


# A stand-in for a remote signing service: signs the digest it is given with a key file.
SIGNER_SCRIPT = textwrap.dedent(
    """
    import sys
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
    key_path, mode = sys.argv[1], sys.argv[2]
    digest = sys.stdin.buffer.read()
    assert digest.hex() == sys.argv[3], "digest on stdin and in {digest} differ"
    key = serialization.load_pem_private_key(open(key_path, "rb").read(), None)
    algo = hashes.SHA384() if len(digest) == 48 else hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(algo))
    else:
        sig = key.sign(digest, ec.ECDSA(utils.Prehashed(algo)))
        if mode == "raw":
            size = (key.curve.key_size + 7) // 8
            r, s = utils.decode_dss_signature(sig)
            sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if mode == "fail":
        sys.stderr.write("signing service said no\\n")
        sys.exit(3)
    if mode == "hex":
        sys.stdout.write(sig.hex() + "\\n")
    else:
        sys.stdout.buffer.write(sig)
    """
)


@pytest.fixture(scope="module")
def signer_script(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("signer") / "sign.py"
    path.write_text(SIGNER_SCRIPT)
    return path


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A SoftHSM2 token in a temporary folder holding an RSA-3072 and an EC P-256 key pair.

    One per test session: python-pkcs11 loads the library once per process, and the
    library reads SOFTHSM2_CONF only then.
    """
    pkcs11 = pytest.importorskip(
        "pkcs11", reason="python-pkcs11 is not installed (pip install python-pkcs11)", exc_type=ImportError
    )
    # Only a missing Python binding skips; a missing SoftHSM2 is a broken test machine.
    if not (shutil.which("softhsm2-util") and os.path.exists(SOFTHSM_LIB)):
        pytest.fail("SoftHSM2 is not installed: apt-get install softhsm2")
    from pkcs11.util.ec import encode_named_curve_parameters

    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "esp-test", "--pin", "1234",
                    "--so-pin", "5678"], check=True, capture_output=True)  # fmt: skip
    lib = pkcs11.lib(SOFTHSM_LIB)
    token = lib.get_token(token_label="esp-test")
    slot = next(s.slot_id for s in lib.get_slots(token_present=True) if s.get_token().label == "esp-test")
    with token.open(rw=True, user_pin="1234") as session:
        session.generate_keypair(pkcs11.KeyType.RSA, 3072, label="sb-rsa", store=True)
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC, {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )
        params.generate_keypair(store=True, label="sb-ec")
    configs = {}
    for label in ("sb-rsa", "sb-ec"):
        cfg = d / f"{label}.ini"
        cfg.write_text(f"[hsm_config]\npkcs11_lib = {SOFTHSM_LIB}\nslot = {slot}\nlabel = {label}\ncredentials = 1234\n")
        configs[label] = cfg
    nopin = d / "nopin.ini"
    nopin.write_text(f"[hsm_config]\npkcs11_lib = {SOFTHSM_LIB}\nslot = {slot}\nlabel = sb-ec\n")
    configs["nopin"] = nopin
    yield configs
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


