"""A corpus of hostile inputs through every CLI command and every SCons builder.

Each case feeds one bad thing (an empty, truncated, random, wrong-kind or wrongly
encoded file, a directory, a FIFO, ``/dev/zero``, a missing or oddly named path, an
absurd size, address or count) to a command that is otherwise given good inputs, and
asserts the contract for bad input: exit 2, exactly one line on stderr naming the bad
file (or value) and no traceback, no output written, every input unchanged, and an
answer within a time limit (a FIFO must not hang the tool). The processes run with
a 2 GiB address-space limit, so an input that makes the tool allocate without bound
fails its case instead of the test machine. ``test_good_inputs_pass`` runs every
command line once with good inputs, so each case fails for its bad input only.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import resource
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from helpers.elfgen import Sec, write_elf
from sconsutil import TOOL_HEADER

from esp_secure_build import descriptors, image
from esp_secure_build.chips import get_chip
from esp_secure_build.elf import EM_RISCV, read_elf
from esp_secure_build.nvs import crypto as nvs_crypto
from esp_secure_build.nvs.csvfile import read_nvs_csv
from esp_secure_build.nvs.generate import NvsBuilder
from esp_secure_build.partition_table import csv_to_binary
from esp_secure_build.secure_boot import signers, v2

TIMEOUT = 8  # seconds; a case that takes longer hangs (a good run takes well under 1 s)
MEMORY_LIMIT = 2 << 30

# --------------------------------------------------------------------------- good inputs

NVS_CSV = "key,type,encoding,value\nconfig,namespace,,\nname,data,string,corpus\nn,data,u8,7\nblob,file,binary,blob.bin\n"
PARTITIONS = """\
nvs,      data, nvs,      0x9000,  0x5000,
nvs_keys, data, nvs_keys, 0xE000,  0x1000, encrypted
factory,  app,  factory,  0x10000, 0x100000,
"""
MFG_CONFIG = "ns,namespace,\nserial,data,string\nrev,data,u8\n"
MFG_VALUES = "serial,rev\nSN1,1\nSN2,2\n"


def _ca_pem() -> tuple[bytes, bytes]:
    """A self-signed CA (P-256) and a leaf it signed, as PEM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    out = []
    key = ec.generate_private_key(ec.SECP256R1())
    for name, ca in (("Corpus Root", True), ("corpus.example", False)):
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corpus Root")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365 * 30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        out.append(cert.public_bytes(serialization.Encoding.PEM))
    return out[0], out[1]


def _bootloader_elf() -> bytes:
    return write_elf(
        [Sec(".iram0.text", 0x403CE000, b"\x13\x00\x00\x00" * 64), Sec(".dram0.data", 0x3FCD5000, b"boot" * 16)],
        EM_RISCV,
        0x403CE000,
    )


def _elf() -> bytes:
    appdesc = descriptors.build_app_desc("corpus", "1.0", 0, "v5.3", 1764115200)
    return write_elf(
        [
            Sec(".flash.appdesc", 0x3C000020, appdesc),
            Sec(".flash.rodata", 0x3C000120, bytes(range(200))),
            Sec(".iram0.text", 0x40380000, b"\x13\x00\x00\x00" * 20),
            Sec(".dram0.data", 0x3FC80000, b"data" * 9),
            Sec(".flash.text", 0x42000020, b"\x13\x00\x00\x00" * 30),
        ],
        EM_RISCV,
        0x40380000,
    )


