"""Fuzz every parser with hypothesis: whatever the bytes, only EspSecureError may escape.

Seeds are valid inputs made here (ELFs from tests/helpers/elfgen, images built from
them, keys and certificates generated on the spot), then mutated: bytes flipped,
inserted, deleted, repeated, truncated, and integer fields set to edge values.
``ESP_FUZZ_EXAMPLES`` sets the examples per parser (default small, for the suite's
time); a long run: ``ESP_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_parsers.py``.
Inputs that once found a bug are replayed first by ``test_regressions``.
"""

from __future__ import annotations

import datetime
import io
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers.elfgen import SHT_INIT_ARRAY, SHT_NOBITS, Sec, write_elf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esp_secure_build import certs, crt_bundle, descriptors, factory, image, image_report
from esp_secure_build import partition_table as pt
from esp_secure_build.chips import get_chip
from esp_secure_build.elf import EM_RISCV, EM_XTENSA, read_elf, symbol_table
from esp_secure_build.errors import EspSecureError
from esp_secure_build.nvs import crypto as nvs_crypto
from esp_secure_build.nvs import mfg
from esp_secure_build.nvs.csvfile import read_nvs_csv
from esp_secure_build.nvs.generate import NvsBuilder, parse_size
from esp_secure_build.secure_boot import keys, signers, v1, v2

EXAMPLES = int(os.environ.get("ESP_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the tree
    derandomize="ESP_FUZZ_EXAMPLES" not in os.environ,  # the suite is reproducible; long runs explore
    suppress_health_check=list(HealthCheck),
)

# --------------------------------------------------------------------------- mutation

EDGE_U32 = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few random edits, or (now and then) plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 6))
        pos = draw(st.integers(0, len(data))) if data else 0
        if kind == 0 and data:  # flip bits of a byte
            pos = min(pos, len(data) - 1)
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == 1:  # truncate
            del data[pos:]
        elif kind == 2:  # insert
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == 3:  # delete a run
            del data[pos : pos + draw(st.integers(1, 64))]
        elif kind == 4 and len(data) >= 4:  # an integer field set to an edge value
            pos = min(pos, len(data) - 4) & ~3 if draw(st.booleans()) else min(pos, len(data) - 4)
            data[pos : pos + 4] = struct.pack("<I", draw(st.sampled_from(EDGE_U32)))
        elif kind == 5 and data:  # repeat a piece
            end = min(len(data), pos + draw(st.integers(1, 64)))
            data[end:end] = data[pos:end] * draw(st.integers(1, 4))
        elif kind == 6 and len(data) >= 2:  # a 16-bit field set to an edge value
            pos = min(pos, len(data) - 2)
            data[pos : pos + 2] = struct.pack("<H", draw(st.sampled_from([0, 1, 0xFF, 0x7FFF, 0xFFFF])))
    return bytes(data)


@st.composite
def mutated_text(draw: st.DrawFn, seeds: list[str]) -> str:
    """A text seed with a few character-level edits (separators, quotes, numbers, junk)."""
    text = list(draw(st.sampled_from(seeds)))
    pieces = [",", '"', "\n", "\r", "#", " ", "0x", "-", "0", "9" * 12, "\0", "\ufeff", "é", "$X", "=", "(", ")", ":"]
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            text[pos:pos] = draw(st.sampled_from(pieces))
        elif kind == 1:
            del text[pos : pos + draw(st.integers(1, 12))]
        elif kind == 2:
            text[pos:pos] = draw(st.text(max_size=6))
        else:
            del text[pos:]
    return "".join(text)


def only_project_errors(func: Callable[[], object]) -> None:
    """Run ``func``; a project error is a fine answer, anything else fails the test."""
    try:
        func()
    except EspSecureError as exc:
        assert "\n" not in str(exc)


# --------------------------------------------------------------------------- seeds

C3, ESP32 = get_chip("esp32c3"), get_chip("esp32")


