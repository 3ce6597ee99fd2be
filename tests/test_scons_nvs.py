"""SCons NVS builders: real builds of throw-away projects, compared with the reference tools."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import VECTORS, case_ids, expected_bytes, load_cases, run_oracle
from sconsutil import TOOL_HEADER, scons, steps

NVS_CASES = load_cases("nvs_gen", "nvs_encrypt", "nvs_keys")
MFG_CASES = json.loads((VECTORS / "mfg" / "cases.json").read_text())
ORACLE = "esp_idf_nvs_partition_gen"

HEADER = (
    TOOL_HEADER
    # The vectors' keys are published test keys: allowed here (tests/test_published_keys.py refuses them).
    + "env['ESP_ALLOW_PUBLISHED_KEY'] = True\n"
    + "for _k, _v in ARGUMENTS.items():\n"
    "    env[_k] = _v\n"
)

CSV = """key,type,encoding,value
wifi,namespace,,
sta.ssid,data,string,factory-ap
sta.pswd,data,string,"pass,word"
device,namespace,,
name,data,string,sensor-ü-01
count,data,u32,4000000000
offset,data,i16,-1234
big,data,i64,-9000000000000000000
mac,data,hex2bin,24a160000010
token,data,base64,x6z95xtQjYQMIOULzVC6FvAz+WKm6d6l
cert,file,string,data/cert.pem
calib,file,binary,data/calib.bin
"""
OTHER_CSV = "key,type,encoding,value\nother,namespace,,\nflag,data,u8,1\n"


def _write_project(folder: Path, body: str, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    (folder / "SConstruct").write_text(HEADER + body)
    return folder


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], list(folder.rglob("*.tmp"))


# -- the vectors, through the builders ------------------------------------------
@pytest.fixture(scope="module")
def vector_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project building every nvs_gen / nvs_encrypt / nvs_keys case of cases.json."""
    folder = tmp_path_factory.mktemp("nvs_vectors")
    lines = []
    for case in NVS_CASES:
        inputs, opts = case["inputs"], case["options"]
        out = f"out/{case['id']}.bin"
        if case["kind"] == "nvs_gen":
            lines.append(
                f"env.NvsPartition({out!r}, {str(VECTORS / inputs['csv'])!r}, "
                f"ESP_NVS_SIZE={opts['size']!r}, ESP_NVS_VERSION={opts['version']})"
            )
        elif case["kind"] == "nvs_encrypt":
            if "inputkey" in inputs:  # the user's keys partition, taken as it is
                keys = f"env.NvsKeys('keys/{case['id']}.bin', {str(VECTORS / inputs['inputkey'])!r})"
            else:  # keys derived from the HMAC key, as --key_protect_hmac --kp_hmac_inputkey
                keys = f"env.NvsKeys('keys/{case['id']}.bin', ESP_NVS_HMAC_KEY={str(VECTORS / inputs['hmac_key'])!r})"
            lines.append(
                f"env.EncryptedNvs({out!r}, {str(VECTORS / inputs['csv'])!r}, "
                f"ESP_NVS_SIZE={opts['size']!r}, ESP_NVS_KEYS={keys})"
            )
        elif "hmac_key" in inputs:
            lines.append(f"env.NvsKeys({out!r}, ESP_NVS_HMAC_KEY={str(VECTORS / inputs['hmac_key'])!r})")
        else:  # 64 raw key bytes given by the user -> a keys partition
            raw = bytes.fromhex(opts["eky"] + opts["tky"])
            (folder / f"{case['id']}.raw").write_bytes(raw)
            lines.append(f"env.NvsKeys({out!r}, '{case['id']}.raw')")
    _write_project(folder, "\n".join(lines) + "\n", {})
    _ok(scons(folder))
    return folder




@pytest.mark.parametrize("case", NVS_CASES, ids=case_ids(NVS_CASES))
def test_vector_cases(vector_build: Path, case: dict) -> None:
    assert case["check"] == "byte-exact"
    out = vector_build / "out" / f"{case['id']}.bin"
    assert out.read_bytes() == expected_bytes(case)
    if case["kind"] == "nvs_keys":
        assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_vector_project_noop(vector_build: Path) -> None:
    again = _ok(scons(vector_build))
    assert steps(again) == []


