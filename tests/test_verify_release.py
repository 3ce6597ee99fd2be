"""``esp-secure verify-release`` and the verification every ``scons release`` ends with.

The sample is built once per configuration (ESP32-C3 RSA V2 + XTS, ESP32 V1 +
AES-256, ESP32-C6 ECDSA V2 + XTS); each test tampers with a copy of a release
folder the way a bug or an attacker would, keeps the files consistent with each
other (factory image, flashed file, ``.hex``, manifest hashes) so that only the
chip's view can tell, and checks that the named check fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli, run_oracle
from sconsutil import copy_sample, release_dir, scons, steps

from esp_secure_build import flash_encryption as fe
from esp_secure_build.chips import get_chip
from esp_secure_build.factory import Region, merge_bin
from esp_secure_build.ihex import decode as read_hex
from esp_secure_build.release_check import hex_matches_bin, verify_release

CONFIGS = {
    "esp32c3": (),
    "esp32": ("ESP_CHIP=esp32",),
    "esp32c6": ("ESP_CHIP=esp32c6", "ESP_DEV_KEY_SCHEME=ecdsa256"),
}
SIGNING_KEY = {"esp32c3": "esp32c3_secure_boot_v2_rsa3072.pem", "esp32": "esp32_secure_boot_v1_ecdsa256.pem",
               "esp32c6": "esp32c6_secure_boot_v2_ecdsa256.pem"}  # fmt: skip


def _v1_key(project: Path, release: Path) -> bytes:
    """The ESP32 V1 eFuse key the build made (with the keys, or in older layouts under the release)."""
    found = sorted(project.glob("keys/*secure-bootloader-key-256.bin")) + sorted(release.glob("secret/*.bin"))
    return found[0].read_bytes()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_sample(tmp_path_factory.mktemp("verify"))
    for chip, args in CONFIGS.items():
        proc = scons(project, "release", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"release {release_dir(project, chip).relative_to(project)} verified" in proc.stdout
    return project


class Rel:
    """A copy of one configuration's release folder, with its keys, to tamper with."""

    def __init__(self, project: Path, chip: str, dest: Path) -> None:
        self.chip = get_chip(chip)
        self.dir = dest / "release"
        shutil.copytree(release_dir(project, chip), self.dir)
        self.key = (project / f"keys/{chip}_flash_encryption_key.bin").read_bytes()
        self.signing_key = project / "keys" / SIGNING_KEY[chip]
        self.v1_key = _v1_key(project, self.dir) if chip == "esp32" else None
        self.manifest = json.loads((self.dir / "manifest.json").read_text())

    @property
    def factory(self) -> Path:
        return self.dir / "factory-encrypted.bin"

    def verify(self, **kwargs: object):  # type: ignore[no-untyped-def]
        options = {"flash_key": self.key, "v1_key": self.v1_key, **kwargs}
        return verify_release(str(self.dir), **options)  # type: ignore[arg-type]

    def failed(self, **kwargs: object) -> set[str]:
        return {c.name for c in self.verify(**kwargs).failures}

    def scheme(self) -> str:
        return fe.scheme_for_chip(self.chip)

    def flash_write(self, address: int, data: bytes) -> None:
        """Write raw (already encrypted where the region is) bytes at a flash address, consistently everywhere."""
        raw = bytearray(self.factory.read_bytes())
        raw[address : address + len(data)] = data
        self.factory.write_bytes(bytes(raw))
        for item in self.manifest["flash"]:
            offset = int(item["offset"], 16)
            if offset <= address < offset + item["size"]:
                path = self.dir / item["file"]
                content = bytearray(path.read_bytes())
                content[address - offset : address - offset + len(data)] = data
                path.write_bytes(bytes(content))
        self.rebless()

    def write_plain(self, address: int, plain: bytes) -> None:
        """Encrypt plaintext for ``address`` with the release's flash key and write it there."""
        self.flash_write(address, fe.encrypt(plain, self.key, address, self.scheme()))

    def read_plain(self, address: int, size: int) -> bytes:
        raw = self.factory.read_bytes()[address : address + size + (-size % 32)]
        return fe.decrypt(raw, self.key, address, self.scheme())[:size]

    def rebless(self) -> None:
        """What a careless or hostile rebuild of the manifest and .hex would do: make them agree again."""
        raw = self.factory.read_bytes()
        (self.dir / "factory-encrypted.hex").write_bytes(merge_bin(self.chip, [Region(0, raw)], "hex"))
        for item in self.manifest["files"] + self.manifest["flash"]:
            data = (self.dir / item["file"]).read_bytes()
            item["size"], item["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        (self.dir / "manifest.json").write_text(json.dumps(self.manifest))


@pytest.fixture(params=list(CONFIGS))
def rel(request: pytest.FixtureRequest, sample: Path, tmp_path: Path) -> Rel:
    return Rel(sample, request.param, tmp_path)


def test_clean_release_verifies(rel: Rel) -> None:
    report = rel.verify()
    assert report.passed, report.table()
    names = [c.name for c in report.checks]
    assert names == ["manifest", "factory .hex", "factory layout", "bootloader", "partition table", "app factory",
                     "nvs keys nvs_keys", "nvs nvs", "plaintext copies"]  # fmt: skip
    assert all(c.status == "ok" for c in report.checks), report.table()
    assert "1 namespace(s), 7 item(s)" in report.checks[-2].detail
    assert report.checks[-1].detail.startswith("app.bin, bootloader")


def test_ota_app_differing_from_the_flashed_one_is_caught(rel: Rel) -> None:
    """app.bin (what OTA ships) re-signed, and the manifest made to agree: the flashed app is another one."""
    app = bytearray((rel.dir / "app.bin").read_bytes())
    app[0x30] ^= 1
    (rel.dir / "app.bin").write_bytes(bytes(app))
    rel.rebless()
    report = rel.verify()
    assert {c.name for c in report.failures} == {"plaintext copies"}
    assert "app.bin: is not what the chip reads in region 'factory'" in report.failures[0].detail


def test_cli_table_and_exit_codes(sample: Path, tmp_path: Path) -> None:
    rel = Rel(sample, "esp32c3", tmp_path)
    key = tmp_path / "fe.bin"
    key.write_bytes(rel.key)
    digest = (rel.dir / "secure_boot_key0_digest.bin").read_bytes().hex()
    ok = run_cli("verify-release", rel.dir, "--flash-key", key, "--expect-digest", digest)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "app factory" in ok.stdout and ok.stdout.rstrip().endswith("VERIFIED")
    other = hashlib.sha256(b"another key").hexdigest()
    bad = run_cli("verify-release", rel.dir, "--flash-key", key, "--expect-digest", other)
    assert bad.returncode == 1 and "NOT VERIFIED: bootloader, app factory" in bad.stdout, bad.stdout
    assert "not an expected key" in bad.stderr and len(bad.stderr.splitlines()) == 1
    no_key = run_cli("verify-release", rel.dir)
    assert no_key.returncode == 0 and "give --flash-key" in no_key.stdout
    short = tmp_path / "short.bin"
    short.write_bytes(bytes(range(20)))
    assert_one_line_error(run_cli("verify-release", rel.dir, "--flash-key", short), "short.bin")
    assert_one_line_error(run_cli("verify-release", tmp_path / "nope"), "nope", "not found")
    assert_one_line_error(run_cli("verify-release", tmp_path), "no manifest.json")
    assert_one_line_error(run_cli("verify-release", rel.dir, "--expect-digest", "xyz"), "--expect-digest")


def _regions(rel: Rel) -> dict[str, int]:
    """One meaningful byte per region: image header/segment, table entry, NVS entry, keys, V1 digest."""
    table = int(rel.manifest["partition_table_offset"], 16)
    regions = {"bootloader": rel.chip.bootloader_offset + 0x30, "partition table": table + 4,
               "nvs nvs": 0x9000 + 64 + 5, "nvs keys nvs_keys": 0xF000 + 3, "app factory": 0x10000 + 0x40}  # fmt: skip
    if rel.chip.name == "esp32":
        regions["bootloader (V1 digest)"] = 0x80 + 7
    return regions


def test_one_corrupt_byte_in_each_region_is_caught(rel: Rel) -> None:
    original = rel.factory.read_bytes()
    for check, address in _regions(rel).items():
        rel.flash_write(address, bytes([original[address] ^ 0x01]))
        assert rel.failed() - {"plaintext copies"} == {check.split(" (")[0]}, check
        rel.flash_write(address, original[address : address + 1])
    assert rel.verify().passed


def test_manifest_hex_and_layout_catch_unblessed_changes(rel: Rel) -> None:
    factory = bytearray(rel.factory.read_bytes())
    factory[0x10000 + 0x40] ^= 1
    rel.factory.write_bytes(bytes(factory))
    assert rel.failed() == {"manifest", "factory .hex", "factory layout", "app factory", "plaintext copies"}
    hex_path = rel.dir / "factory-encrypted.hex"
    assert "differs from the .bin at 0x10040" in hex_matches_bin(hex_path.read_bytes(), bytes(factory))
    (rel.dir / "stray.bin").write_bytes(b"x")
    assert "stray.bin is not part of this release" in rel.verify().checks[0].detail


def test_wrong_flash_key_is_caught(rel: Rel) -> None:
    assert "bootloader" in rel.failed(flash_key=os.urandom(32))


def test_another_signing_key_is_caught(rel: Rel) -> None:
    """The app replaced by one signed (correctly) with another key, encrypted and placed consistently."""
    from esp_secure_build.secure_boot import v1, v2
    from esp_secure_build.secure_boot.keys import generate_private_key, scheme_of
    from esp_secure_build.secure_boot.signers import LocalKeySigner

    app = (rel.dir / "app.bin").read_bytes()
    signed_with = LocalKeySigner.from_file(rel.signing_key)
    other = LocalKeySigner(generate_private_key(scheme_of(signed_with.public_key())))
    if rel.chip.secure_boot_v1:
        forged = v1.sign(app[: -v1.SIGNATURE_BLOCK_LEN], other)
    else:
        forged = v2.sign(app[:-4096], [other], chip=rel.chip)
    rel.write_plain(0x10000, forged)
    (rel.dir / "app.bin").write_bytes(forged)  # what OTA would ship too
    rel.rebless()
    assert rel.failed() == {"app factory"}


def test_moved_partition_is_caught(rel: Rel) -> None:
    """A partition table that puts the app somewhere else (MD5 recomputed, encrypted with the right key)."""
    from esp_secure_build.partition_table import parse_binary

    table = parse_binary(rel.read_plain(0x8000, 0xC00))
    table.find("factory").offset = 0x20000
    binary = table.to_binary()
    rel.write_plain(0x8000, binary)
    (rel.dir / "partition-table.bin").write_bytes(binary)
    rel.rebless()
    report = rel.verify()
    assert {c.name for c in report.failures} == {"partition table"}
    assert "'factory' is at 0x20000 in flash" in report.failures[0].detail


def test_otadata_must_be_erased(sample: Path, tmp_path: Path) -> None:
    rel = Rel(sample, "esp32c3", tmp_path)
    # An otadata partition added to the table (in flash and in partition-table.bin).
    from esp_secure_build.partition_table import DATA, SUBTYPE_OTA, Partition, parse_binary

    table = parse_binary(rel.read_plain(0x8000, 0xC00))
    table.partitions.append(Partition("otadata", DATA, SUBTYPE_OTA, 0x200000, 0x2000))
    rel.write_plain(0x8000, table.to_binary())
    (rel.dir / "partition-table.bin").write_bytes(table.to_binary())
    rel.rebless()
    assert rel.verify().passed, rel.verify().table()  # not written by the factory image: erased on a new chip
    rel.manifest["flash"].append({"region": "otadata", "offset": "0x200000", "file": "ota.bin", "size": 0x2000})
    rel.manifest["files"].append({"file": "ota.bin", "role": "otadata"})
    (rel.dir / "ota.bin").write_bytes(fe.encrypt(b"\x00" + b"\xff" * 0x1FFF, rel.key, 0x200000, "xts"))
    raw = rel.factory.read_bytes()
    rel.factory.write_bytes(raw + b"\xff" * (0x200000 - len(raw)) + (rel.dir / "ota.bin").read_bytes())
    rel.rebless()
    assert rel.failed() == {"otadata otadata"}


def test_decrypted_factory_matches_reference_tools(sample: Path, tmp_path: Path) -> None:
    """What verify-release reads is what espsecure decrypts; esptool and espsecure accept it."""
    rel = Rel(sample, "esp32c3", tmp_path)
    key = tmp_path / "fe.bin"
    key.write_bytes(rel.key)
    size = (rel.dir / "app.bin").stat().st_size
    cipher = tmp_path / "app.enc"
    cipher.write_bytes(rel.factory.read_bytes()[0x10000 : 0x10000 + size])
    plain = tmp_path / "app.dec"
    run_oracle("espsecure", "decrypt-flash-data", "--aes-xts", "--keyfile", key, "--address", "0x10000",
               "--output", plain, cipher)  # fmt: skip
    assert plain.read_bytes() == rel.read_plain(0x10000, size) == (rel.dir / "app.bin").read_bytes()
    run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", rel.dir / "secure_boot_key0.pub.pem", plain)
    info = run_oracle("esptool", "--chip", "esp32c3", "image-info", plain)
    assert "Checksum: " in info.stdout and "(valid)" in info.stdout
    # A corrupt byte the checker reports is one espsecure reports too.
    corrupt = bytearray(plain.read_bytes())
    corrupt[0x40] ^= 1
    plain.write_bytes(bytes(corrupt))
    proc = run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile",
                      rel.dir / "secure_boot_key0.pub.pem", plain, check=False)  # fmt: skip
    assert proc.returncode != 0


