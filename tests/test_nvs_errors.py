"""Where the reference NVS tools are wrong we refuse: one line, file, line number, problem.

Each case also runs the reference, to show what it does with the same input
(traceback, or silently accepted), as docs/nvs.md lists.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import VECTORS, assert_one_line_error, run_cli, run_oracle

from esp_secure_build.errors import EspSecureError
from esp_secure_build.nvs import NvsKeys, generate_partition
from esp_secure_build.nvs.mfg import MfgOptions, run_mfg

HEAD = "key,type,encoding,value\n"
# id -> (CSV body, size, reference behaviour, problem text we print, line we name)
CASES = {
    "reopened-namespace": ("a,namespace,,\nx,data,u8,1\nb,namespace,,\ny,data,u8,2\na,namespace,,\nz,data,u8,3\n",
                           "0x3000", "accepts", "re-opened", 6),
    "entry-before-namespace": ("x,data,u8,1\na,namespace,,\n", "0x3000", "accepts", "before any namespace", 2),
    "u8-out-of-range": ("a,namespace,,\nx,data,u8,256\n", "0x3000", "crash", "out of range for u8", 3),
    "i64-out-of-range": ("a,namespace,,\nx,data,i64,9223372036854775808\n", "0x3000", "crash", "out of range", 3),
    "hex-integer": ("a,namespace,,\nx,data,u16,0x10\n", "0x3000", "crash", "not a decimal integer", 3),
    "missing-file": ("a,namespace,,\nx,file,binary,nothere.bin\n", "0x3000", "crash", "not found", 3),
    "partition-too-small": ("a,namespace,,\n" + "".join(f"k{i},data,u32,{i}\n" for i in range(300)),
                            "0x3000", "crash", "partition too small", 254),
    "string-fills-page": ("a,namespace,,\nx,data,string," + "s" * 3968 + "\n", "0x3000", "crash", "exceeds 3968", 3),
    "unknown-type": ("a,namespace,,\nx,dat,u8,1\n", "0x3000", "accepts", "unknown type", 3),
    "non-ascii-binary": ("a,namespace,,\nx,data,binary,h\u00e9llo\n", "0x3000", "accepts", "must be ASCII", 3),
    "uppercase-string": ("a,namespace,,\nx,data,STRING,hello\n", "0x3000", "accepts", "unsupported encoding", 3),
    "key-too-long": ("a,namespace,,\nabcdefghijklmnop,data,u8,1\n", "0x3000", "refuses", "longer than 15", 3),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_line(case: str, tmp_path: Path) -> None:
    body, size, reference, problem, line = CASES[case]
    (tmp_path / "in.csv").write_text(HEAD + body, encoding="utf-8")
    proc = run_cli("nvs", "generate", "in.csv", "out.bin", size, cwd=tmp_path)
    assert_one_line_error(proc, "in.csv", f"line {line}:", problem)
    assert not (tmp_path / "out.bin").exists()
    oracle = run_oracle("esp_idf_nvs_partition_gen", "generate", "in.csv", "ref.bin", size, cwd=tmp_path, check=False)
    if reference == "accepts":
        assert oracle.returncode == 0, oracle.stderr
    elif reference == "crash":
        assert oracle.returncode != 0 and "Traceback" in oracle.stderr
    else:
        assert oracle.returncode != 0 and "Traceback" not in oracle.stderr


def test_reopened_namespace_reference_misplaces_entries(tmp_path: Path) -> None:
    """The reference writes z into namespace b: same bytes as the CSV without the re-open row."""
    body = CASES["reopened-namespace"][0]
    (tmp_path / "in.csv").write_text(HEAD + body)
    (tmp_path / "moved.csv").write_text(HEAD + body.replace("a,namespace,,\nz", "z"))
    run_oracle("esp_idf_nvs_partition_gen", "generate", "in.csv", "ref.bin", "0x3000", cwd=tmp_path)
    assert (tmp_path / "ref.bin").read_bytes() == generate_partition(tmp_path / "moved.csv", 0x3000)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["nvs", "generate", "in.csv", "out.bin", "abc"], "not a number"),
        (["nvs", "generate", "in.csv", "out.bin", "0x3001"], "multiple of 4096"),
        (["nvs", "generate", "missing.csv", "out.bin", "0x3000"], "missing.csv"),
        (["nvs", "encrypt", "in.csv", "out.bin", "0x3000"], "--keygen"),
        (["nvs", "encrypt", "in.csv", "out.bin", "0x3000", "--inputkey", "short.bin"], "short.bin"),
        (["nvs", "encrypt", "in.csv", "out.bin", "0x3000", "--inputkey", "badcrc.bin"], "CRC"),
        (["nvs", "generate-key", "--key_protect_hmac"], "--kp_hmac_keygen"),
        (["nvs", "generate-key", "--kp_hmac_inputkey", "h.bin"], "needs --key_protect_hmac"),
        (["nvs", "decrypt", "in.csv", "keys.bin", "out.bin"], "multiple of 4096"),
    ],
)
def test_cli_bad_input(args: list[str], needle: str, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(HEAD + "a,namespace,,\nx,data,u8,1\n")
    (tmp_path / "short.bin").write_bytes(b"\x01" * 40)
    (tmp_path / "badcrc.bin").write_bytes(bytes(range(64)) + b"\0\0\0\0" + b"\xff" * 4028)
    (tmp_path / "keys.bin").write_bytes(NvsKeys.generate().partition())
    proc = run_cli(*args, cwd=tmp_path)
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "out.bin").exists()
    assert not (tmp_path / "keys").exists()


def test_generate_key_refuses_to_replace_keys(tmp_path: Path) -> None:
    first = run_cli("nvs", "generate-key", "--keyfile", "k.bin", "--outdir", tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "keys" / "k.bin").read_bytes()
    again = run_cli("nvs", "generate-key", "--keyfile", "k.bin", "--outdir", tmp_path)
    assert_one_line_error(again, "k.bin", "refusing to replace")
    assert (tmp_path / "keys" / "k.bin").read_bytes() == before
    assert NvsKeys.from_partition(before) != NvsKeys.generate()


# -- manufacturing -----------------------------------------------------------
def _mfg_input(tmp_path: Path) -> Path:
    work = tmp_path / "input"
    shutil.copytree(VECTORS / "mfg" / "run-a" / "input", work)
    return work


def _set_value(work: Path, line: int, column: str, value: str) -> None:
    lines = (work / "values.csv").read_text().splitlines(keepends=True)
    header = lines[0].strip().split(",")
    fields = lines[line - 1].rstrip("\n").split(",")
    fields[header.index(column)] = value
    lines[line - 1] = ",".join(fields) + "\n"
    (work / "values.csv").write_text("".join(lines))


@pytest.mark.parametrize("keygen", [False, True], ids=["plain", "keygen"])
def test_mfg_bad_value_writes_nothing(keygen: bool, tmp_path: Path) -> None:
    """All or nothing: a bad value in row N leaves no file of rows 1..N-1 (keys included)."""
    work = _mfg_input(tmp_path)
    _set_value(work, 5, "hw_rev", "300")  # SN-A0004
    proc = run_cli("mfg", "generate", "config.csv", "values.csv", "dev", "0x3000", "--fileid", "serial_no",
                   "--outdir", "out", *(["--keygen"] if keygen else []), "-j", "1", cwd=work)  # fmt: skip
    assert_one_line_error(proc, "values.csv", "line 5:", "hw_rev", "out of range for u8")
    assert not [p for p in (work / "out").rglob("*") if p.is_file()]  # no device file, no temporary file


def test_mfg_extra_values_column_refused(tmp_path: Path) -> None:
    """mfg_gen.py drops a column the config does not name; a device would miss that value."""
    work = _mfg_input(tmp_path)
    lines = (work / "values.csv").read_text().splitlines()
    (work / "values.csv").write_text("\n".join([lines[0] + ",wifi_pass"] + [line + ",secret" for line in lines[1:]]))
    proc = run_cli("mfg", "generate", "config.csv", "values.csv", "dev", "0x3000", "--fileid", "serial_no",
                   "--outdir", "out", cwd=work)  # fmt: skip
    assert_one_line_error(proc, "values.csv", "'wifi_pass'", "not a key of the config")
    assert not (work / "out").exists()


def test_mfg_fileid_column_may_be_extra(tmp_path: Path) -> None:
    work = _mfg_input(tmp_path)
    (work / "config.csv").write_text("device,namespace,\nmodel,data,string\n")
    (work / "values.csv").write_text("serial_no,model\nSN-1,m1\nSN-2,m2\n")
    proc = run_cli("mfg", "generate", "config.csv", "values.csv", "dev", "0x3000", "--fileid", "serial_no",
                   "--outdir", "out", cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (work / "out" / "bin").iterdir()) == ["dev-SN-1.bin", "dev-SN-2.bin"]


def test_mfg_config_row_with_empty_fourth_column(tmp_path: Path) -> None:
    """``app,namespace,,`` (a spreadsheet's trailing empty column) is the namespace line it means."""
    work = _mfg_input(tmp_path)
    (work / "config.csv").write_text((work / "config.csv").read_text().replace("device,namespace,\n", "device,namespace,,\n"))
    (work / "ref").mkdir()
    (work / "ref" / "config.csv").write_text((work / "config.csv").read_text().replace("device,namespace,,\n", "device,namespace,\n"))
    args = ["values.csv", "dev", "0x3000", "--fileid", "serial_no"]
    proc = run_cli("mfg", "generate", "config.csv", *args, "--outdir", "out", cwd=work)
    assert proc.returncode == 0, proc.stderr
    ref = run_cli("mfg", "generate", "ref/config.csv", *args, "--outdir", "out-ref", cwd=work)
    assert ref.returncode == 0, ref.stderr
    for sub in ("bin", "csv"):
        for path in (work / "out" / sub).iterdir():
            assert path.read_bytes() == (work / "out-ref" / sub / path.name).read_bytes()


@pytest.mark.parametrize(
    "edit, needles",
    [
        (
            lambda w: (w / "values.csv").write_text((w / "values.csv").read_text() + "SN-X,1\n"),
            ["line 13:", "values for"],
        ),
        (lambda w: _set_value(w, 3, "serial_no", "SN-A0001"), ["line 3:", "repeats"]),
        (
            lambda w: (w / "config.csv").write_text((w / "config.csv").read_text() + "extra,data,u8\n"),
            ["config.csv", "extra"],
        ),
        (lambda w: (w / "config.csv").write_text("dev,namespace,\nx,data,float\n"), ["config.csv", "line 2:", "float"]),
        (
            lambda w: (w / "config.csv").write_text((w / "config.csv").read_text() + "device,namespace,\n"),
            ["config.csv", "line 14:", "re-opened"],
        ),
        (lambda w: (w / "config.csv").write_text("serial_no,data,string\n"), ["config.csv", "line 1:", "before any"]),
        (
            lambda w: (w / "out" / "bin").mkdir(parents=True) or (w / "out/bin/dev-SN-A0009.bin").write_bytes(b""),
            ["dev-SN-A0009.bin", "exists"],
        ),
    ],
    ids=["column-count", "duplicate-id", "key-missing", "bad-encoding", "reopened", "no-namespace", "output-exists"],
)
def test_mfg_structure_errors_write_nothing(edit, needles: list[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    work = _mfg_input(tmp_path)
    edit(work)
    proc = run_cli("mfg", "generate", "config.csv", "values.csv", "dev", "0x3000", "--fileid", "serial_no",
                   "--outdir", "out", cwd=work)  # fmt: skip
    assert_one_line_error(proc, *needles)
    assert not (work / "out" / "csv").exists()


def test_mfg_options_refused(tmp_path: Path) -> None:
    work = _mfg_input(tmp_path)
    proc = run_cli("mfg", "generate", "config.csv", "values.csv", "dev", "0x3000", "--key_protect_hmac",
                   "--kp_hmac_keygen", cwd=work)  # fmt: skip
    assert_one_line_error(proc, "--keygen")
    with pytest.raises(EspSecureError, match="prefix"):
        run_mfg(work / "config.csv", work / "values.csv", "a/b", tmp_path / "o", MfgOptions(0x3000, base_dir=work))