def _elf_seeds() -> list[bytes]:
    appdesc = descriptors.build_app_desc("fuzz", "1.0", 0, "v5.3", 1764115200)
    riscv = [
        Sec(".flash.appdesc", 0x3C000020, appdesc),
        Sec(".flash.rodata", 0x3C000120, bytes(range(200))),
        Sec(".init_array", 0x3C0001E8, b"\x01\x02\x03\x04", type=SHT_INIT_ARRAY),
        Sec(".iram0.text", 0x40380000, b"\x13\x00\x00\x00" * 20),
        Sec(".dram0.data", 0x3FC80000, b"data" * 9),
        Sec(".dram0.bss", 0x3FC80100, type=SHT_NOBITS, size=64),
        Sec(".flash.text", 0x42000020, b"\x13\x00\x00\x00" * 30),
    ]
    xtensa = [
        Sec(".flash.appdesc", 0x3F400020, appdesc),
        Sec(".dram0.data", 0x3FFB0000, b"x" * 40),
        Sec(".iram0.vectors", 0x40080000, b"\x36\x41\x00" * 11 + b"\0"),
        Sec(".flash.text", 0x400D0020, b"\x36\x41\x00\x1d" * 16),
    ]
    return [
        write_elf(riscv, EM_RISCV, 0x40380000),
        write_elf(riscv[2:4], EM_RISCV, 0x40380000, with_phdrs=False),
        write_elf(xtensa, EM_XTENSA, 0x40080000),
    ]


ELF_SEEDS = _elf_seeds()


def _image_seeds() -> list[bytes]:
    out = []
    for data, chip in ((ELF_SEEDS[0], C3), (ELF_SEEDS[1], C3), (ELF_SEEDS[2], ESP32)):
        elf = read_elf("seed.elf", data)
        out.append(image.elf_to_image(elf, chip))
        out.append(image.elf_to_image(elf, chip, image.ImageOptions(append_digest=False)))
    return out


IMAGE_SEEDS = _image_seeds()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC384_KEY = ec.generate_private_key(ec.SECP384R1())
SIGNED_SEEDS = [
    v2.sign(IMAGE_SEEDS[0], [signers.LocalKeySigner(EC_KEY, "k1")]),
    v2.sign(IMAGE_SEEDS[1], [signers.LocalKeySigner(EC_KEY, "k1"), signers.LocalKeySigner(EC_KEY, "k2")]),
    v2.sign(IMAGE_SEEDS[2], [signers.LocalKeySigner(EC384_KEY, "k3")]),
]
V1_SEED = v1.sign(IMAGE_SEEDS[4], signers.LocalKeySigner(EC_KEY, "v1"))


def _cert(key: ec.EllipticCurvePrivateKey, name: str, issuer_key=None, issuer: str | None = None, ca: bool = True):  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650 * 3))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key or key, hashes.SHA256())


ROOT = _cert(EC_KEY, "Fuzz Root")
LEAF = _cert(EC384_KEY, "fuzz.example", EC_KEY, "Fuzz Root", ca=False)
PEM = ROOT.public_bytes(serialization.Encoding.PEM)
CERT_SEEDS = [
    PEM,
    ROOT.public_bytes(serialization.Encoding.DER),
    LEAF.public_bytes(serialization.Encoding.PEM) + PEM,
    b"CONNECTED(00000003)\ndepth=0 CN = x\n" + PEM + b"---\nServer certificate\n",
    PEM.replace(b"\n", b"\r\n"),
]

KEY_SEEDS = [
    EC_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    EC_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ),
    EC_KEY.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    EC_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    EC_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    keys.public_key_raw_v1(EC_KEY),
]

PARTITION_CSV = """\
# Name,   Type, SubType,  Offset,  Size,     Flags
nvs,      data, nvs,      0x9000,  0x5000,
phy_init, data, phy,      0xE000,  4K,
nvs_keys, data, nvs_keys, ,        0x1000,   encrypted
factory,  app,  factory,  0x10000, 1M,
ota_0,    app,  ota_0,    ,        1M,
ota_1,    app,  ota_1,    ,        1M,
otadata,  data, ota,      ,        0x2000,
storage,  data, fat,      ,        -0x3F0000,  readonly
"""
PARTITION_SEEDS = [PARTITION_CSV.encode(), pt.csv_to_binary(PARTITION_CSV, env={})[0]]

NVS_CSV = """\
key,type,encoding,value
config,namespace,,
name,data,string,esp-secure fuzz
"quoted",data,string,"a, ""b"" c"
u8,data,u8,255
i8,data,i8,-128
u16,data,u16,65535
i32,data,i32,-2147483648
u64,data,u64,18446744073709551615
hex,data,hex2bin,00112233445566778899aabbccddeeff
b64,data,base64,AAECAwQFBgcICQ==
blob,data,binary,some text
fill,data,blob_fill(8;0x55),
blob_file,file,binary,data.bin
hexfile,file,hex2bin,hex.txt
other,namespace,,
s,data,string,
"""