class Good:
    """Paths of the good inputs (made once per module, checked unchanged after every case)."""

    def __init__(self, folder: Path):
        self.folder = folder
        key = ec.generate_private_key(ec.SECP256R1())
        ca, leaf = _ca_pem()
        elf = _elf()
        app = image.elf_to_image(read_elf("app.elf", elf), get_chip("esp32c3"))
        signed = v2.sign(app, [signers.LocalKeySigner(key, "sk")])
        app_padded = image.elf_to_image(
            read_elf("app.elf", elf), get_chip("esp32c3"), image.ImageOptions(secure_pad_v2=True)
        )
        boot = image.elf_to_image(read_elf("boot.elf", _bootloader_elf()), get_chip("esp32c3"))
        rsa_key = rsa.generate_private_key(65537, 3072)  # the ESP32-C3 signs with RSA only
        nvs_keys = nvs_crypto.NvsKeys(os.urandom(32), os.urandom(32))
        (folder / "blob.bin").write_bytes(b"blob" * 10)
        builder = NvsBuilder(0x3000, 2, folder)
        nvs_csv = NVS_CSV.replace("blob.bin", str(folder / "blob.bin"))
        builder.add_rows(read_nvs_csv("nvs.csv", nvs_csv))
        files: dict[str, bytes] = {
            "app.elf": elf,
            "app.bin": app,
            "signed.bin": signed,
            "padded.bin": signed[:-4096],
            "sk.pem": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "sk_rsa.pem": rsa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "boot.bin": boot,
            "app_sp.bin": app_padded,
            "pub.pem": key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "flash_key.bin": os.urandom(32),
            "v1_key.bin": os.urandom(32),
            "hmac_key.bin": os.urandom(32),
            "nvs.csv": nvs_csv.encode(),
            "nvs_keys.bin": nvs_keys.partition(),
            "nvs_enc.bin": builder.finish(nvs_keys),
            "partitions.csv": PARTITIONS.encode(),
            "partitions.bin": csv_to_binary(PARTITIONS, env={})[0],
            "ca.pem": ca,
            "leaf.pem": leaf,
            "config.csv": MFG_CONFIG.encode(),
            "values.csv": MFG_VALUES.encode(),
            "filter.csv": b"name,cert\nx,Corpus Root\n",
        }
        for name, data in files.items():
            (folder / name).write_bytes(data)
            if name.endswith(("key.bin", ".pem", "keys.bin")) and name.startswith(("sk", "flash", "v1", "hmac", "nvs")):
                (folder / name).chmod(0o600)

    def __getattr__(self, name: str) -> str:
        return str(self.folder / name.replace("_dot_", "."))

    def copy_to(self, folder: Path) -> Good:
        """The good inputs copied (modes kept) into ``folder``: a case that overwrites one harms no other."""
        folder.mkdir()
        for path in self.folder.iterdir():
            shutil.copy2(path, folder / path.name)
        copy = object.__new__(Good)
        copy.folder = folder
        return copy


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Mode and content digest of everything under ``folder`` (FIFOs are not opened)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_size > 16 << 20:  # the sparse absurd-size inputs
            digest = f"{st.st_size} bytes, modified {st.st_mtime_ns}"
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            digest = "-> " + os.readlink(path)
        else:
            digest = stat.filemode(st.st_mode)[0]
        out[str(path.relative_to(folder))] = (st.st_mode, digest)
    return out


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Good:
    return Good(tmp_path_factory.mktemp("good"))


# --------------------------------------------------------------------------- bad inputs

# A bad input: name -> function making it at a path (returns the path to pass, which may differ).
Maker = Callable[[Path, Good], str]


def _bytes(data: bytes | Callable[[Good], bytes]) -> Maker:
    def make(path: Path, good: Good) -> str:
        path.write_bytes(data(good) if callable(data) else data)
        return str(path)

    return make


def _truncated(source: str, keep: float = 0.5) -> Maker:
    def cut(good: Good) -> bytes:
        data = Path(getattr(good, source)).read_bytes()
        return data[: int(len(data) * keep)]

    return _bytes(cut)


def _copy(source: str) -> Maker:
    return _bytes(lambda g: Path(getattr(g, source)).read_bytes())


def _directory(path: Path, good: Good) -> str:
    path.mkdir()
    return str(path)


def _fifo(path: Path, good: Good) -> str:
    os.mkfifo(path)
    return str(path)


def _missing(path: Path, good: Good) -> str:
    return str(path)


def _dev_zero(path: Path, good: Good) -> str:
    return "/dev/zero"


def _sparse(size: int) -> Maker:
    def make(path: Path, good: Good) -> str:
        with open(path, "wb") as fh:
            fh.truncate(size)
        return str(path)

    return make


def _odd_name(inner: Maker, name: str) -> Maker:
    def make(path: Path, good: Good) -> str:
        return inner(path.with_name(name), good)

    return make


