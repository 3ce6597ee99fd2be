"""esp_crt_bundle files, byte for byte against the bundles ESP-IDF's gen_crt_bundle.py made."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import VECTORS, assert_one_line_error, run_cli
from cryptography.hazmat.primitives import serialization
from test_certs_pki import NOW, make_cert, make_chain, new_key, pem, write

from esp_secure_build import certs, crt_bundle
from esp_secure_build.errors import EspSecureError

BUNDLES = VECTORS / "crt-bundle"
CASES = json.loads((BUNDLES / "cases.json").read_text())
FORMATS = [("expected", False), ("expected_legacy", True)]


def _files(case: dict) -> list[Path]:
    """The case's -i arguments as paths, in order."""
    args = case["args"]
    assert args[0] == "-i"
    return [BUNDLES / case["cwd"] / a for a in args[1:]]


def _expected(case: dict, key: str) -> bytes:
    return (BUNDLES / case[key]).read_bytes()


def test_all_cases_have_expected_bundles() -> None:
    assert len(CASES) == 2
    for case in CASES:
        assert "expected" in case and "expected_legacy" in case, case["id"]


@pytest.mark.parametrize("key, legacy", FORMATS, ids=["current", "legacy"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_vectors_in_process(case: dict, key: str, legacy: bool) -> None:
    result = crt_bundle.make_bundle(_files(case), legacy=legacy)
    assert result.data == _expected(case, key)
    assert result.warnings == ()


@pytest.mark.parametrize("key, legacy", FORMATS, ids=["current", "legacy"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_vectors_cli(case: dict, key: str, legacy: bool, tmp_path: Path) -> None:
    out = tmp_path / "x509_crt_bundle"
    proc = run_cli("crt-bundle", *case["args"], "-o", out, *(["--legacy"] if legacy else []), cwd=BUNDLES / case["cwd"])
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == _expected(case, key)


@pytest.mark.parametrize("key, legacy", FORMATS, ids=["current", "legacy"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_folder_input(case: dict, key: str, legacy: bool, tmp_path: Path) -> None:
    """A folder gives its *.pem and *.der files; other files are ignored, as by the script."""
    folder = tmp_path / "in"
    shutil.copytree(BUNDLES / case["cwd"], folder)
    write(folder / "README.txt", b"not a certificate\n")
    assert crt_bundle.make_bundle([folder], legacy=legacy).data == _expected(case, key)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_no_final_newline_and_crlf_kept(case: dict, tmp_path: Path) -> None:
    """The script drops a last certificate without a final newline; we keep it (same bundle as with it)."""
    files = []
    for src in _files(case):
        data = src.read_bytes()
        if src.suffix == ".pem":
            assert data.endswith(b"-----END CERTIFICATE-----\n")
            data = data.rstrip(b"\n")
        files.append(write(tmp_path / src.name, data))
    assert crt_bundle.make_bundle(files).data == _expected(case, "expected")
    for f in files:
        if f.suffix == ".pem":
            f.write_bytes(f.read_bytes().replace(b"\n", b"\r\n") + b"\r\n")
    assert crt_bundle.make_bundle(files).data == _expected(case, "expected")


def test_extension_does_not_matter_for_named_files(tmp_path: Path) -> None:
    case = CASES[1]
    files = [write(tmp_path / (src.stem + ".crt"), src.read_bytes()) for src in _files(case)]
    assert crt_bundle.make_bundle(files).data == _expected(case, "expected")


def _cacrt_all(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """A cacrt_all.pem in ESP-IDF's layout holding the certificates of both sets, one name each."""
    text = "##\n## Bundle of CA Root Certificates\n##\n\n"
    names: dict[str, list[str]] = {}
    for case in CASES:
        names[case["id"]] = []
        for n, src in enumerate(_files(case)):
            for k, cert in enumerate(certs.load_certificates(src)):
                name = f"{case['id']} cert {n}.{k}"
                names[case["id"]].append(name)
                block = cert.public_bytes(serialization.Encoding.PEM).decode()
                text += f"{name}\n{'=' * len(name)}\n{block}\n"
    return write(tmp_path / "cacrt_all.pem", text.encode()), names


@pytest.mark.parametrize("key, legacy", FORMATS, ids=["current", "legacy"])
def test_filter(tmp_path: Path, key: str, legacy: bool) -> None:
    all_pem, names = _cacrt_all(tmp_path)
    for case in CASES:
        csv = tmp_path / f"{case['id']}.csv"
        rows = ["Owner,Common Name or Certificate Name"] + [f"Someone,{n}" for n in names[case["id"]]]
        csv.write_text("\n".join(rows) + "\n")
        result = crt_bundle.make_bundle([all_pem], filter_csv=csv, legacy=legacy)
        assert result.data == _expected(case, key), case["id"]
    # The filter applies to cacrt_all.pem only: another file name keeps everything.
    other = write(tmp_path / "other.pem", all_pem.read_bytes())
    total = sum(len(v) for v in names.values())
    assert len(crt_bundle.make_bundle([other], filter_csv=csv).entries) == total


def test_filter_cli_and_empty_selection(tmp_path: Path) -> None:
    all_pem, names = _cacrt_all(tmp_path)
    csv = write(tmp_path / "f.csv", ("h1,h2\n" + "".join(f"x,{n}\n" for n in names["set1-pem-only"])).encode())
    out = tmp_path / "b"
    proc = run_cli("crt-bundle", "-i", all_pem, "--filter", csv, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == _expected(CASES[0], "expected")
    none = write(tmp_path / "none.csv", b"h1,h2\nx,no such name\n")
    proc = run_cli("crt-bundle", "-i", all_pem, "--filter", none, "-o", tmp_path / "c")
    assert_one_line_error(proc, "cacrt_all.pem", "selected no certificate")
    assert not (tmp_path / "c").exists()


def test_max_certs(tmp_path: Path) -> None:
    case = CASES[1]  # six entries
    out = tmp_path / "b"
    proc = run_cli("crt-bundle", *case["args"], "--max-certs", "5", "-o", out, cwd=BUNDLES / case["cwd"])
    assert_one_line_error(proc, "6 certificates exceed the maximum of 5")
    assert not out.exists()
    proc = run_cli("crt-bundle", *case["args"], "--max-certs", "6", "-o", out, cwd=BUNDLES / case["cwd"])
    assert proc.returncode == 0 and out.read_bytes() == _expected(case, "expected")
    with pytest.raises(EspSecureError, match="exceed the maximum of 5"):
        crt_bundle.make_bundle(_files(case), legacy=True, max_certs=5)


@pytest.mark.parametrize("key, legacy", FORMATS, ids=["current", "legacy"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_parse_bundle(case: dict, key: str, legacy: bool) -> None:
    """Reading the reference file back gives every input's subject and key, sorted by subject."""
    entries = crt_bundle.parse_bundle(_expected(case, key), legacy=legacy)
    inputs = [c for f in _files(case) for c in certs.load_certificates(f)]
    want = sorted(
        (
            c.subject.public_bytes(),
            c.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
        for c in inputs
    )
    assert entries == want


def test_checks_per_certificate(tmp_path: Path) -> None:
    chain = make_chain()[0]
    leaf = write(tmp_path / "leaf.pem", pem(chain[0]))
    good = _files(CASES[0])
    with pytest.raises(EspSecureError, match=r"leaf\.pem: certificate .*is not a CA"):
        crt_bundle.make_bundle([*good, leaf])
    assert len(crt_bundle.make_bundle([*good, leaf], check=False).entries) == 5
    expired = make_cert("Old", new_key(), not_before=NOW - timedelta(days=900), not_after=NOW - timedelta(days=1))
    old = write(tmp_path / "old.der", expired.public_bytes(serialization.Encoding.DER))
    proc = run_cli("crt-bundle", "-i", *good, old, "-o", tmp_path / "b")
    assert_one_line_error(proc, "old.der", "expired on")
    assert not (tmp_path / "b").exists()
    proc = run_cli("crt-bundle", "-i", *good, old, "--no-check", "-o", tmp_path / "b")
    assert proc.returncode == 0, proc.stderr
    # An intermediate is a valid trust anchor: it goes in with a warning.
    inter = write(tmp_path / "inter.pem", pem(chain[1]))
    result = crt_bundle.make_bundle([*good, inter])
    assert len(result.entries) == 5 and "not self-signed" in result.warnings[0]


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda d: d, "no .pem or .der certificate files in folder"),
        (lambda d: write(d / "empty.pem", b"# nothing here\n"), "no certificate found"),
        (lambda d: d / "missing.pem", "neither a file nor a folder"),
        (
            lambda d: write(d / "key.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            "private key",
        ),
    ],
    ids=["empty-folder", "pem-without-cert", "missing", "private-key"],
)
def test_cli_bad_inputs(tmp_path: Path, make, needle: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    target = make(folder)
    out = tmp_path / "bundle"
    proc = run_cli("crt-bundle", "-i", target, "-o", out)
    assert_one_line_error(proc, needle)
    assert not out.exists()