def _keys() -> nvs_crypto.NvsKeys:
    return nvs_crypto.NvsKeys(bytes(range(32)), bytes(range(32, 64)))


def _nvs_partition_seed(tmp: Path) -> bytes:
    builder = NvsBuilder(0x3000, 2, tmp)
    builder.add_rows(read_nvs_csv(tmp / "nvs.csv", NVS_CSV))
    return builder.finish(_keys())


@pytest.fixture(scope="module")
def nvs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("nvs")
    (d / "data.bin").write_bytes(bytes(range(100)))
    (d / "hex.txt").write_text("deadbeef")
    return d


# --------------------------------------------------------------------------- the fuzzers


def check_elf(data: bytes) -> None:
    def run() -> None:
        elf = read_elf("fuzz.elf", data)
        for chip in (C3, ESP32):
            for options in (image.ImageOptions(), image.ImageOptions(use_segments=True, ram_only_header=True)):
                try:
                    out = image.elf_to_image(elf, chip, options)
                except EspSecureError:
                    continue
                image.read_image(out, "out.bin")  # what we write, we can read

    only_project_errors(run)


@FUZZ
@given(data=mutated(ELF_SEEDS))
def test_elf_reader_and_elf2image(data: bytes) -> None:
    check_elf(data)


@FUZZ
@given(data=mutated(ELF_SEEDS))
def test_elf_symbol_table(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("elf") / "fuzz.elf"
    path.write_bytes(data)
    only_project_errors(lambda: symbol_table(path))


def check_image(data: bytes) -> None:
    def run() -> None:
        info = image.read_image(data, "fuzz.bin")
        assert image_report.format_image_info(info, "fuzz.bin")

    only_project_errors(run)
    only_project_errors(lambda: factory.update_flash_params(C3, 0x0, data, "dio", "40m", "4MB"))
    only_project_errors(lambda: factory.update_flash_params(ESP32, 0x1000, data, "qio", "80m", "2MB"))
    only_project_errors(lambda: v1.digest_secure_bootloader(data, bytes(range(32)), path="fuzz.bin"))


@FUZZ
@given(data=mutated([*IMAGE_SEEDS, *SIGNED_SEEDS, V1_SEED]))
def test_image_reader_and_report(data: bytes) -> None:
    check_image(data)


def check_signature(data: bytes) -> None:
    only_project_errors(lambda: v2.verify(data, EC_KEY.public_key(), path="fuzz.bin"))
    only_project_errors(lambda: v2.verify(data, expect_digests=[keys.public_key_digest(EC_KEY)], path="fuzz.bin"))
    only_project_errors(lambda: v2.signature_info(data, "fuzz.bin"))
    only_project_errors(lambda: v2.sign(data, [signers.LocalKeySigner(EC_KEY, "k")], append=True, path="fuzz.bin"))
    only_project_errors(lambda: v1.verify(data, EC_KEY.public_key(), "fuzz.bin"))
    for i in range(3):
        only_project_errors(lambda i=i: v2.parse_block(data[-4096 + i * 1216 :][:1216], i))


@FUZZ
@given(data=mutated([*SIGNED_SEEDS, V1_SEED]))
def test_signature_blocks(data: bytes) -> None:
    check_signature(data)


@FUZZ
@given(text=mutated_text([NVS_CSV]), version=st.sampled_from([1, 2]), size=st.sampled_from([0x3000, 0x6000]))
def test_nvs_csv(nvs_dir: Path, text: str, version: int, size: int) -> None:
    check_nvs_csv(text.encode("utf-8", "surrogatepass"), nvs_dir, version, size)


def check_nvs_csv(data: bytes, base_dir: Path | None = None, version: int = 2, size: int = 0x3000) -> None:
    def run() -> None:
        rows = read_nvs_csv("nvs.csv", data.decode("utf-8", "surrogatepass"))
        builder = NvsBuilder(size, version, base_dir)
        builder.add_rows(rows)
        builder.finish(_keys())

    only_project_errors(run)


@FUZZ
@given(text=st.one_of(st.text(max_size=20), st.sampled_from(["0x3000", "12288", "0x", "-1", "1e9", "0x1000000000"])))
def test_nvs_size(text: str) -> None:
    only_project_errors(lambda: parse_size(text))


def test_nvs_partition_decrypt(nvs_dir: Path) -> None:
    seed = _nvs_partition_seed(nvs_dir)

    @FUZZ
    @given(data=mutated([seed, nvs_crypto.NvsKeys(bytes(32), bytes(range(32))).partition()]))
    def fuzz(data: bytes) -> None:
        only_project_errors(lambda: nvs_crypto.decrypt_partition(data, _keys(), "nvs.bin"))
        only_project_errors(lambda: nvs_crypto.encrypt_partition(data, _keys(), "nvs.bin"))
        only_project_errors(lambda: nvs_crypto.NvsKeys.from_partition(data, "keys.bin"))

    fuzz()


def check_partition_table(data: bytes) -> None:
    def run() -> None:
        table, _ = pt.load(data, "partitions", env={"X": "0x1000"})
        pt.verify(table, "partitions", secure="v2")
        blob = table.to_binary("partitions")
        assert pt.load(blob, "again")[1]
        pt.parse_csv(table.to_csv(), "csv", env={})

    only_project_errors(run)


@FUZZ
@given(data=st.one_of(mutated(PARTITION_SEEDS), mutated_text([PARTITION_CSV]).map(str.encode)))
def test_partition_table(data: bytes) -> None:
    check_partition_table(data)


def check_certificates(data: bytes) -> None:
    def run() -> None:
        found = certs.parse_certificates(data, "ca.pem")
        certs.check_certificates(found, source="ca.pem", keep_bundle=True)
        entries = [crt_bundle.BundleEntry(c, "ca.pem") for c in found]
        blob, _ = crt_bundle.build_bundle(entries)
        crt_bundle.parse_bundle(blob)

    only_project_errors(run)
    only_project_errors(lambda: crt_bundle.filter_cacrt_all(b"Fuzz Root\n=========\n" + data, {"Fuzz Root"}, "all.pem"))


@FUZZ
@given(data=mutated(CERT_SEEDS))
def test_certificates(data: bytes) -> None:
    check_certificates(data)


def test_crt_bundle_parser() -> None:
    entries = [crt_bundle.BundleEntry(c, "ca.pem") for c in (ROOT, LEAF)]
    seeds = [crt_bundle.build_bundle(entries)[0], crt_bundle.build_bundle(entries, legacy=True)[0]]

    @FUZZ
    @given(data=mutated(seeds), legacy=st.booleans())
    def fuzz(data: bytes, legacy: bool) -> None:
        only_project_errors(lambda: crt_bundle.parse_bundle(data, legacy=legacy))

    fuzz()


def check_keys(data: bytes) -> None:
    def private() -> None:
        key = keys.load_private_key_bytes(data, "key.pem", password=None)
        keys.scheme_of(key, "key.pem")

    def public() -> None:
        key = keys.load_public_key_bytes(data, "key.pem", allow_raw_v1=True)
        keys.scheme_of(key, "key.pem")
        keys.public_key_digest(key)

    os.environ.pop(keys.PASSPHRASE_ENV, None)
    only_project_errors(private)
    only_project_errors(public)


@FUZZ
@given(data=mutated(KEY_SEEDS))
def test_keys(data: bytes) -> None:
    check_keys(data)


def test_intel_hex(tmp_path: Path) -> None:
    from intelhex import IntelHex

    ih = IntelHex()
    ih.frombytes(bytes(range(64)), offset=0x1000)
    ih.frombytes(b"\xaa" * 40, offset=0x20000)
    buf = io.StringIO()
    ih.write_hex_file(buf)
    seed = buf.getvalue().encode()
    path = tmp_path / "in.hex"

    @FUZZ
    @given(data=st.one_of(mutated([seed]), mutated_text([seed.decode()]).map(str.encode)))
    def fuzz(data: bytes) -> None:
        path.write_bytes(data)

        def run() -> None:
            regions = factory.regions_from_file(0x0, path)
            factory.check_overlap(regions)

        only_project_errors(run)

    fuzz()


def test_mfg_csvs(tmp_path: Path) -> None:
    config = "ns,namespace,\nserial,data,string\nrev,data,u8,REPEAT\nblob,data,hex2bin\ncal,file,binary\n"
    values = "serial,rev,blob,cal,id\nSN1,7,0011,cal.bin,dev1\nSN2,,ff,cal.bin,dev2\n"
    (tmp_path / "cal.bin").write_bytes(b"cal")
    cfg_path, val_path = tmp_path / "config.csv", tmp_path / "values.csv"
    opts = mfg.MfgOptions(size=0x3000, version=2, base_dir=tmp_path)

    @FUZZ
    @given(cfg=mutated_text([config]), vals=mutated_text([values]), fileid=st.sampled_from([None, "id", "serial"]))
    def fuzz(cfg: str, vals: str, fileid: str | None) -> None:
        cfg_path.write_bytes(cfg.encode("utf-8", "surrogatepass"))
        val_path.write_bytes(vals.encode("utf-8", "surrogatepass"))

        def run() -> None:
            conf = mfg.read_mfg_config(cfg_path)
            for line, ident, row in mfg.iter_device_values(conf, val_path, fileid):
                mfg.build_device(conf, opts, str(val_path), line, ident, row)

        only_project_errors(run)

    fuzz()


@FUZZ
@given(text=mutated_text(["[hsm_config]\npkcs11_lib = /usr/lib/x.so\nslot = 0\nlabel = k\ncredentials = 1234\n"]))
def test_hsm_config(text: str) -> None:
    check_hsm_config(text.encode("utf-8", "surrogatepass"))


def check_hsm_config(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "hsm.ini")
        path.write_bytes(data)
        only_project_errors(lambda: signers.read_hsm_config(path))


@FUZZ
@given(data=mutated([IMAGE_SEEDS[0][32:300], bytes(80)]))
def test_descriptors(data: bytes) -> None:
    only_project_errors(lambda: descriptors.parse_app_desc(data))
    only_project_errors(lambda: descriptors.parse_bootloader_desc(data))


@FUZZ
@given(key=st.binary(max_size=80), address=st.sampled_from([0, 0x1000, 0x10, 0xFFFFF000, 2**32, -16]),
       data=st.binary(max_size=100))  # fmt: skip
def test_flash_encryption_inputs(key: bytes, address: int, data: bytes) -> None:
    from esp_secure_build import flash_encryption as fe

    for chip in ("esp32", "esp32c3", "esp32s3", "esp32c2"):
        only_project_errors(lambda c=chip: fe.check_key_for_chip(key, get_chip(c), "key.bin"))
    for scheme in ("esp32", "xts"):
        only_project_errors(lambda s=scheme: fe.encrypt(data, key, address, s))
        only_project_errors(lambda s=scheme: fe.decrypt(data, key, address, s))


def _efuse_seed() -> str:
    """A plausible ESP32-C3 ``espefuse summary --format json``: release mode, one V2 digest, an XTS key."""
    import json

    doc: dict[str, dict[str, object]] = {
        "SPI_BOOT_CRYPT_CNT": {"value": "Enable", "raw_value": 7},
        "SECURE_BOOT_EN": {"value": True},
        "DIS_PAD_JTAG": {"value": True}, "DIS_USB_JTAG": {"value": True},
        "DIS_DOWNLOAD_MANUAL_ENCRYPT": {"value": True}, "ENABLE_SECURITY_DOWNLOAD": {"value": True},
        "RD_DIS": {"value": 1, "raw_value": 1},
    }  # fmt: skip
    for n in range(6):
        purpose = ["XTS_AES_128_KEY", "SECURE_BOOT_DIGEST0", "USER"][min(n, 2)]
        doc[f"KEY_PURPOSE_{n}"] = {"value": purpose}
        doc[f"BLOCK_KEY{n}"] = {"value": "??" if n == 0 else bytes(range(n, n + 32)).hex(" "), "readable": n != 0}
    return json.dumps(doc, indent=1)


@FUZZ
@given(text=mutated_text([_efuse_seed(), "espefuse v5\n" + _efuse_seed()]))
def test_efuse_summary(text: str) -> None:
    from esp_secure_build import efuse

    def run() -> None:
        summary = efuse.parse_efuse_summary(text, "efuse.json")
        efuse.check_efuse_summary(
            summary, chip="esp32c3", key_digests=[bytes(range(1, 33))], secure_boot_version=2,
            flash_encryption=True, xts_key_bits=128, flash_key=bytes(32),
        )  # fmt: skip

    only_project_errors(run)


SDKCONFIG = """\
CONFIG_SECURE_BOOT=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CONFIG_SECURE_SIGNED_APPS_ECDSA_V2_SCHEME=y
CONFIG_SECURE_FLASH_ENC_ENABLED=y
CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y
CONFIG_NVS_ENCRYPTION=y
# CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC is not set
CONFIG_PARTITION_TABLE_OFFSET=0x8000
CONFIG_IDF_TARGET="esp32c3"
"""


@FUZZ
@given(text=mutated_text([SDKCONFIG, '{"SECURE_BOOT": true, "SECURE_BOOT_V2_ENABLED": true, "PARTITION_TABLE_OFFSET": 32768}']))
def test_sdkconfig(text: str) -> None:
    import tempfile

    from esp_secure_build import chain_guards

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "sdkconfig")
        path.write_bytes(text.encode("utf-8", "surrogatepass"))

        def run() -> None:
            config = chain_guards.read_sdkconfig(path)
            chain_guards.check_release(
                secure_boot_version=2, flash_encryption=True, partition_table_offset=0x8000, sdkconfig=config,
                flash_encryption_key_bytes=32, nvs_encrypted=True,
            )  # fmt: skip
            chain_guards.check_signing_schemes(["ecdsa256"], config)

        only_project_errors(run)