KINDS: dict[str, Maker] = {
    "empty": _bytes(b""),
    "random": _bytes(random.Random(12).randbytes(777)),
    "text": _bytes(b"this is not what you expected\n"),
    "nul": _bytes(bytes(4096)),
    "directory": _directory,
    "fifo": _fifo,
    "missing": _missing,
    "dev-zero": _dev_zero,
    "sparse-150M": _sparse(150 << 20),  # beyond the largest flash (128 MiB)
    "odd-name": _odd_name(_bytes(b"\xff\xfe junk"), "sp ace ké\N{SNOWMAN} -x.bin"),
    # wrong kinds and encodings
    "elf": _copy("app_dot_elf"),
    "signed": _copy("signed_dot_bin"),
    "image": _copy("app_dot_bin"),
    "cert": _copy("ca_dot_pem"),
    "leaf-cert": _copy("leaf_dot_pem"),
    "public-key": _copy("pub_dot_pem"),
    "private-key": _copy("sk_dot_pem"),
    "truncated-elf": _truncated("app_dot_elf"),
    "truncated-image": _truncated("app_dot_bin"),
    "truncated-signed": _truncated("signed_dot_bin", 0.9),
    "truncated-pem": _truncated("ca_dot_pem"),
    "truncated-key": _truncated("sk_dot_pem"),
    "truncated-table": _truncated("partitions_dot_bin", 0.03),
    "truncated-nvs": _truncated("nvs_enc_dot_bin"),
    "31-byte-key": _bytes(random.Random(31).randbytes(31)),
    "zero-key": _bytes(bytes(32)),
    "ff-key": _bytes(b"\xff" * 32),
    "nvs-zero-keys": _bytes(nvs_crypto.NvsKeys(bytes(32), b"\xff" * 32).partition()),
    "latin1-csv": _bytes("key,type,encoding,value\nns,namespace,,\nx,data,string,caf\xe9\n".encode("latin-1")),
    "utf16-csv": _bytes(NVS_CSV.encode("utf-16")),
    "bad-row-csv": _bytes(b"key,type,encoding,value\nns,namespace,,\nx,data,u8,300\n"),
    "bad-header-csv": _bytes(b"name,kind,value\nx,y,z\n"),
    "bad-table-csv": _bytes(b"nvs, data, nvs, 0x9000, banana,\n"),
    "huge-table-csv": _bytes(b"big, data, fat, 0x10000, 0x100000000,\n"),
    "bad-config-csv": _bytes(b"ns,namespace,\nx,data,float\n"),
    "bad-values-csv": _bytes(b"serial,rev\nSN1,1,extra\n"),
    "bad-ini": _bytes(b"[hsm_config\npkcs11_lib = \n"),
    "ini-no-lib": _bytes(b"[hsm_config]\npkcs11_lib = /nonexistent/lib.so\nslot = 0\nlabel = k\n"),
}

BINARY = ["empty", "random", "text", "nul", "directory", "fifo", "missing", "dev-zero", "odd-name"]
DATA = ["directory", "fifo", "missing", "dev-zero"]  # where any bytes are valid input
KEY = ["empty", "random", "text", "directory", "fifo", "missing", "dev-zero", "sparse-150M", "cert"]
PEM_KEY = [*KEY, "truncated-key", "public-key"]
CSV = ["empty", "random", "directory", "fifo", "missing", "dev-zero", "latin1-csv"]

# --------------------------------------------------------------------------- CLI cases