# -- byte equality with the reference, rebuild behaviour ------------------------
@pytest.fixture
def project(tmp_path: Path) -> Path:
    body = (
        "keys = env.NvsKeys('keys/nvs_keys.bin')\n"
        "env.NvsPartition('build/nvs.bin', 'nvs.csv')\n"
        "env.EncryptedNvs('build/nvs_enc.bin', 'nvs.csv', ESP_NVS_KEYS=keys)\n"
        "env.NvsPartition('build/other.bin', 'other.csv', ESP_NVS_SIZE=0x3000)\n"
    )
    files: dict[str, str | bytes] = {
        "nvs.csv": CSV,
        "other.csv": OTHER_CSV,
        "data/cert.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "data/calib.bin": bytes(range(256)) * 20,  # a multipage blob
    }
    folder = _write_project(tmp_path / "p", body, files)
    first = _ok(scons(folder))
    assert sorted(steps(first)) == sorted([
        "ESP-NVS build/nvs.bin", "ESP-NVS-KEYS keys/nvs_keys.bin",
        "ESP-NVS-ENCRYPT build/nvs_enc.bin", "ESP-NVS build/other.bin",
    ])  # fmt: skip
    return folder


def _oracle_pair(folder: Path, tmp: Path, size: str, *extra: str) -> tuple[bytes, bytes]:
    """The reference's generate and encrypt --inputkey outputs for the project's CSV and keys."""
    run_oracle(ORACLE, "generate", "nvs.csv", tmp / "ref.bin", size, *extra, cwd=folder)
    run_oracle(ORACLE, "encrypt", "nvs.csv", tmp / "ref_enc.bin", size, "--inputkey", "keys/nvs_keys.bin", *extra, cwd=folder)  # fmt: skip
    return (tmp / "ref.bin").read_bytes(), (tmp / "ref_enc.bin").read_bytes()


def test_outputs_equal_reference(project: Path, tmp_path: Path) -> None:
    plain, enc = _oracle_pair(project, tmp_path, "0x6000")
    assert (project / "build/nvs.bin").read_bytes() == plain
    assert (project / "build/nvs_enc.bin").read_bytes() == enc
    assert plain != enc
    keys = project / "keys/nvs_keys.bin"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600 and len(keys.read_bytes()) == 4096
    # Version 1 (single-page blobs up to 1984 bytes) and another size, as command-line variables.
    (project / "data/calib.bin").write_bytes(bytes(range(256)) * 7)
    proc = _ok(scons(project, "ESP_NVS_VERSION=1", "ESP_NVS_SIZE=0x8000"))
    # other.bin overrides the size, not the version; the keys do not depend on either.
    assert sorted(steps(proc)) == [
        "ESP-NVS build/nvs.bin",
        "ESP-NVS build/other.bin",
        "ESP-NVS-ENCRYPT build/nvs_enc.bin",
    ]
    plain, enc = _oracle_pair(project, tmp_path, "0x8000", "--version", "1")
    assert (project / "build/nvs.bin").read_bytes() == plain
    assert (project / "build/nvs_enc.bin").read_bytes() == enc
    assert len(plain) == 0x8000


def test_rebuilds_exactly_what_changed(project: Path) -> None:
    assert steps(_ok(scons(project))) == []
    keys = (project / "keys/nvs_keys.bin").read_bytes()
    other = (project / "build/other.bin").stat().st_mtime_ns
    # A blob file named by a `file` row is a dependency of the partitions that name it, and nothing else.
    calib = project / "data/calib.bin"
    calib.write_bytes(calib.read_bytes() + b"\x01")
    proc = _ok(scons(project))
    assert sorted(steps(proc)) == ["ESP-NVS build/nvs.bin", "ESP-NVS-ENCRYPT build/nvs_enc.bin"]
    pem = project / "data/cert.pem"
    pem.write_text(pem.read_text() + "\n")
    assert sorted(steps(_ok(scons(project)))) == ["ESP-NVS build/nvs.bin", "ESP-NVS-ENCRYPT build/nvs_enc.bin"]
    (project / "other.csv").write_text(OTHER_CSV.replace("u8,1", "u8,2"))
    assert steps(_ok(scons(project))) == ["ESP-NVS build/other.bin"]
    # A size only other.bin does not override.
    assert sorted(steps(_ok(scons(project, "ESP_NVS_SIZE=0x7000")))) == [
        "ESP-NVS build/nvs.bin", "ESP-NVS-ENCRYPT build/nvs_enc.bin",
    ]  # fmt: skip
    assert (project / "keys/nvs_keys.bin").read_bytes() == keys
    assert (project / "build/other.bin").stat().st_mtime_ns != other  # rebuilt once, above