@FUZZ
@given(text=mutated_text(['{"keys": [{"file": "k.pem", "kind": "signing", "fingerprint": "ab"}]}']))
def test_dev_key_record(text: str) -> None:
    import tempfile

    from esp_secure_build import devkeys

    with tempfile.TemporaryDirectory() as folder:
        Path(folder, devkeys.RECORD_NAME).write_bytes(text.encode("utf-8", "surrogatepass"))
        only_project_errors(lambda: devkeys.read_record(folder))


IDF_BUILD = {
    "project_description.json": {"target": "esp32c3", "app_bin": "app.bin", "app_elf": "app.elf",
                                 "project_name": "p", "project_version": "1", "min_rev": "3", "max_rev": ""},
    "flasher_args.json": {
        "flash_settings": {"flash_mode": "dio", "flash_freq": "80m", "flash_size": "4MB"},
        "app": {"offset": "0x10000", "file": "app.bin"},
        "partition-table": {"offset": "0x8000", "file": "partition_table/partition-table.bin"},
        "bootloader": {"offset": "0x0", "file": "bootloader/bootloader.bin"},
        "storage": {"offset": "0x110000", "file": "storage.bin"},
        "extra_esptool_args": {"chip": "esp32c3"},
    },
    "config/sdkconfig.json": {"PARTITION_TABLE_OFFSET": 32768, "ESPTOOLPY_FLASHSIZE": "4MB"},
}  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8) | st.sampled_from(["0x8000", "esp32"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["offset", "file", "chip"]), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def idf_builds(draw: st.DrawFn) -> dict[str, object]:
    """The seed build's three JSON files with a few values (at any depth) replaced by other JSON."""
    import copy

    docs = copy.deepcopy(IDF_BUILD)
    for _ in range(draw(st.integers(1, 4))):
        node: object = docs[draw(st.sampled_from(sorted(docs)))]
        while isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if not isinstance(node[key], dict) or draw(st.booleans()):
                if draw(st.integers(0, 5)) == 0:
                    del node[key]
                else:
                    node[key] = draw(JSON_VALUES)
                break
            node = node[key]
    return docs


@FUZZ
@given(docs=idf_builds())
def test_idf_build_directory(docs: dict[str, object]) -> None:
    check_idf_build_docs(docs)


def check_idf_build_docs(docs: dict[str, object]) -> None:
    import json
    import tempfile

    from esp_secure_build.idf_build import load_idf_build

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for file in ("app.bin", "app.elf", "partition_table/partition-table.bin", "bootloader/bootloader.bin",
                     "storage.bin"):  # fmt: skip
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / file).write_bytes(b"x")
        for file, doc in docs.items():
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / file).write_text(doc if isinstance(doc, str) else json.dumps(doc))
        only_project_errors(lambda: load_idf_build(str(folder)))