# (id, command line with {bad}, {out} and good files as {g.NAME}, kinds of {bad})
CLI_SLOTS: list[tuple[str, str, list[str]]] = [
    ("elf2image", "--chip esp32c3 elf2image -o {out} {bad}", [*BINARY, "image", "truncated-elf"]),
    ("image-info", "image-info {bad}", [*BINARY, "elf", "truncated-image"]),
    ("verify-release", "verify-release {bad}", ["empty", "random", "directory", "fifo", "missing", "dev-zero"]),
    ("merge-bin", "--chip esp32c3 merge-bin -o {out} 0x0 {g.app_dot_bin} 0x100000 {bad}", DATA),
    ("sign-data-key", "sign-data --version 2 --keyfile {bad} -o {out} {g.app_dot_bin}", PEM_KEY),
    ("sign-data-data", "sign-data --version 2 --keyfile {g.sk_dot_pem} -o {out} {bad}", [*DATA, "empty", "signed"]),
    ("sign-data-hsm", "sign-data --version 2 --hsm --hsm-config {bad} -o {out} {g.app_dot_bin}",
     [*CSV, "bad-ini", "ini-no-lib"]),
    ("sign-data-sig", "sign-data --version 2 --pub-key {g.pub_dot_pem} --signature {bad} -o {out} {g.padded_dot_bin}",
     ["empty", "random", "directory", "fifo", "missing", "dev-zero"]),
    ("verify-key", "verify-signature --version 2 --keyfile {bad} {g.signed_dot_bin}", KEY),
    ("verify-data", "verify-signature --version 2 --keyfile {g.pub_dot_pem} {bad}",
     [*BINARY, "image", "truncated-signed"]),
    ("signature-info", "signature-info-v2 {bad}", [*BINARY, "image", "truncated-signed"]),
    ("digest-bootloader-key", "digest-secure-bootloader --keyfile {bad} --output {out} {g.app_dot_bin}",
     [*KEY, "31-byte-key"]),
    ("digest-bootloader-image", "digest-secure-bootloader --keyfile {g.v1_key_dot_bin} --output {out} {bad}",
     [*BINARY, "truncated-image"]),
    ("extract-public-key", "extract-public-key --version 2 --keyfile {bad} {out}", PEM_KEY[:-1]),
    ("digest-sbv2-public-key", "digest-sbv2-public-key --keyfile {bad} --output {out}", KEY),
    ("digest-private-key", "digest-private-key --keyfile {bad} {out}", [*KEY, "truncated-key", "public-key"]),
    ("encrypt-key", "--chip esp32c3 encrypt-flash-data -x -k {bad} -a 0x10000 -o {out} {g.app_dot_bin}",
     [*KEY, "31-byte-key", "zero-key", "ff-key"]),
    ("encrypt-data", "--chip esp32c3 encrypt-flash-data -x -k {g.flash_key_dot_bin} -a 0x10000 -o {out} {bad}",
     [*DATA, "empty"]),
    ("decrypt-key", "--chip esp32 decrypt-flash-data -k {bad} -a 0x10000 -o {out} {g.app_dot_bin}",
     [*KEY, "31-byte-key"]),  # decrypting with a weak key harms nobody: accepted
    ("decrypt-data", "--chip esp32c3 decrypt-flash-data -x -k {g.flash_key_dot_bin} -a 0x10000 -o {out} {bad}",
     [*DATA, "empty"]),
    ("partition-table", "partition-table {bad} {out}",
     ["random", "directory", "fifo", "missing", "dev-zero", "latin1-csv", "bad-table-csv", "huge-table-csv",
      "truncated-table", "image"]),
    ("nvs-generate", "nvs generate {bad} {out} 0x3000", [*CSV, "bad-row-csv", "bad-header-csv", "nul"]),
    ("nvs-encrypt-key", "nvs encrypt {g.nvs_dot_csv} {out} 0x3000 --inputkey {bad}",
     [*KEY, "truncated-nvs", "nvs-zero-keys"]),
    ("nvs-encrypt-hmac", "nvs encrypt --keygen --key-protect-hmac --kp-hmac-inputkey {bad} --outdir outdir {g.nvs_dot_csv} {out} 0x3000",
     [*KEY, "31-byte-key", "zero-key"]),
    ("nvs-decrypt-data", "nvs decrypt {bad} {g.nvs_keys_dot_bin} {out}",
     [*[k for k in BINARY if k != "nul"], "truncated-nvs"]),
    ("nvs-decrypt-key", "nvs decrypt {g.nvs_enc_dot_bin} {bad} {out}", [*KEY, "truncated-nvs"]),
    ("mfg-config", "mfg generate {bad} {g.values_dot_csv} dev 0x3000 --outdir {outdir}", [*CSV, "bad-config-csv"]),
    ("mfg-values", "mfg generate {g.config_dot_csv} {bad} dev 0x3000 --outdir {outdir}", [*CSV, "bad-values-csv"]),
    ("mfg-inputkey", "mfg generate {g.config_dot_csv} {g.values_dot_csv} dev 0x3000 --outdir {outdir} --inputkey {bad}",
     [*KEY, "nvs-zero-keys"]),
    ("check-cert", "check-cert {bad}", [*BINARY, "truncated-pem", "private-key", "leaf-cert"]),
    ("check-cert-out", "check-cert -o {out} {bad}", ["empty", "truncated-pem", "leaf-cert"]),
    ("crt-bundle", "crt-bundle -i {bad} -o {out}", [*BINARY, "truncated-pem", "private-key"]),
    ("crt-bundle-filter", "crt-bundle -i {g.ca_dot_pem} -f {bad} -o {out}", CSV),
]  # fmt: skip

