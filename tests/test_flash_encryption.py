"""Flash encryption against espsecure 5.6.0: the reference vectors, random inputs, bad input."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from conftest import VECTORS, assert_one_line_error, case_ids, load_cases, run_cli, run_oracle
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esp_secure_build import aes_bitsliced
from esp_secure_build import flash_encryption as fe
from esp_secure_build.chips import get_chip
from esp_secure_build.errors import EspSecureError

CASES = load_cases("encrypt", "decrypt")
# Every oracle call costs ~0.3 s: keep the random examples few but seeded.
ORACLE_SETTINGS = settings(
    max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _case_inputs(case: dict) -> tuple[bytes, bytes, int, str, int, bytes]:
    opts = case["options"]
    data = (VECTORS / case["inputs"]["datafile"]).read_bytes()
    key = (VECTORS / case["inputs"]["keyfile"]).read_bytes()
    scheme = fe.SCHEME_XTS if opts["aes_xts"] else fe.SCHEME_ESP32
    conf = int(opts.get("flash_crypt_conf", "0xf"), 0)
    expected = (VECTORS / case["expected"]).read_bytes()
    return data, key, int(opts["address"], 0), scheme, conf, expected


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_vector_core(case: dict) -> None:
    assert case["check"] == "byte-exact"
    data, key, address, scheme, conf, expected = _case_inputs(case)
    operation = fe.encrypt if case["kind"] == "encrypt" else fe.decrypt
    assert operation(data, key, address, scheme, conf) == expected
    if scheme == fe.SCHEME_ESP32:
        assert _esp32_both_ways(operation, data, key, address, conf) == expected


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_vector_cli(case: dict, tmp_path: Path) -> None:
    opts = case["options"]
    out = tmp_path / "out.bin"
    args = [
        case["kind"] + "-flash-data",
        "--keyfile",
        VECTORS / case["inputs"]["keyfile"],
        "--address",
        opts["address"],
    ]
    if opts["aes_xts"]:
        args.append("--aes-xts")
    else:
        args += ["--flash-crypt-conf", opts["flash_crypt_conf"]]
    proc = run_cli(*args, "--output", out, VECTORS / case["inputs"]["datafile"])
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (VECTORS / case["expected"]).read_bytes()


def _oracle(tmp: Path, kind: str, data: bytes, key: bytes, address: int, xts: bool, conf: int = 0xF) -> bytes:
    (tmp / "in.bin").write_bytes(data)
    (tmp / "key.bin").write_bytes(key)
    args = [f"{kind}-flash-data", "--keyfile", tmp / "key.bin", "--address", hex(address), "--output", tmp / "o.bin"]
    args += ["--aes-xts"] if xts else ["--flash-crypt-conf", hex(conf)]
    run_oracle("espsecure", *args, tmp / "in.bin")
    return (tmp / "o.bin").read_bytes()


def _esp32_both_ways(operation, data: bytes, key: bytes, address: int, conf: int) -> bytes:
    """Run the ESP32 scheme through the bitsliced AES and the per-unit cipher contexts; both must agree."""
    saved = fe.ESP32_BITSLICE_MIN
    try:
        fe.ESP32_BITSLICE_MIN = 0
        sliced = operation(data, key, address, fe.SCHEME_ESP32, conf)
        fe.ESP32_BITSLICE_MIN = 1 << 40
        per_unit = operation(data, key, address, fe.SCHEME_ESP32, conf)
    finally:
        fe.ESP32_BITSLICE_MIN = saved
    assert sliced == per_unit
    return sliced


def _seeded(label: str, size: int) -> bytes:
    """Reproducible test bytes (SHAKE-256 of a label)."""
    return hashlib.shake_256(label.encode()).digest(size)


@pytest.mark.parametrize("conf", range(16))
def test_esp32_every_flash_crypt_conf(conf: int, tmp_path: Path) -> None:
    seed = _seeded(f"conf{conf}", 40)
    key = seed[:24] if conf % 2 else seed[:32]
    data = _seeded(f"data{conf}", 16 * (1 + seed[32] % 200))
    address = 16 * (int.from_bytes(seed[33:36], "little") % (((1 << 24) - len(data)) // 16))
    expected = _oracle(tmp_path, "encrypt", data, key, address, xts=False, conf=conf)
    assert _esp32_both_ways(fe.encrypt, data, key, address, conf) == expected
    assert _esp32_both_ways(fe.decrypt, expected, key, address, conf) == data


@st.composite
def esp32_inputs(draw: st.DrawFn) -> tuple[bytes, bytes, int, int]:
    key = draw(st.binary(min_size=24, max_size=24) | st.binary(min_size=32, max_size=32))
    data = draw(st.binary(min_size=16, max_size=700).map(lambda b: b[: len(b) // 16 * 16] or b"\0" * 16))
    address = 16 * draw(st.integers(0, ((1 << 24) - len(data)) // 16))
    conf = draw(st.integers(0, 15))
    return key, data, address, conf


@st.composite
def xts_inputs(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    size = draw(st.sampled_from([16, 32, 64]))
    key = draw(
        st.binary(min_size=size, max_size=size).filter(lambda k: len(k) == 16 or k[: len(k) // 2] != k[len(k) // 2 :])
    )
    blocks = draw(st.integers(1, 40))
    data = draw(st.binary(min_size=16 * blocks, max_size=16 * blocks))
    address = 16 * draw(st.integers(0, ((1 << 32) - len(data)) // 16))
    return key, data, address


@ORACLE_SETTINGS
@given(esp32_inputs())
def test_esp32_random_against_espsecure(tmp_path: Path, sample: tuple[bytes, bytes, int, int]) -> None:
    key, data, address, conf = sample
    expected = _oracle(tmp_path, "encrypt", data, key, address, xts=False, conf=conf)
    assert _esp32_both_ways(fe.encrypt, data, key, address, conf) == expected
    assert _esp32_both_ways(fe.decrypt, expected, key, address, conf) == data


@settings(ORACLE_SETTINGS, max_examples=4)
@given(esp32_inputs())
def test_esp32_decrypt_random_against_espsecure(tmp_path: Path, sample: tuple[bytes, bytes, int, int]) -> None:
    key, data, address, conf = sample
    expected = _oracle(tmp_path, "decrypt", data, key, address, xts=False, conf=conf)
    assert _esp32_both_ways(fe.decrypt, data, key, address, conf) == expected


@settings(ORACLE_SETTINGS, max_examples=10)
@given(xts_inputs())
def test_xts_random_against_espsecure(tmp_path: Path, sample: tuple[bytes, bytes, int]) -> None:
    key, data, address = sample
    expected = _oracle(tmp_path, "encrypt", data, key, address, xts=True)
    assert fe.encrypt(data, key, address, fe.SCHEME_XTS) == expected
    assert fe.decrypt(expected, key, address, fe.SCHEME_XTS) == data


@settings(ORACLE_SETTINGS, max_examples=4)
@given(xts_inputs())
def test_xts_decrypt_random_against_espsecure(tmp_path: Path, sample: tuple[bytes, bytes, int]) -> None:
    key, data, address = sample
    assert fe.decrypt(data, key, address, fe.SCHEME_XTS) == _oracle(tmp_path, "decrypt", data, key, address, xts=True)


def test_esp32_short_tail_is_padded_with_ff(tmp_path: Path) -> None:
    """espsecure pads with random bytes; ours equals espsecure's output for 0xFF padding."""
    key = bytes(range(32))
    data = bytes(range(200))[:37]
    padded = data + b"\xff" * 11
    expected = _oracle(tmp_path, "encrypt", padded, key, 0x3000, xts=False)
    assert fe.encrypt(data, key, 0x3000, fe.SCHEME_ESP32) == expected
    # And the oracle's random padding agrees on every whole block.
    assert _oracle(tmp_path, "encrypt", data, key, 0x3000, xts=False)[:32] == expected[:32]