def check_flasher_args(data: bytes) -> None:
    """The seed IDF build with ``data`` as its flasher_args.json."""
    check_idf_build_docs({**IDF_BUILD, "flasher_args.json": data.decode()})


# --------------------------------------------------------------------------- regressions

CHECKS = {
    "elf": check_elf, "image": check_image, "signature": check_signature,
    "partition-table": check_partition_table, "certificate": check_certificates, "key": check_keys,
    "nvs-csv": check_nvs_csv, "hsm-config": check_hsm_config, "flasher-args": check_flasher_args,
}  # fmt: skip

# Inputs that found bugs, replayed every run: (checker, input, what was wrong).
REGRESSIONS: list[tuple[str, bytes, str]] = [
    (
        "certificate",
        b"-----BEGIN CERTIFICATE-----\nMIIBPjCB5aADAgECAhRI8vHhOJRAWUkvdQaWQOcksTqJezAKBggqhkjOPQQDAjAU\n"
        b"MRIwEAYDVQQDEAlGdXp6IFJvb3QwIBcNMjYxMjA0MDc1NjE1WhgPMjA1NjExMjcw\n"
        b"NzU2MTVaMBQxEjAQBgNVBAMMCUZ1enogUm9vdDBZMBMGByqGSM49AgEGCCqGSM49\n"
        b"AwEHA0IABO3M/8yqT8eXSy7qoiD4OO55BfKy+1w0ciBodBJKnBdOvrL2GJdH2yWL\n"
        b"LHCGQhi4PjknvgT/KnMQQHwcwM+wsfWjEzARMA8GA1UdEwEB/wQFMAMBAf8wCgYI\n"
        b"KoZIzj0EAwIDSAAwRQIhAOni/WQ4KrcxqmXBsclmhmcw7Gzeq6g8i3zEK5ddlF8j\n"
        b"AiBW//7Zq3mpyc1X1FiyXmQlfvdC6x6M8op4Y1bFrYW+rA==\n-----END CERTIFICATE-----\n",
        "issuer name with a wrong ASN.1 tag: a ValueError when first compared (names are parsed lazily)",
    ),
    (
        "nvs-csv",
        b"key,type,encoding,value\nns,namespace,,\ncal,file,binary,\0cal.bin\n",
        "a NUL in a file row's name: open() raises ValueError (found through an mfg values file)",
    ),
    (
        "hsm-config",
        b"[hsm_config]\npkcs11_lib =% /usr/lib/x.so\nslot = 0\nlabel = k\n",
        "a lone '%': configparser's InterpolationSyntaxError when the section is read",
    ),
    (
        "flasher-args",
        b'{"app": {"offset": "0x10000", "file": "app.bin"}, "partition-table": {"offset": "0x8000"},'
        b' "extra_esptool_args": null}',
        "extra_esptool_args null: AttributeError ('NoneType' has no .get)",
    ),
    (
        "flasher-args",
        b'{"app": {"offset": "0x10000", "file": "app.bin"}, "partition-table": {"offset": "0x8000"},'
        b' "bootloader": "0x0"}',
        "bootloader not an object: AttributeError",
    ),
]