# Bad values rather than bad files: (id, command line, text the error must contain).
CLI_VALUES: list[tuple[str, str, str]] = [
    ("elf2image-pad-0", "--chip esp32c3 elf2image --pad-to-size 0 -o {out} {g.app_dot_elf}", "pad"),
    ("elf2image-pad-huge", "--chip esp32c3 elf2image --pad-to-size 0x100000000 -o {out} {g.app_dot_elf}", "pad"),
    ("merge-bin-top", "--chip esp32c3 merge-bin -o {out} 0xFFFFF000 {g.app_dot_bin}", "0xfffff000"),
    ("merge-bin-1T", "--chip esp32c3 merge-bin -o {out} 0x10000000000 {g.app_dot_bin}", "0x10000000000"),
    ("merge-bin-negative", "--chip esp32c3 merge-bin -o {out} -0x1000 {g.app_dot_bin}", "0x1000"),
    ("nvs-size-4G", "nvs generate {g.nvs_dot_csv} {out} 0x100000000", "0x100000000"),
    ("nvs-size-1T", "nvs generate {g.nvs_dot_csv} {out} 0x10000000000", "0x10000000000"),
    ("nvs-size-0", "nvs generate {g.nvs_dot_csv} {out} 0", "size"),
    ("nvs-size-odd", "nvs generate {g.nvs_dot_csv} {out} 4097", "0x1001"),
    ("nvs-size-word", "nvs generate {g.nvs_dot_csv} {out} big", "big"),
    ("mfg-size-4G", "mfg generate {g.config_dot_csv} {g.values_dot_csv} dev 0x100000000 --outdir {outdir}",
     "0x100000000"),
    ("mfg-jobs-0", "mfg generate {g.config_dot_csv} {g.values_dot_csv} dev 0x3000 --outdir {outdir} -j 0", "-j"),
    ("mfg-fileid", "mfg generate {g.config_dot_csv} {g.values_dot_csv} dev 0x3000 --outdir {outdir} --fileid nope",
     "nope"),
    ("horizon-huge", "check-cert --horizon-years 1000000 {g.ca_dot_pem}", "1000000"),
    ("horizon-nan", "check-cert --horizon-years nan {g.ca_dot_pem}", "nan"),
    ("horizon-negative", "check-cert --horizon-years -3 {g.ca_dot_pem}", "-3"),
    ("bundle-horizon-huge", "crt-bundle --horizon-years 1e6 -i {g.ca_dot_pem} -o {out}", "1e6"),
    ("bundle-max-certs-0", "crt-bundle -m 0 -i {g.ca_dot_pem} -o {out}", "0"),
    ("table-offset-4G", "partition-table --offset 0x100000000 {g.partitions_dot_csv} {out}", "0x100000000"),
    ("encrypt-address-4G", "--chip esp32c3 encrypt-flash-data -x -k {g.flash_key_dot_bin} -a 0x100000000 -o {out} "
     "{g.app_dot_bin}", "0x100000000"),
    ("encrypt-address-odd", "--chip esp32c3 encrypt-flash-data -x -k {g.flash_key_dot_bin} -a 0x10001 -o {out} "
     "{g.app_dot_bin}", "0x10001"),
    ("digest-keylen", "digest-private-key --keylen 7 --keyfile {g.sk_dot_pem} {out}", "7"),
    ("expect-digest-hex", "verify-signature --version 2 --expect-digest zz {g.signed_dot_bin}", "zz"),
    ("fetch-ca-port", "fetch-ca -o {out} localhost:99999", "99999"),
    ("fetch-ca-refused", "fetch-ca -o {out} --timeout 3 127.0.0.1:9", "127.0.0.1"),
    ("fetch-ca-host", "fetch-ca -o {out} [::1", "::1"),
    # an output that would replace an input or a key
    ("elf2image-over-input", "--chip esp32c3 elf2image -o {g.app_dot_elf} {g.app_dot_elf}", "app.elf"),
    ("table-over-input", "partition-table {g.partitions_dot_csv} {g.partitions_dot_csv}", "partitions.csv"),
    ("merge-over-input", "--chip esp32c3 merge-bin -o {g.app_dot_bin} 0x0 {g.app_dot_bin}", "app.bin"),
    ("nvs-over-key", "nvs encrypt {g.nvs_dot_csv} {g.nvs_keys_dot_bin} 0x3000 --inputkey {g.nvs_keys_dot_bin}",
     "nvs_keys.bin"),
    ("nvs-over-csv", "nvs generate {g.nvs_dot_csv} {g.nvs_dot_csv} 0x3000", "nvs.csv"),
    ("flash-key-over-key", "generate-flash-encryption-key {g.sk_dot_pem}", "sk.pem"),
    ("signing-key-over-key", "generate-signing-key --version 2 --scheme ecdsa256 {g.flash_key_dot_bin}",
     "flash_key.bin"),
    ("nvs-keygen-over-key", "nvs generate-key --keyfile {g.flash_key_dot_bin}", "flash_key.bin"),
    ("sign-over-key", "sign-data --version 2 --keyfile {g.sk_dot_pem} -o {g.sk_dot_pem} {g.app_dot_bin}", "sk.pem"),
    ("out-in-missing-dir", "--chip esp32c3 elf2image -o nodir/sub/out.bin {g.app_dot_elf}", "out.bin"),
    ("out-is-directory", "partition-table {g.partitions_dot_csv} .", "."),
]  # fmt: skip

