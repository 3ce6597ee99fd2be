"""NVS against esp-idf-nvs-partition-gen 0.3.0 on generated CSVs (seeded, bounded).

Every row type and encoding, both versions, multipage blobs, page boundaries,
the Wi-Fi extras, read-only sizes, several input files; plain and
``encrypt --inputkey``; HMAC key derivation. Each oracle call is a process
(~0.2 s), so the CSVs are few but dense.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import random
import stat
from pathlib import Path

import pytest
from conftest import run_cli, run_oracle

from esp_secure_build.errors import EspSecureError
from esp_secure_build.nvs import NvsKeys, generate_partition, load_hmac_key

ORACLE = "esp_idf_nvs_partition_gen"
INTS = {
    "u8": (0, 255), "i8": (-128, 127), "u16": (0, 65535), "i16": (-32768, 32767),
    "u64": (0, 2**64 - 1), "i64": (-(2**63), 2**63 - 1), "u32": (0, 2**32 - 1), "i32": (-(2**31), 2**31 - 1),
}  # fmt: skip
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,;\"'-_é€\n"


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "type", "encoding", "value"])
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _text(rng: random.Random, n: int, max_bytes: int = 3967) -> str:
    """n random characters (some multi-byte), cut to fit max_bytes of UTF-8."""
    text = "".join(rng.choice(ALPHABET) for _ in range(n))
    while len(text.encode()) > max_bytes:
        text = text[:-1]
    return text


def _random_rows(rng: random.Random, work: Path, version: int) -> list[list[str]]:
    """Namespaces, each followed by items of every kind; blobs up to several pages in V2."""
    rows: list[list[str]] = []
    big = 1984 if version == 1 else 9000
    counter = 0
    for n in range(rng.randint(2, 4)):
        rows.append([f"ns{n}_{rng.randint(0, 99)}", "namespace", "", ""])
        for _ in range(rng.randint(10, 60)):
            counter += 1
            key = f"k{counter}"[: rng.randint(2, 15)] if counter < 10 else f"k{counter}"
            key = (key + "x" * 15)[: rng.randint(len(key), 15)]
            kind = rng.choice(["int", "int", "int", "string", "hex", "b64", "bin", "fill", "file"])
            if kind == "int":
                enc = rng.choice(list(INTS))
                lo, hi = INTS[enc]
                value = rng.choice([lo, hi, 0, rng.randint(lo, hi)])
                rows.append([key, "data", enc, str(value)])
            elif kind == "string":
                limit = 1983 if version == 1 else 3967  # bytes, without the NUL
                length = rng.choice([0, 1, 31, 32, limit, rng.randint(0, limit)])
                rows.append([key, "data", "string", _text(rng, length, limit)])
            elif kind == "hex":
                size = rng.choice([0, 1, 32, 33, rng.randint(0, 600)])
                rows.append([key, "data", "hex2bin", os.urandom(size).hex()])
            elif kind == "b64":
                rows.append([key, "data", "base64", base64.b64encode(os.urandom(rng.randint(0, 300))).decode()])
            elif kind == "bin":
                rows.append(
                    [key, "data", "binary", "".join(rng.choice("abc XYZ,09") for _ in range(rng.randint(0, 200)))]
                )
            elif kind == "fill":
                length = rng.randint(1, 200)
                enc = rng.choice(["blob_fill", "blob_sz_fill"])
                rows.append(
                    [
                        key,
                        "data",
                        f"{enc}({length};0x{rng.randint(0, 255):02x})",
                        _text(rng, rng.randint(0, 40)).encode()[:length].decode(errors="ignore"),
                    ]
                )
            else:
                counter += 1
                name = f"f{counter}.dat"
                enc = rng.choice(["string", "hex2bin", "base64", "binary", "binary"])
                raw = os.urandom(
                    rng.choice([0, 1, 100, rng.randint(0, big), big]) if enc == "binary" else rng.randint(0, 900)
                )
                if enc == "string":
                    limit = 1983 if version == 1 else 3967
                    content = _text(rng, rng.randint(0, limit), limit).encode()
                elif enc == "hex2bin":
                    content = b"  " + raw.hex().encode() + b"\n"
                elif enc == "base64":
                    content = base64.encodebytes(raw)
                else:
                    content = raw
                (work / name).write_bytes(content)
                rows.append([key, "file", enc, name])
    return rows


def _oracle_generate(
    work: Path, csv_names: list[str], size: int, version: int, inputkey: Path | None = None
) -> bytes | None:
    args = ["encrypt" if inputkey else "generate", *csv_names, "oracle.bin", hex(size), "--version", str(version)]
    if inputkey:
        args += ["--inputkey", str(inputkey)]
    proc = run_oracle(ORACLE, *args, cwd=work, check=False)
    if proc.returncode != 0:
        return None
    return (work / "oracle.bin").read_bytes()


def _smallest_size(paths: list[Path], version: int, work: Path) -> int:
    """The smallest read/write size our generator accepts for these CSVs."""
    for pages in range(3, 80):
        try:
            generate_partition(paths, pages * 4096, version, base_dir=work)
            return pages * 4096
        except EspSecureError as exc:
            assert "partition too small" in str(exc)
    raise AssertionError("data does not fit in 80 pages")


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_random_csv_generate(seed: int, version: int, tmp_path: Path) -> None:
    rng = random.Random(seed * 10 + version)
    rows = _random_rows(rng, tmp_path, version)
    _write_csv(tmp_path / "in.csv", rows)
    size = _smallest_size([tmp_path / "in.csv"], version, tmp_path)
    ours = generate_partition(tmp_path / "in.csv", size, version, base_dir=tmp_path)
    assert _oracle_generate(tmp_path, ["in.csv"], size, version) == ours
    if size > 0x3000 and seed < 3:
        # One page less: both refuse (the reference with a traceback).
        with pytest.raises(EspSecureError, match="partition too small"):
            generate_partition(tmp_path / "in.csv", size - 4096, version, base_dir=tmp_path)
        assert _oracle_generate(tmp_path, ["in.csv"], size - 4096, version) is None


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("seed", range(3))
def test_random_csv_encrypt_inputkey(seed: int, version: int, tmp_path: Path) -> None:
    rng = random.Random(1000 + seed * 10 + version)
    rows = _random_rows(rng, tmp_path, version)
    _write_csv(tmp_path / "in.csv", rows)
    keys = NvsKeys.generate()
    (tmp_path / "keys.bin").write_bytes(keys.partition())
    size = _smallest_size([tmp_path / "in.csv"], version, tmp_path) + 4096 * seed
    ours = generate_partition(tmp_path / "in.csv", size, version, keys, base_dir=tmp_path)
    assert _oracle_generate(tmp_path, ["in.csv"], size, version, tmp_path / "keys.bin") == ours


def _boundary_rows(version: int) -> list[list[str]]:
    """Items that land on a page's last slots: strings, V1/V2 blobs, empty blobs, zero-length chunks."""
    rows: list[list[str]] = []
    n = 0
    for ns, (fill, item) in enumerate(
        (fill, item)
        for fill in (122, 123, 124, 125, 126)
        for item in ("str2", "str1", "blob40", "blob0", "blob_page", "u8")
    ):
        rows.append([f"b{ns}", "namespace", "", ""])
        # Runs of 121..125 one-slot items between the multi-slot ones walk the latter across every
        # position near a page end (last slot free, last slot only, page exactly full, ...).
        for _ in range(fill - 1):
            n += 1
            rows.append([f"p{n}", "data", "u8", str(n % 256)])
        value = {
            "str2": ("string", "x" * 40),  # 2 payload entries
            "str1": ("string", "y" * 20),
            "blob40": ("hex2bin", "ab" * 40),
            "blob0": ("hex2bin", ""),
            "blob_page": ("hex2bin", "cd" * (1984 if version == 1 else 4000)),
            "u8": ("u8", "7"),
        }[item]
        rows.append([f"it{ns}", "data", *value])
    return rows