def test_v1_digest_matches_espsecure(sample: Path, tmp_path: Path) -> None:
    """ESP32: the digest block verify-release checks is what espsecure makes from the same IV, key and bootloader."""
    rel = Rel(sample, "esp32", tmp_path)
    boot = (rel.dir / "bootloader.bin").read_bytes()
    view = rel.read_plain(0, 0x1000 + len(boot) + 128)
    (tmp_path / "iv.bin").write_bytes(view[:128])
    (tmp_path / "v1.bin").write_bytes(rel.v1_key)
    out = tmp_path / "digest.bin"
    run_oracle("espsecure", "digest-secure-bootloader", "--keyfile", tmp_path / "v1.bin", "--iv", tmp_path / "iv.bin",
               "-o", out, rel.dir / "bootloader.bin")  # fmt: skip
    assert view[: out.stat().st_size] == out.read_bytes()
    pub = rel.dir / "secure_boot_key0.pub.pem"
    app = rel.read_plain(0x10000, (rel.dir / "app.bin").stat().st_size)
    (tmp_path / "app.bin").write_bytes(app)
    run_oracle("espsecure", "verify-signature", "--version", "1", "--keyfile", pub, tmp_path / "app.bin")
    assert rel.verify().passed
    assert [c.status for c in rel.verify(v1_key=None).checks if c.name == "bootloader"] == ["skipped"]