@pytest.mark.parametrize("key", [bytes(16), bytes(32), bytes(range(16)), bytes(range(32))], ids=["0-128", "0-256", "128", "256"])
def test_ecb_through_xts_is_ecb(key: bytes) -> None:
    """AES-ECB run by OpenSSL's XTS code with a zero tweak, also for the all-zero key (the helper key differs)."""
    data = _seeded("ecb", 4096)
    for decrypt in (False, True):
        plain = Cipher(algorithms.AES(key), modes.ECB())
        expected = (plain.decryptor() if decrypt else plain.encryptor()).update(data)
        assert fe._ecb(key, decrypt).update(data) == expected


def test_xor_programs_are_checked_against_their_matrix() -> None:
    """The bitsliced AES's linear layers come from embedded XOR programs; a wrong one must not load."""
    assert aes_bitsliced._xor_program("t0=x0^x1 t1=t0^x2 : t1 x0", 3, [0b111, 0b001]) == ([(0, 1), (3, 2)], [4, 0])
    with pytest.raises(RuntimeError, match="does not compute"):
        aes_bitsliced._xor_program("t0=x0^x1 t1=t0^x2 : t1 x1", 3, [0b111, 0b001])
    with pytest.raises(RuntimeError, match="malformed"):
        aes_bitsliced._xor_program("t0=x0^x1 t2=t0^x2 : t2", 3, [0b111])
    # The matrices the programs are checked against: MixColumns on the classic test column
    # db 13 53 45 -> 8e 4d a1 bc, and InvMixColumns is its inverse.
    mix, inv_mix = aes_bitsliced._mix_matrix((2, 3, 1, 1)), aes_bitsliced._mix_matrix((14, 11, 13, 9))
    column = int.from_bytes(bytes.fromhex("db135345"), "little")
    mixed = sum((bin(row & column).count("1") & 1) << j for j, row in enumerate(mix))
    assert mixed.to_bytes(4, "little").hex() == "8e4da1bc"
    assert aes_bitsliced._compose(mix, inv_mix) == [1 << j for j in range(32)]