CLI_CASES = [(f"{slot}-{kind}", cmd, kind, None) for slot, cmd, kinds in CLI_SLOTS for kind in kinds] + [
    (case_id, cmd, None, needle) for case_id, cmd, needle in CLI_VALUES
]


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run with a memory and a time limit; a timeout fails the case as a hang."""
    run_env = dict(os.environ if env is None else env)
    run_env["PYTHONPATH"] = str(REPO) + os.pathsep + run_env.get("PYTHONPATH", "")
    run_env.pop("ESP_SECURE_KEY_PASSPHRASE", None)
    try:
        return subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, env=run_env, stdin=subprocess.DEVNULL,
            timeout=TIMEOUT, preexec_fn=_limits,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"no answer within {TIMEOUT} s (hangs): {' '.join(argv)}")


def assert_refused(proc: subprocess.CompletedProcess, needle: str, what: str) -> str:
    """Exit 2, one stderr line naming ``needle``, no traceback anywhere."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "MemoryError" not in out, f"{what}: traceback\n{proc.stderr[-3000:]}"
    assert proc.returncode == 2, f"{what}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    # Warnings about something else (e.g. an assumption the build was told to make) may precede the error.
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("esp-secure: WARNING: ")]
    if lines and lines[0].startswith("usage: ") and ": error: " in lines[-1]:
        lines = lines[-1:]  # argparse's usage block, then its one error line
    assert len(lines) == 1, f"{what}: {len(lines)} lines on stderr\n{proc.stderr[-3000:]}"
    assert needle in lines[0], f"{what}: error line does not name {needle!r}: {lines[0]}"
    return lines[0]


def _cli_argv(cmd: str, good: Good, bad: str) -> list[str]:
    import shlex

    text = cmd.format(g=good, out="out.bin", outdir="outdir", bad="\0BAD\0")
    return [bad if arg == "\0BAD\0" else arg for arg in shlex.split(text)]


