"""Manufacturing on a generated batch: every device compared with the reference run on its CSV."""

from __future__ import annotations

import csv
import io
import random
import stat
import threading
from pathlib import Path

import pytest
from conftest import run_cli, run_oracle

from esp_secure_build.nvs import NvsKeys, decrypt_partition, generate_partition, load_keys
from esp_secure_build.nvs.mfg import MfgEncryption, MfgOptions, run_mfg

CONFIG = """\
factory,namespace,
serial,data,string
model,data,string,REPEAT
rev,data,u8
count,data,u16
offset,data,i32
small,data,i8
big,data,u32
mac,data,hex2bin
token,data,base64
blob,data,binary
cert,file,string
calib,file,binary
wide,data,i16
huge,data,u64
neg,data,i64
wifi,namespace,
ssid,data,string,REPEAT
psk,data,string
"""


def _batch(tmp_path: Path, devices: int, seed: int, version: int = 2) -> Path:
    """A config, a values CSV (with blank lines) and per-device files."""
    rng = random.Random(seed)
    work = tmp_path / "in"
    (work / "files").mkdir(parents=True)
    (work / "config.csv").write_text(CONFIG)
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    keys = ["serial", "model", "rev", "count", "offset", "small", "big", "mac", "token", "blob", "cert",
            "calib", "wide", "huge", "neg", "ssid", "psk"]  # fmt: skip
    out.writerow(keys)
    for n in range(devices):
        serial = f"SN{seed}-{n:04d}"
        big = 1900 if version == 1 else 9000
        (work / "files" / f"{serial}.pem").write_text("-----BEGIN X-----\n" + "A" * rng.randint(0, big // 3) + "\n")
        (work / "files" / f"{serial}.cal").write_bytes(rng.randbytes(rng.choice([0, 31, 1984, rng.randint(0, big)])))
        out.writerow([
            serial, "Model \"X\", rev" if n == 0 else "", rng.randint(0, 255), rng.randint(0, 65535),
            rng.randint(-(2**31), 2**31 - 1), rng.randint(-128, 127), rng.randint(0, 2**32 - 1),
            rng.randbytes(6).hex(), "dG9rZW4=", "abc,def", f"files/{serial}.pem", f"files/{serial}.cal",
            rng.randint(-32768, 32767), rng.randint(0, 2**64 - 1), rng.randint(-(2**63), 2**63 - 1),
            "factory-ap" if n == 0 else "", "pw " * rng.randint(0, 20),
        ])  # fmt: skip
        if n == 1:
            buf.write("\n  \n")
    (work / "values.csv").write_text(buf.getvalue())
    return work


@pytest.mark.parametrize("version", [1, 2])
def test_batch_matches_reference_per_device(version: int, tmp_path: Path) -> None:
    work = _batch(tmp_path, 4, seed=version, version=version)
    keys = NvsKeys.generate()
    (work / "keys.bin").write_bytes(keys.partition())
    size = 0x8000
    plain = run_mfg(work / "config.csv", work / "values.csv", "dev", tmp_path / "plain",
                    MfgOptions(size, version, "serial", base_dir=work), jobs=2)  # fmt: skip
    enc = run_mfg(work / "config.csv", work / "values.csv", "dev", tmp_path / "enc",
                  MfgOptions(size, version, "serial", MfgEncryption(keys=keys), base_dir=work), jobs=1)  # fmt: skip
    assert plain == enc == 4
    for device_csv in sorted((tmp_path / "plain" / "csv").iterdir()):
        name = device_csv.stem
        assert device_csv.read_bytes() == (tmp_path / "enc" / "csv" / device_csv.name).read_bytes()
        run_oracle("esp_idf_nvs_partition_gen", "generate", device_csv, "ref.bin", hex(size), "--version",
                   str(version), cwd=work)  # fmt: skip
        assert (tmp_path / "plain" / "bin" / f"{name}.bin").read_bytes() == (work / "ref.bin").read_bytes()
        run_oracle("esp_idf_nvs_partition_gen", "encrypt", device_csv, "ref.bin", hex(size), "--version",
                   str(version), "--inputkey", "keys.bin", cwd=work)  # fmt: skip
        assert (tmp_path / "enc" / "bin" / f"{name}.bin").read_bytes() == (work / "ref.bin").read_bytes()
    # REPEAT: the first device's value everywhere.
    texts = [p.read_bytes().decode() for p in sorted((tmp_path / "plain" / "csv").iterdir())]
    assert all(
        'model,data,string,"Model ""X"", rev"\r\n' in t and "ssid,data,string,factory-ap\r\n" in t for t in texts
    )


def test_keygen_per_device(tmp_path: Path) -> None:
    work = _batch(tmp_path, 3, seed=5)
    proc = run_cli(
        "mfg", "generate", "config.csv", "values.csv", "p", "0x6000", "--keygen", "--outdir", "out", cwd=work
    )
    assert proc.returncode == 0, proc.stderr
    out = work / "out"
    assert sorted(p.name for p in (out / "bin").iterdir()) == ["p-1.bin", "p-2.bin", "p-3.bin"]
    seen = set()
    for n in (1, 2, 3):
        key_file = out / "keys" / f"keys-p-{n}.bin"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        keys = load_keys(key_file)
        seen.add(keys.eky)
        plain = generate_partition(out / "csv" / f"p-{n}.csv", 0x6000, base_dir=work)
        assert decrypt_partition((out / "bin" / f"p-{n}.bin").read_bytes(), keys) == plain
    assert len(seen) == 3


def test_keygen_hmac_modes(tmp_path: Path) -> None:
    work = _batch(tmp_path, 2, seed=6)
    hmac_key = bytes(range(32))
    (work / "hmac.bin").write_bytes(hmac_key)
    proc = run_cli("mfg", "generate", "config.csv", "values.csv", "p", "0x6000", "--fileid", "serial", "--keygen",
                   "--key_protect_hmac", "--kp_hmac_inputkey", "hmac.bin", "--outdir", "a", cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    derived = NvsKeys.from_hmac_key(hmac_key).partition()
    assert [p.read_bytes() for p in sorted((work / "a" / "keys").iterdir())] == [derived, derived]
    proc = run_cli("nvs", "mfg", "generate", "config.csv", "values.csv", "p", "0x6000", "--keygen",
                   "--key_protect_hmac", "--kp_hmac_keygen", "--outdir", "b", cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for n in (1, 2):
        hmac_file = work / "b" / "keys" / f"hmac-keys-p-{n}.bin"
        assert stat.S_IMODE(hmac_file.stat().st_mode) == 0o600 and len(hmac_file.read_bytes()) == 32
        keys = NvsKeys.from_hmac_key(hmac_file.read_bytes())
        assert (work / "b" / "keys" / f"keys-p-{n}.bin").read_bytes() == keys.partition()
        plain = generate_partition(work / "b" / "csv" / f"p-{n}.csv", 0x6000, base_dir=work)
        assert decrypt_partition((work / "b" / "bin" / f"p-{n}.bin").read_bytes(), keys) == plain


def test_progress_and_single_process_agree(tmp_path: Path) -> None:
    work = _batch(tmp_path, 40, seed=7)
    calls: list[tuple[int, int]] = []
    opts = MfgOptions(0x8000, 2, "serial", base_dir=work)
    run_mfg(work / "config.csv", work / "values.csv", "d", tmp_path / "one", opts, jobs=1, batch=7)
    run_mfg(work / "config.csv", work / "values.csv", "d", tmp_path / "two", opts, jobs=2, batch=16,
            progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert calls == [(n, 40) for n in range(1, 41)]
    for f in (tmp_path / "one").rglob("*.*"):
        assert f.read_bytes() == (tmp_path / "two" / f.relative_to(tmp_path / "one")).read_bytes()


def test_threaded_caller_uses_safe_start_method(tmp_path: Path) -> None:
    """Called from a thread (as from SCons -j), workers are not forked from the threaded process."""
    work = _batch(tmp_path, 20, seed=8)
    opts = MfgOptions(0x8000, 2, "serial", MfgEncryption(keys=NvsKeys.generate()), base_dir=work)
    run_mfg(work / "config.csv", work / "values.csv", "d", tmp_path / "main", opts, jobs=1)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_mfg(work / "config.csv", work / "values.csv", "d", tmp_path / "thread", opts, jobs=2, batch=8)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not errors and not thread.is_alive()
    for f in (tmp_path / "main").rglob("*.*"):
        assert f.read_bytes() == (tmp_path / "thread" / f.relative_to(tmp_path / "main")).read_bytes()