def test_file_dir_variable(tmp_path: Path) -> None:
    """ESP_NVS_FILE_DIR='#': `file` rows relative to the project top, as the reference run from there."""
    files: dict[str, str | bytes] = {"csv/nvs.csv": CSV.replace("data/", "blobs/"), "blobs/cert.pem": "pem\n",
                                     "blobs/calib.bin": b"\x00\x01" * 100}  # fmt: skip
    folder = _write_project(tmp_path / "p", "env.NvsPartition('out.bin', 'csv/nvs.csv', ESP_NVS_FILE_DIR='#')\n", files)
    _ok(scons(folder))
    run_oracle(ORACLE, "generate", "csv/nvs.csv", tmp_path / "ref.bin", "0x6000", cwd=folder)
    assert (folder / "out.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    (folder / "blobs/cert.pem").write_text("pem2\n")
    assert steps(_ok(scons(folder))) == ["ESP-NVS out.bin"]


def test_sconscript_in_subfolder(tmp_path: Path) -> None:
    """Paths given in a SConscript (keys, ESP_NVS_FILE_DIR) are relative to its folder, as in SCons."""
    body = "SConscript('sub/SConscript', exports='env')\n"
    files: dict[str, str | bytes] = {
        "sub/SConscript": (
            "Import('env')\nenv.NvsKeys('k/keys.bin')\n"
            "env.EncryptedNvs('out/enc.bin', 'nvs.csv', ESP_NVS_KEYS='k/keys.bin', ESP_NVS_FILE_DIR='blobs')\n"
            "env.NvsPartition('out/plain.bin', 'nvs.csv', ESP_NVS_FILE_DIR='blobs')\n"
        ),
        "sub/nvs.csv": "key,type,encoding,value\nns,namespace,,\nb,file,binary,b.bin\n",
        "sub/blobs/b.bin": b"\x07" * 3000,
    }
    folder = _write_project(tmp_path / "p", body, files)
    _ok(scons(folder))
    blobs = folder / "sub/blobs"
    run_oracle(
        ORACLE, "encrypt", "../nvs.csv", tmp_path / "ref.bin", "0x6000", "--inputkey", "../k/keys.bin", cwd=blobs
    )
    assert (folder / "sub/out/enc.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    (blobs / "b.bin").write_bytes(b"\x08" * 3000)
    assert sorted(steps(_ok(scons(folder)))) == ["ESP-NVS sub/out/plain.bin", "ESP-NVS-ENCRYPT sub/out/enc.bin"]


# -- keys: kept, never replaced by accident -------------------------------------
def test_keys_survive_clean_and_rebuild(tmp_path: Path) -> None:
    # Keys inside the build folder and a CacheDir: the hard case for "made once and kept".
    body = (
        "CacheDir('cache')\n"
        "keys = env.NvsKeys('build/nvs_keys.bin')\n"
        "env.EncryptedNvs('build/nvs_enc.bin', 'nvs.csv', ESP_NVS_KEYS=keys)\n"
    )
    folder = _write_project(tmp_path / "p", body, {"nvs.csv": OTHER_CSV})
    first = _ok(scons(folder))
    keys_path = folder / "build/nvs_keys.bin"
    keys = keys_path.read_bytes()
    enc = (folder / "build/nvs_enc.bin").read_bytes()
    assert "back this file up" in first.stderr
    clean = _ok(scons(folder, "-c"))
    assert "nvs_enc.bin" in clean.stdout and "nvs_keys" not in clean.stdout
    assert keys_path.read_bytes() == keys and not (folder / "build/nvs_enc.bin").exists()
    again = _ok(scons(folder))
    assert keys_path.read_bytes() == keys
    assert (folder / "build/nvs_enc.bin").read_bytes() == enc
    # A fresh checkout with the keys restored (no SCons records): SCons runs the keys step,
    # which must neither delete nor replace them.
    for name in [".sconsign.dblite", "build/nvs_enc.bin"]:
        (folder / name).unlink()
    shutil.rmtree(folder / "cache")
    fresh = _ok(scons(folder))
    assert "ESP-NVS-KEYS build/nvs_keys.bin" in steps(fresh) and "new NVS keys" not in fresh.stderr
    assert keys_path.read_bytes() == keys and (folder / "build/nvs_enc.bin").read_bytes() == enc
    # Key material never reaches the cache, and is never printed.
    cached = [p.read_bytes() for p in (folder / "cache").rglob("*") if p.is_file()]
    assert enc in cached and keys not in cached
    for proc in (first, clean, again, fresh):
        for secret in (keys[:32].hex(), keys[32:64].hex()):
            assert secret not in (proc.stdout + proc.stderr).lower()


def test_lost_keys_stop_the_build(project: Path) -> None:
    keys_path = project / "keys/nvs_keys.bin"
    enc = (project / "build/nvs_enc.bin").read_bytes()
    keys_path.unlink()
    proc = scons(project)
    _one_line_error(proc, "keys/nvs_keys.bin", "earlier build", "ESP_NVS_ALLOW_NEW_KEYS")
    assert not keys_path.exists()
    assert (project / "build/nvs_enc.bin").read_bytes() == enc  # not rebuilt with other keys
    # The explicit act: new keys, and the encrypted partition follows them.
    proc = _ok(scons(project, "ESP_NVS_ALLOW_NEW_KEYS=1"))
    assert sorted(steps(proc)) == ["ESP-NVS-ENCRYPT build/nvs_enc.bin", "ESP-NVS-KEYS keys/nvs_keys.bin"]
    assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600
    assert (project / "build/nvs_enc.bin").read_bytes() != enc


def test_explicit_replacement(project: Path, tmp_path: Path) -> None:
    keys_path = project / "keys/nvs_keys.bin"
    old = keys_path.read_bytes()
    proc = _ok(scons(project, "nvs-keys-replace"))
    assert steps(proc) == ["ESP-NVS-KEYS-REPLACE keys/nvs_keys.bin"]
    new = keys_path.read_bytes()
    assert new != old and len(new) == 4096 and stat.S_IMODE(keys_path.stat().st_mode) == 0o600
    (backup,) = (project / "keys").glob("nvs_keys.bin.replaced-*")
    assert backup.read_bytes() == old and stat.S_IMODE(backup.stat().st_mode) == 0o600
    # The next build re-encrypts with the new keys and touches nothing else.
    proc = _ok(scons(project))
    assert steps(proc) == ["ESP-NVS-ENCRYPT build/nvs_enc.bin"]
    _, enc = _oracle_pair(project, tmp_path, "0x6000")
    assert (project / "build/nvs_enc.bin").read_bytes() == enc
    # The reference decrypts it with the new keys back to the plain partition.
    run_oracle(ORACLE, "decrypt", project / "build/nvs_enc.bin", keys_path, tmp_path / "dec.bin")
    assert (tmp_path / "dec.bin").read_bytes() == (project / "build/nvs.bin").read_bytes()


def test_hmac_keys_and_user_keys(tmp_path: Path) -> None:
    hmac_key = (VECTORS / "nvs/esp-idf/testdata/sample_hmac_key.bin").read_bytes()
    given = (VECTORS / "nvs/esp-idf/testdata/sample_encryption_keys.bin").read_bytes()
    body = (
        "hk = env.NvsKeys('keys/hmac_derived.bin', ESP_NVS_HMAC_KEY='hmac.bin', ESP_NVS_KEYS_REPLACE_ALIAS='replace-hmac')\n"
        "uk = env.NvsKeys('keys/given.bin', 'factory/keys.bin', ESP_NVS_KEYS_REPLACE_ALIAS='replace-given')\n"
        "env.EncryptedNvs('build/a.bin', 'nvs.csv', ESP_NVS_KEYS=hk)\n"
        "env.EncryptedNvs('build/b.bin', 'nvs.csv', ESP_NVS_KEYS=uk)\n"
    )
    files: dict[str, str | bytes] = {"nvs.csv": OTHER_CSV, "hmac.bin": hmac_key, "factory/keys.bin": given}
    folder = _write_project(tmp_path / "p", body, files)
    _ok(scons(folder))
    expected = (VECTORS / "nvs/esp-idf/testdata/sample_encryption_keys_hmac.bin").read_bytes()
    assert (folder / "keys/hmac_derived.bin").read_bytes() == expected
    assert (folder / "keys/given.bin").read_bytes() == given
    run_oracle(ORACLE, "encrypt", "nvs.csv", tmp_path / "ref_b.bin", "0x6000", "--inputkey", "factory/keys.bin", cwd=folder)  # fmt: skip
    assert (folder / "build/b.bin").read_bytes() == (tmp_path / "ref_b.bin").read_bytes()
    # A different HMAC key would mean other keys: refused until replaced on purpose.
    (folder / "hmac.bin").write_bytes(bytes(32))
    a = (folder / "build/a.bin").read_bytes()
    _one_line_error(scons(folder), "keys/hmac_derived.bin", "other NVS keys", "scons replace-hmac")
    assert (folder / "keys/hmac_derived.bin").read_bytes() == expected
    assert steps(_ok(scons(folder, "replace-hmac"))) == ["ESP-NVS-KEYS-REPLACE keys/hmac_derived.bin"]
    assert (folder / "keys/given.bin").read_bytes() == given  # the other alias was not run
    proc = _ok(scons(folder))
    assert sorted(steps(proc)) == ["ESP-NVS-ENCRYPT build/a.bin", "ESP-NVS-KEYS keys/hmac_derived.bin"]
    assert (folder / "build/a.bin").read_bytes() != a
    run_oracle(ORACLE, "generate-key", "--key_protect_hmac", "--kp_hmac_inputkey", folder / "hmac.bin",
               "--keyfile", "k.bin", "--outdir", tmp_path)  # fmt: skip
    assert (folder / "keys/hmac_derived.bin").read_bytes() == (tmp_path / "keys/k.bin").read_bytes()
    # A corrupt keys file of the user's: one line, nothing written.
    (folder / "factory/keys.bin").write_bytes(given[:64] + b"\0\0\0\0" + given[68:])
    shutil.rmtree(folder / "keys")
    _one_line_error(scons(folder, "keys/given.bin"), "factory/keys.bin", "CRC")
    assert not (folder / "keys/given.bin").exists()


# -- errors: one line, no output ------------------------------------------------
@pytest.mark.parametrize(
    ("csv", "needles"),
    [
        ("key,type,encoding,value\nns,namespace,,\nn,data,u8,256\n", ["nvs.csv", "line 3", "out of range"]),
        ("key,type,encoding,value\nn,data,u8,1\n", ["nvs.csv", "line 2", "before any namespace"]),
        ("key,type,encoding,value\nns,namespace,,\nb,file,binary,missing.bin\n", ["nvs.csv", "line 3", "missing.bin"]),
        ("key,type\nns,namespace\n", ["nvs.csv", "header"]),
    ],
    ids=["range", "no-namespace", "missing-file", "header"],
)
def test_bad_csv_is_one_line_without_output(tmp_path: Path, csv: str, needles: list[str]) -> None:
    body = "keys = env.NvsKeys('keys.bin')\nenv.NvsPartition('out/nvs.bin', 'nvs.csv')\nenv.EncryptedNvs('out/enc.bin', 'nvs.csv', ESP_NVS_KEYS=keys)\n"  # fmt: skip
    folder = _write_project(tmp_path / "p", body, {"nvs.csv": csv})
    _ok(scons(folder, "keys.bin"))
    _one_line_error(scons(folder, "out/nvs.bin"), *needles)
    _one_line_error(scons(folder, "out/enc.bin"), *needles)
    assert not (folder / "out/nvs.bin").exists() and not (folder / "out/enc.bin").exists()
    _no_temp_files(folder)


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("env.EncryptedNvs('e.bin', 'nvs.csv')\n", ["ESP_NVS_KEYS"]),
        ("env.NvsPartition('n.bin', 'nvs.csv', ESP_NVS_SIZE=0x1234)\n", ["ESP_NVS_SIZE", "4096"]),
        ("env.NvsKeys('k.bin', 'a.bin', ESP_NVS_HMAC_KEY='h.bin')\n", ["not both"]),
        ("env.NvsMfg('f', ['c.csv', 'v.csv'])\n", ["ESP_NVS_MFG_PREFIX"]),
    ],
    ids=["no-keys", "size", "two-key-sources", "no-prefix"],
)
def test_bad_configuration_is_one_line(tmp_path: Path, body: str, needles: list[str]) -> None:
    folder = _write_project(tmp_path / "p", body, {"nvs.csv": OTHER_CSV, "c.csv": "a,namespace,\n", "v.csv": "x\n"})
    _one_line_error(scons(folder), *needles)
    left = {p.name for p in folder.iterdir() if not p.name.startswith(".sconsign")}
    assert left == {"SConstruct", "nvs.csv", "c.csv", "v.csv"}