@pytest.mark.parametrize("case_id,cmd,kind,needle", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli(tmp_path: Path, good: Good, case_id: str, cmd: str, kind: str | None, needle: str | None) -> None:
    work = tmp_path / "work"
    inputs = good.copy_to(work)
    bad = KINDS[kind](work / f"bad-{kind}.in", good) if kind else ""
    if kind:
        needle = Path(bad).name if bad != "/dev/zero" else bad
    before = snapshot(work)
    argv = [sys.executable, "-m", "esp_secure_build", *_cli_argv(cmd, inputs, bad)]
    proc = run_limited(argv, work)
    assert needle is not None
    assert_refused(proc, needle, case_id)
    assert snapshot(work) == before, f"{case_id}: the work folder changed (output written or an input changed)"


GOOD_RUNS = sorted({(slot, cmd) for slot, cmd, _ in CLI_SLOTS})


@pytest.mark.parametrize("slot,cmd", GOOD_RUNS, ids=[s for s, _ in GOOD_RUNS])
def test_good_inputs_pass(tmp_path: Path, good: Good, slot: str, cmd: str) -> None:
    """Each command line succeeds with its good input in place of the bad one."""
    goods = {
        "elf2image": "app.elf", "image-info": "app.bin", "merge-bin": "app.bin", "sign-data-key": "sk.pem",
        "sign-data-data": "app.bin", "verify-key": "pub.pem", "verify-data": "signed.bin",
        "signature-info": "signed.bin", "digest-bootloader-key": "v1_key.bin", "digest-bootloader-image": "app.bin",
        "extract-public-key": "sk.pem", "digest-sbv2-public-key": "pub.pem", "digest-private-key": "sk.pem",
        "encrypt-key": "flash_key.bin", "encrypt-data": "app.bin", "decrypt-key": "flash_key.bin",
        "decrypt-data": "app.bin", "partition-table": "partitions.csv", "nvs-generate": "nvs.csv",
        "nvs-encrypt-key": "nvs_keys.bin", "nvs-encrypt-hmac": "hmac_key.bin", "nvs-decrypt-data": "nvs_enc.bin",
        "nvs-decrypt-key": "nvs_keys.bin", "mfg-config": "config.csv", "mfg-values": "values.csv",
        "mfg-inputkey": "nvs_keys.bin", "check-cert": "ca.pem", "check-cert-out": "ca.pem", "crt-bundle": "ca.pem",
        "crt-bundle-filter": "filter.csv",
    }  # fmt: skip
    if slot not in goods:
        pytest.skip("no good stand-in here: an HSM, a precomputed signature or a whole release folder")
    argv = [sys.executable, "-m", "esp_secure_build", *_cli_argv(cmd, good, str(good.folder / goods[slot]))]
    proc = run_limited(argv, tmp_path)
    assert proc.returncode == 0, (slot, proc.stdout, proc.stderr)


# --------------------------------------------------------------------------- SCons cases

# (builder, SConstruct body with {bad} and {g.NAME}, kinds). Each case is one small scons
# run (a fifth of a second): simpler to read than one SConstruct per builder with -k,
# and an error while the SConstruct is read cannot hide the other cases.
RELEASE_ENV = (
    "env.Replace(ESP_SECURE_BOOT_VERSION=2, ESP_BOOTLOADER_VERIFIES_APP=True, ESP_SIGNING_KEYS=[{g.sk_rsa_dot_pem!r}], "
    "ESP_FLASH_ENCRYPTION_KEY={g.flash_key_dot_bin!r}); "
)
SCONS_SLOTS: list[tuple[str, str, list[str]]] = [
    ("EspImage", "env.EspImage('build/app.bin', {bad!r})", ["empty", "random", "directory", "fifo", "image",
                                                            "truncated-elf", "dev-zero"]),
    ("SignedImage", "env.SignedImage('build/signed.bin', {g.app_dot_bin!r}, ESP_SECURE_BOOT_VERSION=2, "
     "ESP_SIGNING_KEYS=[{bad!r}])", ["empty", "random", "directory", "fifo", "cert", "public-key", "dev-zero",
                                     "missing"]),
    ("SignedImage-data", "env.SignedImage('build/signed.bin', {bad!r}, ESP_SECURE_BOOT_VERSION=2, "
     "ESP_SIGNING_KEYS=[{g.sk_rsa_dot_pem!r}])", ["empty", "directory", "fifo", "dev-zero"]),
    ("PartitionTable", "env.PartitionTable('build/pt.bin', {bad!r})", ["random", "directory", "fifo", "dev-zero",
                                                                        "bad-table-csv", "huge-table-csv"]),
    ("NvsPartition", "env.NvsPartition('build/nvs.bin', {bad!r}, ESP_NVS_SIZE=0x3000)",
     ["empty", "random", "directory", "fifo", "dev-zero", "latin1-csv", "bad-row-csv"]),
    ("NvsKeys", "env.NvsKeys('build/nvs_keys.bin', {bad!r})", ["empty", "random", "directory", "fifo", "dev-zero",
                                                                "truncated-nvs"]),
    ("NvsKeys-hmac", "env.NvsKeys('build/nvs_keys.bin', ESP_NVS_HMAC_KEY={bad!r})",
     ["empty", "random", "directory", "fifo", "dev-zero", "31-byte-key", "zero-key"]),
    ("EncryptedNvs", "env.EncryptedNvs('build/nvs_enc.bin', {g.nvs_dot_csv!r}, ESP_NVS_SIZE=0x3000, "
     "ESP_NVS_KEYS={bad!r})", ["empty", "random", "directory", "fifo", "dev-zero", "nvs-zero-keys"]),
    ("NvsMfg-config", "env.NvsMfg('build/factory', [{bad!r}, {g.values_dot_csv!r}], ESP_NVS_MFG_PREFIX='dev', "
     "ESP_NVS_SIZE=0x3000)", ["empty", "directory", "fifo", "dev-zero", "bad-config-csv", "latin1-csv"]),
    ("NvsMfg-values", "env.NvsMfg('build/factory', [{g.config_dot_csv!r}, {bad!r}], ESP_NVS_MFG_PREFIX='dev', "
     "ESP_NVS_SIZE=0x3000)", ["empty", "directory", "fifo", "dev-zero", "bad-values-csv"]),
    ("EncryptedImage-key", "env.EncryptedImage('build/enc.bin', {g.app_dot_bin!r}, partition='factory', "
     "ESP_PARTITION_TABLE={g.partitions_dot_bin!r}, ESP_FLASH_ENCRYPTION_KEY={bad!r})",
     ["empty", "random", "directory", "fifo", "dev-zero", "31-byte-key", "zero-key", "ff-key"]),
    ("EncryptedImage-table", "env.EncryptedImage('build/enc.bin', {g.app_dot_bin!r}, partition='factory', "
     "ESP_PARTITION_TABLE={bad!r}, ESP_FLASH_ENCRYPTION_KEY={g.flash_key_dot_bin!r})",
     ["empty", "random", "directory", "fifo", "truncated-table"]),
    ("EspCaCert", "env.EspCaCert('build/ca.pem', {bad!r})", ["empty", "random", "directory", "fifo", "dev-zero",
                                                             "truncated-pem", "private-key", "leaf-cert"]),
    ("CrtBundle", "env.CrtBundle('build/bundle', [{bad!r}])", ["empty", "random", "fifo", "dev-zero",
                                                               "truncated-pem", "private-key"]),
    ("EmbedFile", "env.EspToolchain(); env.EmbedFile('build/blob.o', {bad!r})", ["directory", "fifo", "dev-zero"]),
    ("EspFactoryImage", "env['ESP_PARTITION_TABLE'] = {g.partitions_dot_bin!r}; "
     "env.EspFactoryImage('build/factory', [('factory', {bad!r})])", ["directory", "fifo", "dev-zero", "sparse-150M"]),
    ("EspRelease-partitions", RELEASE_ENV + "env.EspRelease('build/release', app={g.app_sp_dot_bin!r}, "
     "bootloader={g.boot_dot_bin!r}, partitions={bad!r})",
     ["empty", "random", "directory", "fifo", "bad-table-csv"]),
    ("EspRelease-nvs", RELEASE_ENV + "env.EspRelease('build/release', app={g.app_sp_dot_bin!r}, bootloader={g.boot_dot_bin!r}, "
     "partitions={g.partitions_dot_csv!r}, nvs={{'nvs': ({bad!r}, {g.nvs_keys_dot_bin!r})}})",
     ["directory", "fifo", "bad-row-csv"]),
]  # fmt: skip

SCONS_CASES = [(f"{b}-{k}", body, k) for b, body, kinds in SCONS_SLOTS for k in kinds]


@pytest.mark.parametrize("case_id,body,kind", SCONS_CASES, ids=[c[0] for c in SCONS_CASES])
def test_scons(tmp_path: Path, good: Good, case_id: str, body: str, kind: str) -> None:
    work = tmp_path / "work"
    inputs = good.copy_to(work)
    bad = KINDS[kind](work / f"bad-{kind}.in", good)
    needle = Path(bad).name if bad != "/dev/zero" else bad
    (work / "SConstruct").write_text(TOOL_HEADER + body.format(g=inputs, bad=bad) + "\n")
    before = snapshot(work)
    env = dict(os.environ, SOURCE_DATE_EPOCH="1764115200")
    proc = run_limited([sys.executable, "-m", "SCons", "-Q"], work, env)
    line = assert_refused(proc, needle, case_id)
    after = {k: v for k, v in snapshot(work).items() if not k.startswith((".sconsign", "build"))}
    assert after == before, f"{case_id}: an input changed"
    built = [p for p in (work / "build").rglob("*") if not p.is_dir()] if (work / "build").exists() else []
    failed = re.match(r"scons: \*\*\* \[([^]]+)\]", line)
    if case_id.startswith("EspRelease") and failed:
        # A release is many steps: those before the failing one may finish; the failing one writes nothing.
        assert not (work / failed.group(1)).exists(), f"{case_id}: {failed.group(1)} written"
    else:
        assert not built, f"{case_id}: output written: {built}"


SCONS_GOOD = {
    "EspImage": "app.elf", "SignedImage": "sk_rsa.pem", "SignedImage-data": "app.bin", "PartitionTable": "partitions.csv",
    "NvsPartition": "nvs.csv", "NvsKeys": "nvs_keys.bin", "NvsKeys-hmac": "hmac_key.bin", "EncryptedNvs": "nvs_keys.bin",
    "NvsMfg-config": "config.csv", "NvsMfg-values": "values.csv", "EncryptedImage-key": "flash_key.bin",
    "EncryptedImage-table": "partitions.bin", "EspCaCert": "ca.pem", "CrtBundle": "ca.pem", "EmbedFile": "blob.bin",
    "EspFactoryImage": "app.bin", "EspRelease-partitions": "partitions.csv", "EspRelease-nvs": "nvs.csv",
}  # fmt: skip


@pytest.mark.parametrize("builder,body", [(b, body) for b, body, _ in SCONS_SLOTS], ids=[b for b, _, _ in SCONS_SLOTS])
def test_scons_good_inputs_pass(tmp_path: Path, good: Good, builder: str, body: str) -> None:
    """Each SConstruct builds with its good input in place of the bad one."""
    inputs = good.copy_to(tmp_path / "work")
    source = str(inputs.folder / SCONS_GOOD[builder])
    (inputs.folder / "SConstruct").write_text(TOOL_HEADER + body.format(g=inputs, bad=source) + "\n")
    env = dict(os.environ, SOURCE_DATE_EPOCH="1764115200")
    proc = run_limited([sys.executable, "-m", "SCons", "-Q"], inputs.folder, env)
    assert proc.returncode == 0, (builder, proc.stdout, proc.stderr)