@pytest.mark.parametrize("kind,data,why", REGRESSIONS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(REGRESSIONS)])
def test_regressions(kind: str, data: bytes, why: str) -> None:
    CHECKS[kind](data)


def test_seeds_are_valid(nvs_dir: Path, tmp_path: Path) -> None:
    """The fuzzers start from inputs every parser accepts, so mutations reach deep code."""
    for data, chip in zip(ELF_SEEDS, (C3, C3, ESP32), strict=True):
        assert image.read_image(image.elf_to_image(read_elf("seed.elf", data), chip)).checksum_valid
    for data in SIGNED_SEEDS:
        assert v2.verify(data, EC_KEY.public_key() if data is not SIGNED_SEEDS[2] else EC384_KEY.public_key())
    v1.verify(V1_SEED, EC_KEY.public_key())
    assert len(certs.parse_certificates(CERT_SEEDS[2])) == 2
    for data in CERT_SEEDS:
        certs.parse_certificates(data)
    for data in KEY_SEEDS:
        keys.load_public_key_bytes(data, allow_raw_v1=True)
    assert pt.load(PARTITION_SEEDS[1])[0].to_binary() == PARTITION_SEEDS[1]
    assert nvs_crypto.decrypt_partition(_nvs_partition_seed(nvs_dir), _keys())
    from esp_secure_build import chain_guards, efuse

    assert efuse.parse_efuse_summary(_efuse_seed())["KEY_PURPOSE_1"]["value"] == "SECURE_BOOT_DIGEST0"
    (tmp_path / "sdkconfig").write_text(SDKCONFIG)
    assert chain_guards.read_sdkconfig(tmp_path / "sdkconfig")["SECURE_BOOT_V2_ENABLED"] is True