@pytest.mark.parametrize("version", [1, 2])
def test_page_boundaries(version: int, tmp_path: Path) -> None:
    _write_csv(tmp_path / "in.csv", _boundary_rows(version))
    size = _smallest_size([tmp_path / "in.csv"], version, tmp_path) + 4096
    ours = generate_partition(tmp_path / "in.csv", size, version, base_dir=tmp_path)
    assert _oracle_generate(tmp_path, ["in.csv"], size, version) == ours


def test_special_rows_several_files_readonly(tmp_path: Path) -> None:
    """Wi-Fi extras, comments, namespace carried over to a second CSV, 0x2000 read-only output."""
    (tmp_path / "a.csv").write_text(
        "# comment line\nkey,type,encoding,value\nnvs.net80211,namespace,,\n"
        "sta.ssid,data,string,myap\nsta.pswd,data,string,secret\nap.ssid,data,string,softap\n"
        "ap.authmode,data,u8,0\nap.passwd,data,string,pw123456\nap.authmode,data,u8,3\n"
        "\nU8UP,data,U8,5\nbinup,data,BINARY,abc\n"
    )  # fmt: skip
    (tmp_path / "b.csv").write_text("value,encoding,type,key\n9,u16,data,in_b\n,,namespace,other\n1,i8,data,x\n")
    for size, version in ((0x2000, 2), (0x4000, 1), (0x4000, 2)):
        ours = generate_partition([tmp_path / "a.csv", tmp_path / "b.csv"], size, version)
        assert _oracle_generate(tmp_path, ["a.csv", "b.csv"], size, version) == ours
    assert len(generate_partition([tmp_path / "a.csv"], 0x2000, 2, base_dir=tmp_path)) == 0x1000