def test_esp32_large_input_spans_chunks(tmp_path: Path) -> None:
    """More than one bitsliced chunk, at an address that is not 32-byte aligned."""
    key = _seeded("chunk-key", 24)
    data = _seeded("chunk-data", fe.ESP32_BITSLICE_CHUNK + 4096 + 48)
    expected = _oracle(tmp_path, "encrypt", data, key, 0x30010, xts=False, conf=0xB)
    assert fe.encrypt(data, key, 0x30010, fe.SCHEME_ESP32, 0xB) == expected


@pytest.mark.parametrize(
    ("scheme", "key_len", "address", "size", "conf"),
    [
        # Several XTS pieces, starting and ending inside a 128-byte unit.
        (fe.SCHEME_XTS, 64, 0x123450, 2 * fe.XTS_PIECE + 4096 + 48, 0xF),
        (fe.SCHEME_XTS, 32, 0x7FF0, fe.XTS_PIECE + 16, 0xF),
        # Bitsliced ESP32 path, starting on the second block of a 32-byte unit.
        (fe.SCHEME_ESP32, 32, 0x45670, 64 * 1024 + 16, 0x5),
        # Ending on a unit's first block, near the top of the 16 MiB space.
        (fe.SCHEME_ESP32, 24, 0xFC0020, 48 * 1024 + 16, 0xF),
    ],
    ids=["xts-pieces", "xts256-piece-edge", "esp32-odd-block", "esp32-high-address"],
)
def test_fast_paths_against_espsecure(
    tmp_path: Path, scheme: str, key_len: int, address: int, size: int, conf: int
) -> None:
    """The vectorised paths on inputs large enough to use them, at unaligned addresses, both directions."""
    key = _seeded(f"fast-key-{address}", key_len)
    data = _seeded(f"fast-data-{address}", size)
    xts = scheme == fe.SCHEME_XTS
    assert size >= (fe.XTS_PIECE if xts else fe.ESP32_BITSLICE_MIN)
    for kind, operation in (("encrypt", fe.encrypt), ("decrypt", fe.decrypt)):
        expected = _oracle(tmp_path, kind, data, key, address, xts=xts, conf=conf)
        if xts:
            for numpy in (True, False):  # a fresh CLI process uses big integers, a loaded numpy its arrays
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(fe, "_xts_with_numpy", lambda size, numpy=numpy: numpy)
                    assert operation(data, key, address, scheme, conf) == expected, (kind, numpy)
        else:
            assert _esp32_both_ways(operation, data, key, address, conf) == expected


def test_large_xts_input_round_trip() -> None:
    key = bytes(range(64))
    data = os.urandom(3 * 4096 + 48)
    enc = fe.encrypt(data, key, 0x12350, fe.SCHEME_XTS)
    assert len(enc) == len(data) and enc != data
    assert fe.decrypt(enc, key, 0x12350, fe.SCHEME_XTS) == data


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"key": bytes(16), "scheme": fe.SCHEME_ESP32}, "takes 192, 256-bit keys"),
        ({"key": bytes(64), "scheme": fe.SCHEME_ESP32}, "takes 192, 256-bit keys"),
        ({"key": bytes(24), "scheme": fe.SCHEME_XTS}, "takes 128, 256, 512-bit keys"),
        ({"address": 0x1008}, "not a multiple of 16"),
        ({"data": b"x" * 20, "scheme": fe.SCHEME_XTS}, "not a multiple of 16"),
        ({"data": b"", "scheme": fe.SCHEME_XTS}, "empty"),
        ({"flash_crypt_conf": 0x10}, "4-bit"),
        ({"address": 0xFFF000, "data": bytes(0x2000)}, "16 MiB"),
        ({"key": bytes(32), "scheme": fe.SCHEME_XTS}, "identical"),
    ],
)
def test_bad_input_raises(kwargs: dict, needle: str) -> None:
    args = {"data": bytes(64), "key": bytes(range(32)), "address": 0x1000, "scheme": fe.SCHEME_ESP32}
    args.update(kwargs)
    with pytest.raises(EspSecureError, match=needle):
        fe.encrypt(**args)


