"""The sample's full release: flash-encrypted artifacts, NVS, factory image and flash arguments, against the oracles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import REPO, VECTORS, run_oracle
from sconsutil import TOOL_HEADER, copy_sample, release_dir, scons, steps

# The sample's partitions.csv places these (the table itself sits at 0x8000).
C3_LAYOUT = {"bootloader.bin": 0x0, "partition-table.bin": 0x8000, "nvs_keys.bin": 0xF000, "app.bin": 0x10000}


@pytest.fixture(scope="module")
def c3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_sample(tmp_path_factory.mktemp("release_c3"))
    proc = scons(project, "release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return project


def _plain(project: Path, name: str) -> Path:
    rel = release_dir(project, "esp32c3")
    return project / "keys/esp32c3_nvs_keys.bin" if name == "nvs_keys.bin" else rel / name


def test_encrypted_artifacts_match_espsecure(c3: Path, tmp_path: Path) -> None:
    key = c3 / "keys/esp32c3_flash_encryption_key.bin"
    assert oct(key.stat().st_mode & 0o777) == "0o600" and key.stat().st_size == 32
    for name, address in C3_LAYOUT.items():
        ref = tmp_path / name
        run_oracle("espsecure", "encrypt-flash-data", "--aes-xts", "--keyfile", key, "--address", hex(address),
                   "--output", ref, _plain(c3, name))  # fmt: skip
        assert (c3 / "build/release/encrypted" / name).read_bytes() == ref.read_bytes(), name


def test_factory_image_is_esptool_merge_of_flash_args(c3: Path, tmp_path: Path) -> None:
    rel = c3 / "build/release"
    for fmt, suffix in (("raw", "bin"), ("hex", "hex")):
        out = tmp_path / f"merged.{suffix}"
        run_oracle("esptool", "--chip", "esp32c3", "merge-bin", "--format", fmt, "-o", out, "@flash_args", cwd=rel)
        assert (rel / f"factory-encrypted.{suffix}").read_bytes() == out.read_bytes()
    assert "0x9000 nvs.bin" in (rel / "flash_args").read_text()


def test_nvs_matches_reference_generator(c3: Path, tmp_path: Path) -> None:
    out = tmp_path / "nvs.bin"
    run_oracle("esp_idf_nvs_partition_gen", "encrypt", "nvs.csv", out, "0x6000", "--inputkey",
               c3 / "keys/esp32c3_nvs_keys.bin", cwd=c3)  # fmt: skip
    assert (c3 / "build/release/nvs.bin").read_bytes() == out.read_bytes()


def test_flash_encryption_key_change_reencrypts_only(c3: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_key.bin"
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    proc = scons(c3, "release", f"ESP_FLASH_ENCRYPTION_KEY={other}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(steps(proc)) == sorted(
        [f"ESP-ENCRYPT build/release/encrypted/{n}" for n in C3_LAYOUT]
        + ["ESP-FACTORY build/release/factory-encrypted.bin", "ESP-MANIFEST build/release/manifest.json",
           "ESP-PROVISION build/release/provisioning/efuse-script.sh"]  # names the key file
    )  # fmt: skip
    ref = tmp_path / "app.enc"
    run_oracle("espsecure", "encrypt-flash-data", "--aes-xts", "--keyfile", other, "--address", "0x10000",
               "--output", ref, c3 / "build/release/app.bin")  # fmt: skip
    assert (c3 / "build/release/encrypted/app.bin").read_bytes() == ref.read_bytes()
    assert scons(c3, "release").returncode == 0  # back to the development key


def test_esp32_release_v1_and_aes(tmp_path: Path) -> None:
    project = copy_sample(tmp_path)
    proc = scons(project, "release", "ESP_CHIP=esp32")
    assert proc.returncode == 0, proc.stderr
    rel, key = release_dir(project, "esp32"), project / "keys/esp32_flash_encryption_key.bin"
    for name, plain, address in (("bootloader.bin", rel / "bootloader-reflash-digest.bin", 0x0),
                                 ("partition-table.bin", rel / "partition-table.bin", 0x8000),
                                 ("nvs_keys.bin", project / "keys/esp32_nvs_keys.bin", 0xF000),
                                 ("app.bin", rel / "app.bin", 0x10000)):  # fmt: skip
        data = plain.read_bytes()
        padded = tmp_path / f"{name}.plain"
        # espsecure pads a short tail with random bytes; we pad with 0xFF (erased flash).
        padded.write_bytes(data + b"\xff" * (-len(data) % 16))
        ref = tmp_path / name
        run_oracle("espsecure", "encrypt-flash-data", "--keyfile", key, "--address", hex(address), "--output", ref, padded)
        assert (rel / "encrypted" / name).read_bytes() == ref.read_bytes(), name


def test_no_plaintext_key_in_cache_dir(tmp_path: Path) -> None:
    project = copy_sample(tmp_path)
    sconstruct = project / "SConstruct"
    sconstruct.write_text(sconstruct.read_text() + "\nCacheDir('cache')\n")
    assert scons(project, "release", "ESP_CHIP=esp32").returncode == 0
    secrets = {p.read_bytes() for p in (project / "keys").iterdir()}  # the V1 eFuse key included
    assert (project / "keys/release-esp32-secure-bootloader-key-256.bin").exists()
    cached = [p for p in (project / "cache").rglob("*") if p.is_file()]
    assert cached, "the cache should hold the other build outputs"
    assert not [p for p in cached if p.read_bytes() in secrets]


def _throwaway(folder: Path, csv: str, body: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "partitions.csv").write_text(csv)
    (folder / "key.bin").write_bytes(bytes(range(32)))
    (folder / "SConstruct").write_text(
        TOOL_HEADER
        + "env.Replace(ESP_CHIP='esp32c3', ESP_FLASH_ENCRYPTION_KEY='key.bin')\n"
        "env['ESP_PARTITION_TABLE'] = env.PartitionTable('table.bin', 'partitions.csv')\n" + body
    )
    return folder


CSV = "nvs, data, nvs, 0x9000, 0x6000,\nfactory, app, factory, 0x10000, 0x10000,\n"


@pytest.mark.parametrize(
    ("csv", "body", "needles"),
    [
        (CSV, "env.EncryptedImage('out.bin', 'big.bin', partition='factory')\n", ["big.bin", "larger than 'factory'"]),
        (CSV, "env.EncryptedImage('out.bin', 'key.bin', partition='nvs')\n", ["not flash-encrypted", "NVS"]),
        (CSV, "env.EncryptedImage('out.bin', 'key.bin', partition='nope')\n", ["no partition named 'nope'"]),
        (CSV.replace("0x9000", "0x9001"), "env.EncryptedImage('out.bin', 'key.bin', partition='factory')\n", ["partitions.csv"]),
        (CSV, "env['ESP_FLASH_ENCRYPTION_KEY'] = 'short.bin'\nenv.EncryptedImage('out.bin', 'key.bin', partition='factory')\n",
         ["short.bin", "key"]),
    ],
    ids=["too-large", "nvs-data", "unknown-partition", "bad-csv", "key-length"],
)
def test_release_errors_are_one_line(tmp_path: Path, csv: str, body: str, needles: list[str]) -> None:
    folder = _throwaway(tmp_path / "p", csv, body)
    (folder / "short.bin").write_bytes(bytes(20))
    (folder / "big.bin").write_bytes(bytes(0x10010))
    proc = scons(folder)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (folder / "out.bin").exists()


def test_manifest_describes_the_release(c3: Path) -> None:
    import hashlib
    import json

    rel = c3 / "build/release"
    manifest = json.loads((rel / "manifest.json").read_text())
    assert manifest["chip"] == "esp32c3" and manifest["flash_encryption"] == {"scheme": "XTS-AES-128", "key_bits": 256}
    assert manifest["flash_settings"] == {"mode": "dio", "freq": "80m", "size": "4MB"}
    assert manifest["nvs_encryption"] == [{"partition": "nvs", "keys_partition": "nvs_keys", "scheme": "XTS-AES-256 (NVS)"}]
    assert manifest["source_date_epoch"] == 1764115200 and manifest["build_time_source"] == "SOURCE_DATE_EPOCH"
    assert {item["region"]: int(item["offset"], 16) for item in manifest["flash"]} == {
        "bootloader": 0x0, "partition-table": 0x8000, "nvs": 0x9000, "nvs_keys": 0xF000, "factory": 0x10000,
    }  # fmt: skip
    on_disk = sorted(str(p.relative_to(rel)) for p in rel.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert [f["file"] for f in manifest["files"]] == on_disk  # every file of the folder, nothing else
    for item in manifest["flash"] + manifest["files"]:
        assert hashlib.sha256((rel / item["file"]).read_bytes()).hexdigest() == item["sha256"], item["file"]
    files = {f["file"]: f for f in manifest["files"]}
    assert files["encrypted/app.bin"]["offset"] == "0x10000" and files["encrypted/app.bin"]["encrypted"]
    assert files["app.bin"]["offset"] is None and not files["app.bin"]["encrypted"]
    assert files["nvs.bin"]["encryption"] == "nvs" and files["factory-encrypted.hex"]["role"] == "factory-image-hex"
    key_digest = (rel / "secure_boot_key0_digest.bin").read_bytes().hex()
    assert manifest["secure_boot"] == {"version": 2, "scheme": "rsa3072", "key_digests": [key_digest]}
    assert files["encrypted/bootloader.bin"]["signed_by"] == files["app.bin"]["signed_by"] == [key_digest]
    app = manifest["images"]["app.bin"]
    assert app["app"]["project_name"] == "sample_project" and app["app"]["secure_version"] == 1
    assert app["secure_boot_v2"] == [{"scheme": "rsa3072", "public_key_digest": key_digest, "digest_matches": True}]
    assert manifest["certificates"][0]["certificates"][0]["subject"].startswith("CN=esp-secure-build Sample Root CA")
    text = (rel / "manifest.json").read_text()
    for key in (c3 / "keys").iterdir():  # no key material, in any spelling
        assert key.read_bytes().hex() not in text


def test_plain_release_without_secure_boot_or_encryption(tmp_path: Path) -> None:
    """EspRelease with neither Secure Boot nor flash encryption: plain files at the table's addresses."""
    images = VECTORS / "esptool/secure_images"
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "partitions.csv").write_text("nvs, data, nvs, 0x9000, 0x6000,\nfactory, app, factory, 0x10000, 0x100000,\n")
    (folder / "nvs.csv").write_text("key,type,encoding,value\nsettings,namespace,,\nname,data,string,plain\n")
    (folder / "SConstruct").write_text(
        TOOL_HEADER
        + "env.Replace(ESP_CHIP='esp32')\n"
        f"env.EspRelease('rel', app={str(images / 'hello-world-signed.bin')!r}, bootloader={str(images / 'bootloader.bin')!r},\n"
        "               partitions='partitions.csv', nvs={'nvs': ('nvs.csv', None)})\n"
    )
    proc = scons(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rel = folder / "rel"
    assert not (rel / "encrypted").exists() and not (rel / "provisioning").exists()
    ref = tmp_path / "ref.bin"
    run_oracle("esptool", "--chip", "esp32", "merge-bin", "-o", ref, "0x1000", images / "bootloader.bin",
               "0x8000", rel / "partition-table.bin", "0x9000", rel / "nvs.bin", "0x10000", images / "hello-world-signed.bin")  # fmt: skip
    assert (rel / "factory.bin").read_bytes() == ref.read_bytes()
    assert "0x1000 bootloader.bin" in (rel / "flash_args").read_text()


def test_ota_layout_from_the_table(tmp_path: Path) -> None:
    """otadata gets an erased, encrypted ota_data_initial.bin; the app goes to ota_0; NVS takes its table size."""
    # Real ESP-IDF images of one chip (the release is verified as that chip reads it).
    idf = REPO / "examples/esp-idf-build/hello_world/idf-build"
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "partitions.csv").write_text(
        "nvs, data, nvs, 0x9000, 0x5000,\notadata, data, ota, 0xe000, 0x2000,\n"
        "ota_0, app, ota_0, 0x10000, 0x100000,\nota_1, app, ota_1, 0x110000, 0x100000,\n"
    )
    (folder / "nvs.csv").write_text("key,type,encoding,value\nsettings,namespace,,\nname,data,string,ota\n")
    key = folder / "fe.bin"
    key.write_bytes(os.urandom(32))
    (folder / "SConstruct").write_text(
        TOOL_HEADER
        + "env.Replace(ESP_CHIP='esp32c61', ESP_FLASH_ENCRYPTION_KEY='fe.bin')\n"
        f"env.EspRelease('rel', app={str(idf / 'hello_world.bin')!r}, bootloader={str(idf / 'bootloader/bootloader.bin')!r},\n"
        "               partitions='partitions.csv', nvs={'nvs': ('nvs.csv', None)})\n"
    )
    proc = scons(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "esp-secure: release rel verified" in proc.stdout
    rel = folder / "rel"
    flash_args = (rel / "flash_args").read_text()
    assert "0xe000 encrypted/ota_data_initial.bin" in flash_args and "0x10000 encrypted/app.bin" in flash_args
    assert (rel / "nvs.bin").stat().st_size == 0x5000
    assert (rel / "ota_data_initial.bin").read_bytes() == b"\xff" * 0x2000
    ref = tmp_path / "otadata.enc"
    run_oracle("espsecure", "encrypt-flash-data", "--aes-xts", "--keyfile", key, "--address", "0xe000",
               "--output", ref, rel / "ota_data_initial.bin")  # fmt: skip
    assert (rel / "encrypted/ota_data_initial.bin").read_bytes() == ref.read_bytes()
    assert steps(scons(folder)) == []


def _extra_images_project(folder: Path, extra: str) -> Path:
    idf = REPO / "examples/esp-idf-build/hello_world/idf-build"  # real images of one chip: the release is verified
    folder.mkdir()
    (folder / "partitions.csv").write_text(
        "otadata, data, ota, 0xe000, 0x2000,\nota_0, app, ota_0, 0x10000, 0x100000,\n"
        "storage, data, spiffs, 0x110000, 0x10000,\n"
    )
    # Arduino's boot_app0.bin: an OTA selection (sequence 1, CRC) of ota_0.
    (folder / "otadata.bin").write_bytes((REPO / "tests/platformio/platform/tools/partitions/boot_app0.bin").read_bytes())
    (folder / "storage.bin").write_bytes(b"files" * 100)
    (folder / "fe.bin").write_bytes(os.urandom(32))
    (folder / "SConstruct").write_text(
        TOOL_HEADER
        + "env.Replace(ESP_CHIP='esp32c61', ESP_FLASH_ENCRYPTION_KEY='fe.bin')\n"
        f"env.EspRelease('rel', app={str(idf / 'hello_world.bin')!r}, bootloader={str(idf / 'bootloader/bootloader.bin')!r},\n"
        f"               partitions='partitions.csv', extra_images={extra})\n"
    )
    return folder


def test_extra_images_fill_their_partitions(tmp_path: Path) -> None:
    """An otadata image replaces the erased one and is flash-encrypted; a data image is flashed as it is."""
    folder = _extra_images_project(tmp_path / "p", "{'otadata': 'otadata.bin', 'storage': 'storage.bin'}")
    proc = scons(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rel = folder / "rel"
    lines = (rel / "flash_args").read_text().splitlines()
    assert "0xe000 encrypted/otadata.bin" in lines and "0x110000 storage.bin" in lines
    assert not (rel / "ota_data_initial.bin").exists()
    assert (rel / "storage.bin").read_bytes() == (folder / "storage.bin").read_bytes()
    plain = tmp_path / "otadata.plain"
    run_oracle("espsecure", "decrypt-flash-data", "--aes-xts", "--keyfile", folder / "fe.bin", "--address", "0xe000",
               "--output", plain, rel / "encrypted/otadata.bin")  # fmt: skip
    assert plain.read_bytes() == (folder / "otadata.bin").read_bytes()
    assert steps(scons(folder)) == []


@pytest.mark.parametrize(("extra", "needle"), [
    ("{'nope': 'storage.bin'}", "extra image for 'nope'"),
    ("{'ota_0': 'storage.bin'}", "the release already fills that partition"),
])  # fmt: skip
def test_extra_images_errors(tmp_path: Path, extra: str, needle: str) -> None:
    folder = _extra_images_project(tmp_path / "p", extra)
    proc = scons(folder)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("scons: ***")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (folder / "rel").exists()


def test_app_too_large_without_secure_boot_is_found_when_app_bin_is_made(tmp_path: Path) -> None:
    """No signing step to check the size: the copy into the release checks it, before any encryption."""
    idf = REPO / "examples/esp-idf-build/hello_world/idf-build"
    app = idf / "hello_world.bin"
    folder = tmp_path / "p"
    folder.mkdir()
    small = (app.stat().st_size - 1) // 0x10000 * 0x10000  # the largest 64 KiB multiple short of the image
    assert 0 < small < app.stat().st_size
    (folder / "partitions.csv").write_text(f"nvs, data, nvs, 0x9000, 0x5000,\nfactory, app, factory, 0x10000, {small:#x},\n")
    (folder / "fe.bin").write_bytes(os.urandom(32))
    (folder / "SConstruct").write_text(
        TOOL_HEADER
        + "env.Replace(ESP_CHIP='esp32c61', ESP_FLASH_ENCRYPTION_KEY='fe.bin')\n"
        f"env.EspRelease('rel', app={str(app)!r}, bootloader={str(idf / 'bootloader/bootloader.bin')!r},\n"
        "               partitions='partitions.csv')\n"
    )
    proc = scons(folder)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "hello_world.bin" in proc.stderr and "larger than partition 'factory'" in proc.stderr
    assert "ESP-ENCRYPT rel/encrypted/app.bin" not in proc.stdout  # found when app.bin is made, not at encryption
    assert not (folder / "rel" / "app.bin").exists()


def test_file_roles_match_as_fnmatch_would() -> None:
    """The manifest's own pattern matcher gives fnmatch's answer for every role pattern."""
    import fnmatch

    from esp_secure_build.manifest import FILE_ROLES, _matches

    names = [p for p, _, _ in FILE_ROLES] + [
        "encrypted/app.bin", "encrypted/", "encrypted", "xencrypted/app.bin", "encrypted/sub/dir.bin",
        "secure_boot_key0.pub.pem", "secure_boot_key12.pub.pem", "secure_boot_key.pub.pem", "secure_boot_key0.pem",
        "secure_boot_key0_digest.bin", "secure_boot_key0_digest.bin.bak", "app.bin.old", "provisioning/efuse-script.sh",
        "factory.bin", "factory.hex", "other.bin", "",
    ]  # fmt: skip
    for pattern, _, _ in FILE_ROLES:
        assert pattern.count("*") <= 1 and not set(pattern) & set("?["), pattern
        for name in names:
            assert _matches(name, pattern) == fnmatch.fnmatchcase(name, pattern), (name, pattern)