def test_intel_hex_reader(tmp_path: Path) -> None:
    chip = get_chip("esp32c3")
    regions = [Region(0x0, b"\x01\x02" * 40), Region(0x10000, os.urandom(300)), Region(0x1FFF0, b"abc" * 20)]
    text = merge_bin(chip, regions, "hex")
    raw = merge_bin(chip, regions, "raw")
    assert hex_matches_bin(text, raw) is None
    out = tmp_path / "ref.hex"
    run_oracle("esptool", "--chip", "esp32c3", "merge-bin", "--format", "hex", "-o", out, "0x1000", __file__)
    data = Path(__file__).read_bytes()
    assert b"".join(v for _, v in sorted(read_hex(out.read_bytes()).items())) == data
    bad = text.replace(b":10", b":11", 1)
    with pytest.raises(Exception, match="bad length or checksum"):
        read_hex(bad)
    with pytest.raises(Exception, match="no end record"):
        read_hex(text[: text.rindex(b":")])


def test_hex_check_of_a_file_just_written_is_the_full_check(tmp_path: Path) -> None:
    """The closing verification compares a .hex this process wrote by digest: it must still
    catch any change, and answer as formatting it again would."""
    from esp_secure_build import ihex

    chip = get_chip("esp32c3")
    regions = [Region(0x0, os.urandom(5000)), Region(0x9000, os.urandom(777)), Region(0x10000, os.urandom(70000))]
    pairs = [(r.address, r.data) for r in regions]
    raw = merge_bin(chip, regions, "raw")
    text = merge_bin(chip, regions, "hex")  # remembered
    ihex._WRITTEN.clear()
    fresh = ihex.encode(pairs)  # formatted again: the same bytes
    assert fresh == text
    flipped = bytearray(text)
    flipped[len(text) // 2] ^= 0x01
    for remembered in (True, False):
        if not remembered:
            ihex._WRITTEN.clear()
        assert ihex.is_encoding(text, pairs)
        assert hex_matches_bin(text, raw, regions=pairs) is None
        assert not ihex.is_encoding(bytes(flipped), pairs)
        assert not ihex.is_encoding(text + b"\n", pairs)
        assert not ihex.is_encoding(text, [*pairs[:2], (0x10000, pairs[2][1][:-1] + b"\0")])
        with pytest.raises(Exception, match="Intel HEX line"):  # read in full: a broken record
            hex_matches_bin(bytes(flipped), raw, regions=pairs)


def test_efuse_summary_option(sample: Path, tmp_path: Path) -> None:
    summary = tmp_path / "efuse.json"
    summary.write_text("{}")
    proc = run_cli("verify-release", release_dir(sample, "esp32c6"), "--efuse-summary", summary)
    try:
        import esp_secure_build.efuse  # noqa: F401
    except ImportError:
        assert_one_line_error(proc, "--efuse-summary", "not available")
    else:
        assert proc.returncode == 1 and "efuse" in proc.stdout
    summary.write_text("[1, 2")
    assert_one_line_error(run_cli("verify-release", release_dir(sample, "esp32c6"), "--efuse-summary", summary), "efuse.json")


# --- SCons: every build ends by verifying what is on disk --------------------------------------------


def test_tampered_targets_are_rebuilt(sample: Path) -> None:
    rel = release_dir(sample, "esp32c3")
    noop = scons(sample, "release")
    assert steps(noop) == [] and "build/release verified (unchanged since its last verification)" in noop.stdout
    assert (sample / "build/.release.verified").exists()  # the stamp lives beside the release, not in it
    before = (rel / "nvs.bin").read_bytes()
    for name in ("encrypted/app.bin", "bootloader.bin", "nvs.bin", "factory-encrypted.bin", "manifest.json"):
        path = rel / name
        stat = path.stat()
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # hide it from a time-based check
        assert scons(sample, "-q", "release").returncode == 1  # not up to date
        proc = scons(sample, "release")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{rel.relative_to(sample)}/{name} changed since it was built" in proc.stderr
        assert "build/release verified" in proc.stdout
    assert (rel / "nvs.bin").read_bytes() == before
    truncated = rel / "encrypted/bootloader.bin"
    truncated.write_bytes(truncated.read_bytes()[:100])
    proc = scons(sample, "release")
    assert proc.returncode == 0 and "ESP-ENCRYPT build/release/encrypted/bootloader.bin" in steps(proc)
    assert scons(sample, "-q", "release").returncode == 0


def test_replaced_elf_is_relinked(sample: Path) -> None:
    build = sample / "build/esp32c3"
    shutil.copy(build / "bootloader.elf", build / "app.elf")
    proc = scons(sample, "release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LINK build/esp32c3/app.elf" in steps(proc)
    assert "build/release verified" in proc.stdout


def test_failed_build_leaves_no_verifiable_release(tmp_path: Path) -> None:
    project = copy_sample(tmp_path)
    assert scons(project, "release").returncode == 0
    key = project / "keys/esp32c3_flash_encryption_key.bin"
    csv = project / "partitions.csv"
    csv.write_text(csv.read_text().replace("factory,  app,  factory,  0x10000, 0x100000,",
                                           "factory,  app,  factory,  0x10000, 0x20000,"))  # fmt: skip
    proc = scons(project, "release")
    assert proc.returncode == 2 and "larger than 'factory'" in proc.stderr, proc.stdout + proc.stderr
    check = run_cli("verify-release", project / "build/release", "--flash-key", key)
    assert check.returncode == 1 and "manifest" in check.stderr, check.stdout + check.stderr


def test_verification_failure_fails_the_build(tmp_path: Path) -> None:
    """A check the build cannot fix itself (an unexpected file) stops the build with the file's name."""
    project = copy_sample(tmp_path)
    assert scons(project, "release").returncode == 0
    (project / "build/release/old-app.bin").write_bytes(b"stale")
    proc = scons(project, "release")
    assert proc.returncode == 2
    assert "verify-release build/release: manifest: " in proc.stderr and "old-app.bin is not part" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- hostile input: only the project's own error escapes --------------------------------------------


def test_manifest_with_hostile_entries_is_a_failed_check(sample: Path, tmp_path: Path) -> None:
    rel = Rel(sample, "esp32c3", tmp_path)
    good = json.loads((rel.dir / "manifest.json").read_text())
    cases = [
        {"files": [{"file": "../../../etc/passwd", "size": 1, "sha256": "00"}]},
        {"files": [{"file": "/etc/passwd", "size": 1, "sha256": "00"}]},
        {"flash": [{"region": "factory", "file": "app.bin"}]},
        {"flash": [{"region": "factory", "file": "app.bin", "offset": "ten"}]},
        {"secure_boot": {"version": "2", "key_digests": []}},
        {"secure_boot": ["x"]},
        {"chip": 5},
        {"chip": "esp8266"},
        {"flash_encryption": {"scheme": "XTS-AES-128", "flash_crypt_conf": 99}},
    ]
    for change in cases:
        (rel.dir / "manifest.json").write_text(json.dumps({**good, **change}))
        report = rel.verify()
        assert [c.name for c in report.failures] == ["manifest"], (change, report.table())


def test_parsers_raise_only_project_errors() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from esp_secure_build.errors import EspSecureError
    from esp_secure_build.nvs.layout import NvsWriter, check_partition

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300), st.lists(st.sampled_from([b":", b"00", b"01", b"04", b"FF", b"\n", b"G"]), max_size=40))
    def hex_input(data: bytes, tokens: list[bytes]) -> None:
        for text in (data, b"".join(tokens)):
            with contextlib.suppress(EspSecureError):
                read_hex(text)

    writer = NvsWriter(0x3000)
    writer.add_single(0, b"config", 0x01, b"")  # not a real namespace entry: only the layout matters here
    writer.add_primitive(1, b"count", "u8", 7)
    writer.add_single(1, b"name", 0x21, b"esp-secure-sample\0")
    writer.add_blob(1, b"blob", bytes(range(200)))
    valid = writer.finish()
    assert check_partition(valid)[1] == 3

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, len(valid) - 1), st.integers(1, 255))
    def nvs_mutation(where: int, flip: int) -> None:
        data = bytearray(valid)
        data[where] ^= flip
        with contextlib.suppress(EspSecureError):
            check_partition(bytes(data))

    hex_input()
    nvs_mutation()