@pytest.mark.parametrize("seed", range(3))
def test_hmac_derivation_against_oracle(seed: int, tmp_path: Path) -> None:
    hmac_key = random.Random(seed).randbytes(32)
    (tmp_path / "hmac.bin").write_bytes(hmac_key)
    run_oracle(ORACLE, "generate-key", "--key_protect_hmac", "--kp_hmac_inputkey", "hmac.bin",
               "--keyfile", "k.bin", "--outdir", tmp_path, cwd=tmp_path)  # fmt: skip
    ours = NvsKeys.from_hmac_key(load_hmac_key(tmp_path / "hmac.bin"))
    assert ours.partition() == (tmp_path / "keys" / "k.bin").read_bytes()


def test_oracle_decrypts_ours(tmp_path: Path) -> None:
    """A partition we encrypt with keys we generate decrypts, with the reference, to our plain one."""
    rows = _random_rows(random.Random(77), tmp_path, 2)
    _write_csv(tmp_path / "in.csv", rows)
    keys = NvsKeys.generate()
    (tmp_path / "keys.bin").write_bytes(keys.partition())
    size = _smallest_size([tmp_path / "in.csv"], 2, tmp_path)
    (tmp_path / "enc.bin").write_bytes(generate_partition(tmp_path / "in.csv", size, 2, keys, base_dir=tmp_path))
    run_oracle(ORACLE, "decrypt", "enc.bin", "keys.bin", "dec.bin", cwd=tmp_path)
    assert (tmp_path / "dec.bin").read_bytes() == generate_partition(tmp_path / "in.csv", size, 2, base_dir=tmp_path)


def test_cli_keygen_then_oracle_decrypt(tmp_path: Path) -> None:
    """Our CLI with several input CSVs and --keygen; the reference decrypts it with our keys file."""
    rows = _random_rows(random.Random(99), tmp_path, 2)
    _write_csv(tmp_path / "a.csv", rows[: len(rows) // 2])
    _write_csv(tmp_path / "b.csv", rows[len(rows) // 2 :])
    proc = run_cli("nvs", "encrypt", "a.csv", "b.csv", "enc.bin", "0x20000", "--keygen", "--keyfile", "k", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    key_file = tmp_path / "keys" / "k.bin"  # ".bin" added as the reference does
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    run_oracle(ORACLE, "decrypt", "enc.bin", "keys/k.bin", "dec.bin", cwd=tmp_path)
    assert _oracle_generate(tmp_path, ["a.csv", "b.csv"], 0x20000, 2) == (tmp_path / "dec.bin").read_bytes()
