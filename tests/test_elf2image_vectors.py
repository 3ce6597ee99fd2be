"""Every elf2image case of tests/vectors/cases.json, through our CLI."""

from __future__ import annotations

import hashlib
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import VECTORS, case_ids, load_cases

from esp_secure_build.cli.main import main

CASES = load_cases("elf2image")


def test_all_elf2image_vectors_are_collected() -> None:
    assert len(CASES) == 12


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_elf2image_vector(case: dict, tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    argv = [
        a.replace("{out}", str(out)).replace("{elf}", str(VECTORS / case["inputs"]["elf"]))
        for a in case["oracle_cmd"].split()[1:]  # drop "esptool"
    ]
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = main(argv)
    expected = case["expected"]
    if isinstance(expected, str):
        assert rc == 0, err.getvalue()
        assert out.read_bytes() == (VECTORS / expected).read_bytes()
    elif "sha256" in expected:
        assert rc == 0, err.getvalue()
        data = out.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (expected["size"], expected["sha256"])
    else:
        assert rc == 2
        assert not out.exists()
        message = err.getvalue()
        assert message.count("\n") == 1 and "Traceback" not in message
        for needle in expected["error_contains"]:
            assert needle in message
