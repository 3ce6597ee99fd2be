"""NVS against the reference vectors: partitions, keys, XTS, encrypt/decrypt, manufacturing runs."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from conftest import VECTORS, case_ids, expected_bytes, load_cases, run_cli

from esp_secure_build.nvs import (
    NvsKeys,
    decrypt_partition,
    generate_partition,
    load_hmac_key,
    load_keys,
    referenced_files,
    xts_entry,
)
from esp_secure_build.nvs.mfg import MfgEncryption, MfgOptions, run_mfg

MFG = VECTORS / "mfg"
MFG_CASES = json.loads((MFG / "cases.json").read_text())




def _case_keys(case: dict) -> NvsKeys:
    inputs = case["inputs"]
    if "inputkey" in inputs:
        return load_keys(VECTORS / inputs["inputkey"])
    return NvsKeys.from_hmac_key(load_hmac_key(VECTORS / inputs["hmac_key"]))


GEN = load_cases("nvs_gen")
ENC = load_cases("nvs_encrypt")
DEC = load_cases("nvs_decrypt")
KEYS = load_cases("nvs_keys")
XTS = load_cases("nvs_xts")


def test_all_nvs_kinds_present() -> None:
    assert (len(GEN), len(ENC), len(DEC), len(KEYS), len(XTS)) == (5, 2, 2, 2, 1)
    assert all(c["check"] == "byte-exact" for c in GEN + ENC + DEC + KEYS + XTS)


@pytest.mark.parametrize("case", GEN, ids=case_ids(GEN))
def test_gen_core(case: dict) -> None:
    opts = case["options"]
    out = generate_partition(VECTORS / case["inputs"]["csv"], int(opts["size"], 0), opts["version"],
                             base_dir=VECTORS / opts["cwd"])  # fmt: skip
    assert out == expected_bytes(case)


@pytest.mark.parametrize("case", GEN, ids=case_ids(GEN))
def test_referenced_files(case: dict) -> None:
    """What a build scanner gets: the files the CSV's file rows name, all among the case's inputs."""
    base = VECTORS / case["options"]["cwd"]
    found = referenced_files(VECTORS / case["inputs"]["csv"], base)
    assert all(p.is_file() for p in found)
    assert len(found) == sum(
        1 for line in (VECTORS / case["inputs"]["csv"]).read_text().splitlines() if ",file," in line
    )
    assert {p.relative_to(VECTORS).as_posix() for p in found} <= set(case["inputs"]["files"])


@pytest.mark.parametrize("case", GEN, ids=case_ids(GEN))
def test_gen_cli(case: dict, tmp_path: Path) -> None:
    opts = case["options"]
    proc = run_cli("nvs", "generate", VECTORS / case["inputs"]["csv"], "out.bin", opts["size"],
                   "--version", str(opts["version"]), "--outdir", tmp_path, cwd=VECTORS / opts["cwd"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.bin").read_bytes() == expected_bytes(case)


@pytest.mark.parametrize("case", ENC, ids=case_ids(ENC))
def test_encrypt_core(case: dict) -> None:
    opts = case["options"]
    out = generate_partition(VECTORS / case["inputs"]["csv"], int(opts["size"], 0), 2, _case_keys(case),
                             base_dir=VECTORS / opts["cwd"])  # fmt: skip
    assert out == expected_bytes(case)


@pytest.mark.parametrize("case", ENC, ids=case_ids(ENC))
def test_encrypt_cli(case: dict, tmp_path: Path) -> None:
    opts, inputs = case["options"], case["inputs"]
    args = ["nvs", "encrypt", VECTORS / inputs["csv"], "out.bin", opts["size"], "--outdir", tmp_path]
    if "inputkey" in inputs:
        args += ["--inputkey", VECTORS / inputs["inputkey"]]
    else:
        args += [
            "--keygen",
            "--key_protect_hmac",
            "--kp_hmac_inputkey",
            VECTORS / inputs["hmac_key"],
            "--keyfile",
            "k.bin",
        ]
    proc = run_cli(*args, cwd=VECTORS / opts["cwd"])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.bin").read_bytes() == expected_bytes(case)
    if "hmac_key" in inputs:
        key_file = tmp_path / "keys" / "k.bin"
        assert key_file.read_bytes() == (VECTORS / "nvs/esp-idf/testdata/sample_encryption_keys_hmac.bin").read_bytes()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("case", DEC, ids=case_ids(DEC))
def test_decrypt_core_and_cli(case: dict, tmp_path: Path) -> None:
    inputs = case["inputs"]
    encrypted = (VECTORS / inputs["encrypted"]).read_bytes()
    assert decrypt_partition(encrypted, load_keys(VECTORS / inputs["key"])) == expected_bytes(case)
    proc = run_cli("nvs", "decrypt", VECTORS / inputs["encrypted"], VECTORS / inputs["key"], "plain.bin",
                   "--outdir", tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "plain.bin").read_bytes() == expected_bytes(case)


@pytest.mark.parametrize("case", KEYS, ids=case_ids(KEYS))
def test_keys_partition(case: dict, tmp_path: Path) -> None:
    expected = expected_bytes(case)
    if "hmac_key" in case["inputs"]:
        keys = NvsKeys.from_hmac_key(load_hmac_key(VECTORS / case["inputs"]["hmac_key"]))
        proc = run_cli("nvs", "generate-key", "--key_protect_hmac", "--kp_hmac_inputkey",
                       VECTORS / case["inputs"]["hmac_key"], "--keyfile", "keys.bin", "--outdir", tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "keys" / "keys.bin").read_bytes() == expected
    else:
        hex_keys = (VECTORS / case["inputs"]["keys_hex"]).read_text().strip()
        assert hex_keys == case["options"]["eky"] + case["options"]["tky"]
        keys = NvsKeys(bytes.fromhex(case["options"]["eky"]), bytes.fromhex(case["options"]["tky"]))
    assert keys.partition() == expected
    assert load_keys(VECTORS / case["expected"]) == keys


@pytest.mark.parametrize("case", XTS, ids=case_ids(XTS))
def test_xts_entry(case: dict) -> None:
    o = case["options"]
    keys = NvsKeys(bytes.fromhex(o["eky"]), bytes.fromhex(o["tky"]))
    cipher = xts_entry(keys, bytes.fromhex(o["tweak"]), bytes.fromhex(o["plaintext"]))
    assert cipher.hex() == case["expected"]["hex"]
    assert xts_entry(keys, bytes.fromhex(o["tweak"]), cipher, decrypt=True).hex() == o["plaintext"]


# -- manufacturing ------------------------------------------------------------
def _copy_input(case: dict, tmp_path: Path) -> Path:
    work = tmp_path / "input"
    shutil.copytree(MFG / case["cwd"], work)
    return work


def _compare_tree(out: Path, expected_dir: Path) -> None:
    expected = sorted(p.relative_to(expected_dir) for p in expected_dir.rglob("*") if p.is_file())
    produced = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert produced == expected
    for rel in expected:
        assert (out / rel).read_bytes() == (expected_dir / rel).read_bytes(), rel


def _mfg_options(case: dict, work: Path) -> MfgOptions:
    args = case["args"]
    enc = MfgEncryption(keys=load_keys(work / args[args.index("--inputkey") + 1])) if "--inputkey" in args else None
    return MfgOptions(size=int(args[4], 0), fileid=args[args.index("--fileid") + 1], encryption=enc, base_dir=work)


@pytest.mark.parametrize("case", MFG_CASES, ids=[c["id"] for c in MFG_CASES])
@pytest.mark.parametrize("jobs", [1, 2])
def test_mfg_core(case: dict, jobs: int, tmp_path: Path) -> None:
    work = _copy_input(case, tmp_path)
    before = sorted(p.name for p in work.rglob("*"))
    count = run_mfg(work / "config.csv", work / "values.csv", case["args"][3], tmp_path / "out",
                    _mfg_options(case, work), jobs=jobs)  # fmt: skip
    assert count == 10
    _compare_tree(tmp_path / "out", MFG / case["expected_dir"])
    assert sorted(p.name for p in work.rglob("*")) == before  # nothing written next to the inputs


@pytest.mark.parametrize("case", MFG_CASES, ids=[c["id"] for c in MFG_CASES])
@pytest.mark.parametrize("command", [["mfg"], ["nvs", "mfg"]], ids=["mfg", "nvs-mfg"])
def test_mfg_cli(case: dict, command: list[str], tmp_path: Path) -> None:
    work = _copy_input(case, tmp_path)
    proc = run_cli(*command, *case["args"], cwd=work)
    assert proc.returncode == 0, proc.stderr
    _compare_tree(work / case["outdir_arg"], MFG / case["expected_dir"])
    for side in case["side_files_written_next_to_inputs"]:
        assert not (work / side).exists()