# -- manufacturing --------------------------------------------------------------
def _mfg_project(tmp_path: Path, extra: str = "") -> Path:
    folder = tmp_path / "p"
    shutil.copytree(VECTORS / "mfg/run-a/input", folder / "input")
    body = (
        "common = dict(ESP_NVS_MFG_PREFIX='dev', ESP_NVS_MFG_FILEID='serial_no', ESP_NVS_SIZE=0x3000)\n"
        "src = ['input/config.csv', 'input/values.csv']\n"
        "env.NvsMfg('out/plain', src, **common)\n"
        "env.NvsMfg('out/encrypted-inputkey', src, ESP_NVS_KEYS='input/keys/nvs_keys.bin', **common)\n" + extra
    )
    return _write_project(folder, body, {})


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_mfg_vectors_and_rebuilds(tmp_path: Path) -> None:
    folder = _mfg_project(tmp_path)
    proc = _ok(scons(folder, "-j2"))
    assert len(steps(proc)) == 20
    for case in MFG_CASES:
        name = Path(case["expected_dir"]).name
        expected = _files(VECTORS / "mfg" / case["expected_dir"])
        assert len(expected) == len(case["expected"]) == 20
        assert _files(folder / "out" / name) == expected, case["id"]
    assert not list((folder / "input").glob("*_tmp*.csv"))  # nothing next to the inputs
    assert steps(_ok(scons(folder))) == []
    # One device's row: that device only, in both runs.
    values = folder / "input/values.csv"
    values.write_text(values.read_text().replace("SN-A0004,ESP32-C3-DevKit,", "SN-A0004,ESP32-C3-Rev2,"))
    assert sorted(steps(_ok(scons(folder)))) == [
        "ESP-NVS-MFG out/encrypted-inputkey/bin/dev-SN-A0004.bin", "ESP-NVS-MFG out/plain/bin/dev-SN-A0004.bin",
    ]  # fmt: skip
    assert b"ESP32-C3-Rev2" in (folder / "out/plain/csv/dev-SN-A0004.csv").read_bytes()
    # One device's blob file: that device only.
    blob = folder / "input/calib/SN-A0007.bin"
    blob.write_bytes(blob.read_bytes() + b"\x00")
    assert sorted(steps(_ok(scons(folder)))) == [
        "ESP-NVS-MFG out/encrypted-inputkey/bin/dev-SN-A0007.bin", "ESP-NVS-MFG out/plain/bin/dev-SN-A0007.bin",
    ]  # fmt: skip
    # Each rebuilt device still equals the reference run on its CSV.
    run_oracle(ORACLE, "encrypt", folder / "out/plain/csv/dev-SN-A0007.csv", tmp_path / "ref.bin", "0x3000",
               "--inputkey", "keys/nvs_keys.bin", cwd=folder / "input")  # fmt: skip
    assert (folder / "out/encrypted-inputkey/bin/dev-SN-A0007.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    # A bad value names the values line; nothing is written for that device, the others are built.
    text = values.read_text().splitlines(keepends=True)
    line_no = next(i for i, t in enumerate(text, 1) if t.startswith("SN-A0005,"))
    fields = text[line_no - 1].split(",")
    fields[2] = "300"  # hw_rev, a u8
    text[line_no - 1] = ",".join(fields)
    values.write_text("".join(text))
    for sub in ("plain", "encrypted-inputkey"):
        (folder / f"out/{sub}/bin/dev-SN-A0005.bin").unlink()
        (folder / f"out/{sub}/csv/dev-SN-A0005.csv").unlink()
    proc = scons(folder, "out/plain")
    _one_line_error(proc, "values.csv", f"line {line_no}", "hw_rev", "out of range")
    assert not (folder / "out/plain/bin/dev-SN-A0005.bin").exists()
    assert not (folder / "out/plain/csv/dev-SN-A0005.csv").exists()
    _no_temp_files(folder)


def test_mfg_keygen_keeps_device_keys(tmp_path: Path) -> None:
    extra = (
        "env.NvsMfg('out/kg', src, ESP_NVS_MFG_KEYGEN=True, **common)\n"
        "env.NvsMfg('out/hk', src, ESP_NVS_MFG_KEYGEN=True, ESP_NVS_MFG_HMAC_KEYGEN=True, **common)\n"
    )
    folder = _mfg_project(tmp_path, extra)
    _ok(scons(folder, "out/kg", "out/hk"))
    keys = _files(folder / "out/kg/keys")
    hmac_keys = _files(folder / "out/hk/keys")
    assert len(keys) == 10 and len(hmac_keys) == 20 and len(set(keys.values())) == 10
    for path in [*(folder / "out/kg/keys").iterdir(), *(folder / "out/hk/keys").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The reference, run on a device's CSV with that device's keys, gives the same partition.
    for sub, ident in (("kg", "SN-A0002"), ("hk", "SN-A0009")):
        run_oracle(ORACLE, "encrypt", folder / f"out/{sub}/csv/dev-{ident}.csv", tmp_path / "ref.bin", "0x3000",
                   "--inputkey", folder / f"out/{sub}/keys/keys-dev-{ident}.bin", cwd=folder / "input")  # fmt: skip
        assert (folder / f"out/{sub}/bin/dev-{ident}.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    hmac = (folder / "out/hk/keys/hmac-keys-dev-SN-A0009.bin").read_bytes()
    run_oracle(ORACLE, "generate-key", "--key_protect_hmac", "--kp_hmac_inputkey",
               folder / "out/hk/keys/hmac-keys-dev-SN-A0009.bin", "--keyfile", "k.bin", "--outdir", tmp_path)  # fmt: skip
    assert (tmp_path / "keys/k.bin").read_bytes() == hmac_keys["keys-dev-SN-A0009.bin"]
    assert len(hmac) == 32
    # `scons -c` keeps every key; the rebuilt partitions use them.
    bins = _files(folder / "out/kg/bin")
    _ok(scons(folder, "-c", "out/kg", "out/hk"))
    assert not (folder / "out/kg/bin").exists() or not list((folder / "out/kg/bin").iterdir())
    _ok(scons(folder, "out/kg", "out/hk"))
    assert _files(folder / "out/kg/keys") == keys and _files(folder / "out/hk/keys") == hmac_keys
    assert _files(folder / "out/kg/bin") == bins
    # A lost device key stops that device.
    (folder / "out/kg/keys/keys-dev-SN-A0003.bin").unlink()
    _one_line_error(scons(folder, "out/kg"), "keys-dev-SN-A0003.bin", "earlier build")
    assert not (folder / "out/kg/keys/keys-dev-SN-A0003.bin").exists()


def test_mfg_duplicate_file_id(tmp_path: Path) -> None:
    folder = _mfg_project(tmp_path)
    values = folder / "input/values.csv"
    values.write_text(values.read_text().replace("SN-A0006,", "SN-A0005,"))
    _one_line_error(scons(folder), "values.csv", "SN-A0005", "repeats")
    assert not (folder / "out").exists()


def test_module_docstring_lists_every_variable() -> None:
    import esp_secure_build.scons.nvs as mod

    source = Path(mod.__file__).read_text()
    used = set(re.findall(r"\"(ESP_NVS_[A-Z_]+)\"", source))
    internal = {"ESP_NVS_MFG_LINE", "ESP_NVS_MFG_VALUES", "ESP_NVS_MFG_BASE"}
    assert used - internal, used
    for name in used - internal:
        assert f"``{name}``" in (mod.__doc__ or ""), name