def test_decrypt_esp32_needs_whole_blocks() -> None:
    with pytest.raises(EspSecureError, match="multiple of 16"):
        fe.decrypt(bytes(20), bytes(32), 0, fe.SCHEME_ESP32)


def test_key_expansion_matches_espsecure_for_128_bit_xts(tmp_path: Path) -> None:
    """A 16-byte key is hashed into an XTS-AES-128 key, as on the ESP32-C2."""
    key = bytes(range(100, 116))
    data = bytes(range(256)) * 2
    assert fe.encrypt(data, key, 0x20000) == _oracle(tmp_path, "encrypt", data, key, 0x20000, xts=True)


@pytest.mark.parametrize("bits", [128, 192, 256, 512])
def test_generate_key_cli(bits: int, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.bin", tmp_path / "theirs.bin"
    proc = run_cli("generate-flash-encryption-key", "--keylen", str(bits), ours)
    assert proc.returncode == 0, proc.stderr
    run_oracle("espsecure", "generate-flash-encryption-key", "--keylen", str(bits), theirs)
    assert len(ours.read_bytes()) == len(theirs.read_bytes()) == bits // 8
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600
    assert str(ours.read_bytes().hex()) not in proc.stdout + proc.stderr


def test_generate_key_is_random() -> None:
    assert fe.generate_key(256) != fe.generate_key(256)


def test_chip_key_sizes() -> None:
    with pytest.raises(EspSecureError, match="ESP32-C3 takes 256-bit"):
        fe.check_key_for_chip(bytes(64), get_chip("esp32c3"))
    fe.check_key_for_chip(bytes(16), get_chip("esp32c2"))
    assert fe.scheme_for_chip(get_chip("esp32")) == fe.SCHEME_ESP32
    assert fe.scheme_for_chip(get_chip("esp32s3")) == fe.SCHEME_XTS


# --- CLI: bad input gives one line, exit 2, no output file --------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "k32.bin").write_bytes(bytes(range(32)))
    (tmp_path / "k20.bin").write_bytes(bytes(20))
    (tmp_path / "d.bin").write_bytes(bytes(64))
    (tmp_path / "d20.bin").write_bytes(bytes(20))
    return tmp_path


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["encrypt-flash-data", "-k", "k20.bin", "-a", "0x1000", "-o", "out.bin", "d.bin"], ["k20.bin", "20 bytes"]),
        (["encrypt-flash-data", "-k", "k32.bin", "-a", "0x1004", "-o", "out.bin", "d.bin"], ["d.bin", "0x1004"]),
        (["encrypt-flash-data", "-x", "-k", "k32.bin", "-a", "0x1000", "-o", "out.bin", "d20.bin"], ["d20.bin", "16"]),
        (["decrypt-flash-data", "-k", "k32.bin", "-a", "0x1000", "-o", "out.bin", "d20.bin"], ["multiple of 16"]),
        (
            ["encrypt-flash-data", "-k", "k32.bin", "-a", "0", "--flash-crypt-conf", "16", "-o", "out.bin", "d.bin"],
            ["4-bit"],
        ),
        (
            ["encrypt-flash-data", "-k", "missing.bin", "-a", "0", "-o", "out.bin", "d.bin"],
            ["missing.bin", "not found"],
        ),
        (
            ["--chip", "esp32", "encrypt-flash-data", "-x", "-k", "k32.bin", "-a", "0", "-o", "out.bin", "d.bin"],
            ["XTS"],
        ),
        (["generate-flash-encryption-key", "--keylen", "100", "out.bin"], ["100"]),
        (["--chip", "esp32c3", "generate-flash-encryption-key", "--keylen", "512", "out.bin"], ["ESP32-C3"]),
    ],
)
def test_cli_bad_input(files: Path, args: list[str], needles: list[str]) -> None:
    proc = run_cli(*args, cwd=files)
    assert_one_line_error(proc, *needles)
    assert not (files / "out.bin").exists()


def test_cli_refuses_output_equal_to_input(files: Path) -> None:
    before = (files / "d.bin").read_bytes()
    proc = run_cli("encrypt-flash-data", "-k", "k32.bin", "-a", "0", "-o", "d.bin", "d.bin", cwd=files)
    assert_one_line_error(proc, "d.bin")
    assert (files / "d.bin").read_bytes() == before


def test_cli_chip_selects_xts(files: Path) -> None:
    (files / "oracle").mkdir()
    proc = run_cli(
        "--chip", "esp32c3", "encrypt-flash-data", "-k", "k32.bin", "-a", "0x10000", "-o", "o.bin", "d.bin", cwd=files
    )
    assert proc.returncode == 0, proc.stderr
    expected = _oracle(files / "oracle", "encrypt", bytes(64), bytes(range(32)), 0x10000, xts=True)
    assert (files / "o.bin").read_bytes() == expected
