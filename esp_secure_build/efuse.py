"""eFuse provisioning: ESP-IDF's release-mode sequence as ``espefuse`` commands, and its check.

:data:`PROFILES` holds, per chip, the eFuse names espefuse 5.6.0 uses and the lock-down
eFuses ESP-IDF's bootloader burns when it enables flash encryption and Secure Boot in
release mode (``bootloader_support/src/<chip>/*_secure_features.c``; the host workflow of
ESP-IDF's "Security Features Enablement Workflows" guide gives the order). Nothing here
talks to a chip: :func:`provisioning_plan` lists the steps, :func:`render_script` writes
them as a shell script, and :func:`check_efuse_summary` reads what ``espefuse summary
--format json`` reports for a device and says what does not match a release.

Order: flash encryption key and its purpose, enable flash encryption (``*CRYPT_CNT``),
its lock-down eFuses and write protection, Secure Boot key digests (or the V1 key), the
unused digest slots revoked, Secure Boot enable and its lock-down eFuses, ``RD_DIS``
write-protected (after the flash key is read-protected, never before), the summary, and
last the download-mode lock (after it espefuse can burn nothing more).
"""

from __future__ import annotations

import json
import shlex
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from .errors import EspSecureError

# A namedtuple, as chips.Chip: no dataclasses import on the CLI's path.
_ProfileFields = namedtuple(
    "_ProfileFields",
    [
        "chip", "key_blocks", "digest_slots", "crypt_cnt", "crypt_cnt_max", "fe_lockdown",
        "fe_write_protect", "sb_lockdown", "download_lock", "xts_256",
    ],
    defaults=(False,),
)  # fmt: skip


class EfuseProfile(_ProfileFields):
    """One chip's eFuse layout as espefuse names it.

    ``key_blocks``: BLOCK_KEY0.. with a KEY_PURPOSE each (0: fixed blocks, the ESP32 and
    the ESP32-C2); ``digest_slots``: Secure Boot V2 digests the ROM honours;
    ``crypt_cnt``/``crypt_cnt_max``: the flash encryption counter, all bits burned in
    release mode; ``fe_lockdown``/``sb_lockdown``: (eFuse, value) pairs ESP-IDF burns
    with flash encryption / Secure Boot; ``fe_write_protect``: eFuses it write-protects
    (shared write-protect bits lock neighbours too); ``download_lock``: the last step;
    ``xts_256``: the chip takes an XTS-AES-256 key (two blocks).
    """

    __slots__ = ()
    chip: str
    key_blocks: int
    digest_slots: int
    crypt_cnt: str
    crypt_cnt_max: int
    fe_lockdown: tuple[tuple[str, int], ...]
    fe_write_protect: tuple[str, ...]
    sb_lockdown: tuple[tuple[str, int], ...]
    download_lock: tuple[str, ...]
    xts_256: bool


_JTAG = (("DIS_PAD_JTAG", 1), ("DIS_USB_JTAG", 1))
_SECURE_DL = ("burn-efuse", "ENABLE_SECURITY_DOWNLOAD", "1")


def _riscv(chip: str, cache: str, soft_jtag: bool = True, pseudo_rounds: bool = False, wp_cache: bool = True,
           xts_256: bool = False) -> EfuseProfile:
    """The ESP32-C3 pattern most RISC-V chips follow."""
    fe = (("DIS_DOWNLOAD_MANUAL_ENCRYPT", 1), (cache, 1), *_JTAG, ("DIS_DIRECT_BOOT", 1))
    if pseudo_rounds:  # ESP-IDF's default CONFIG_SECURE_FLASH_PSEUDO_ROUND_FUNC_STRENGTH
        fe += (("XTS_DPA_PSEUDO_LEVEL", 1),)
    sb = (("DIS_DIRECT_BOOT", 1), *_JTAG) + ((("SOFT_DIS_JTAG", 7),) if soft_jtag else ())
    return EfuseProfile(chip, 6, 3, "SPI_BOOT_CRYPT_CNT", 7, fe, ("DIS_ICACHE",) if wp_cache else (), sb, _SECURE_DL, xts_256)


PROFILES: dict[str, EfuseProfile] = {
    p.chip: p
    for p in (
        EfuseProfile(
            "esp32", 0, 1, "FLASH_CRYPT_CNT", 127,
            fe_lockdown=(("FLASH_CRYPT_CONFIG", 0xF), ("DISABLE_DL_ENCRYPT", 1), ("DISABLE_DL_DECRYPT", 1),
                         ("DISABLE_DL_CACHE", 1), ("JTAG_DISABLE", 1), ("CONSOLE_DEBUG_DISABLE", 1)),
            fe_write_protect=("DIS_CACHE",),
            sb_lockdown=(("JTAG_DISABLE", 1), ("CONSOLE_DEBUG_DISABLE", 1)),
            # FLASH_CRYPT_CNT shares its write-protect bit with UART_DOWNLOAD_DIS: one last step.
            download_lock=("burn-efuse", "UART_DOWNLOAD_DIS", "1", "write-protect-efuse", "FLASH_CRYPT_CNT"),
        ),
        EfuseProfile(
            "esp32s2", 6, 3, "SPI_BOOT_CRYPT_CNT", 7,
            fe_lockdown=(("DIS_DOWNLOAD_MANUAL_ENCRYPT", 1), ("DIS_DOWNLOAD_DCACHE", 1), ("DIS_DOWNLOAD_ICACHE", 1),
                         ("HARD_DIS_JTAG", 1), ("DIS_BOOT_REMAP", 1), ("DIS_LEGACY_SPI_BOOT", 1)),
            fe_write_protect=(),
            sb_lockdown=(("DIS_BOOT_REMAP", 1), ("DIS_LEGACY_SPI_BOOT", 1), ("HARD_DIS_JTAG", 1), ("SOFT_DIS_JTAG", 1)),
            download_lock=_SECURE_DL, xts_256=True,
        ),
        EfuseProfile(
            "esp32s3", 6, 3, "SPI_BOOT_CRYPT_CNT", 7,
            fe_lockdown=(("DIS_DOWNLOAD_MANUAL_ENCRYPT", 1), ("DIS_DOWNLOAD_DCACHE", 1), ("DIS_DOWNLOAD_ICACHE", 1),
                         *_JTAG, ("DIS_DIRECT_BOOT", 1)),
            fe_write_protect=(),
            sb_lockdown=(("DIS_DIRECT_BOOT", 1), ("DIS_PAD_JTAG", 1), ("SOFT_DIS_JTAG", 1)),
            download_lock=_SECURE_DL, xts_256=True,
        ),
        EfuseProfile(
            "esp32c2", 0, 1, "SPI_BOOT_CRYPT_CNT", 7,
            fe_lockdown=(("DIS_DOWNLOAD_MANUAL_ENCRYPT", 1), ("DIS_DOWNLOAD_ICACHE", 1), ("DIS_PAD_JTAG", 1),
                         ("DIS_DIRECT_BOOT", 1)),
            fe_write_protect=(),
            sb_lockdown=(("DIS_DIRECT_BOOT", 1), ("DIS_PAD_JTAG", 1)),
            download_lock=_SECURE_DL,
        ),
        _riscv("esp32c3", "DIS_DOWNLOAD_ICACHE"),
        _riscv("esp32c5", "SPI_DOWNLOAD_MSPI_DIS", pseudo_rounds=True),
        _riscv("esp32c6", "DIS_DOWNLOAD_ICACHE"),
        _riscv("esp32c61", "SPI_DOWNLOAD_MSPI_DIS", soft_jtag=False, pseudo_rounds=True),
        _riscv("esp32h2", "SPI_DOWNLOAD_MSPI_DIS"),
        _riscv("esp32p4", "SPI_DOWNLOAD_MSPI_DIS", wp_cache=False, xts_256=True),
    )
}


def get_profile(chip: str) -> EfuseProfile:
    try:
        return PROFILES[chip]
    except KeyError:
        raise EspSecureError(f"no eFuse provisioning profile for {chip!r}; known: {', '.join(PROFILES)}") from None


class Step(namedtuple("Step", ["title", "args", "final"], defaults=(False,))):
    """One espefuse invocation: ``args`` after the global options.

    File arguments start with ``@release/`` (a file of the release folder) or
    ``@keys/`` (a secret kept with the keys, never in the release folder).
    """

    __slots__ = ()
    title: str
    args: tuple[str, ...]
    final: bool


def _burn(pairs: Sequence[tuple[str, int]], done: set[str]) -> tuple[str, ...]:
    args: list[str] = []
    for name, value in pairs:
        if name not in done:
            done.add(name)
            args += [name, str(value)]
    return ("burn-efuse", *args) if args else ()


def provisioning_plan(
    chip: str,
    *,
    secure_boot_version: int | None,
    digest_files: Sequence[str] = (),
    v1_key_file: str | None = None,
    flash_key_file: str | None = None,
    flash_key_bits: int | None = None,
    scheme: str | None = None,
) -> list[Step]:
    """ESP-IDF's release-mode eFuse sequence for one release, in order.

    ``digest_files``: V2 public-key digest files (names in the release folder), one per
    signing key; ``v1_key_file``: the V1 eFuse key (name in the keys folder);
    ``flash_key_file``/``flash_key_bits``: the flash encryption key (name in the keys
    folder) and its size in bits (256 = XTS-AES-128, 512 = XTS-AES-256, 128 = the C2's
    key derived from 128 eFuse bits; ESP32: 256); ``scheme``: the V2 signing scheme.
    """
    p = get_profile(chip)
    steps: list[Step] = []
    done: set[str] = set()
    fe, sb = flash_key_file is not None, secure_boot_version in (1, 2)
    if secure_boot_version == 1 and (chip != "esp32" or not v1_key_file):
        raise EspSecureError("Secure Boot V1 is ESP32 only and needs its eFuse key file")
    if secure_boot_version == 2 and not 1 <= len(digest_files) <= p.digest_slots:
        raise EspSecureError(f"{chip} takes 1 to {p.digest_slots} Secure Boot V2 key digest(s), not {len(digest_files)}")
    if fe and not flash_key_bits:
        raise EspSecureError("the flash encryption key size is needed")
    digests = [f"@release/{name}" for name in digest_files]
    key = f"@keys/{flash_key_file}"
    next_block = 0
    if fe:
        if chip == "esp32":
            steps.append(Step("Flash encryption key into BLOCK1 (read- and write-protected)", ("burn-key", "flash_encryption", key)))
        elif chip == "esp32c2":
            if flash_key_bits == 128:
                args = ("burn-key", "BLOCK_KEY0", key, "XTS_AES_128_KEY_DERIVED_FROM_128_EFUSE_BITS")
                if secure_boot_version == 2:  # one key block: both halves in one write
                    args += ("BLOCK_KEY0", digests[0], "SECURE_BOOT_DIGEST")
                steps.append(Step("Flash encryption key (128 eFuse bits, read-protected) in BLOCK_KEY0"
                                  + (" and the Secure Boot digest in its upper half" if len(args) > 4 else ""), args))  # fmt: skip
            elif secure_boot_version == 2:
                raise EspSecureError("the ESP32-C2 has one key block: Secure Boot V2 needs a 128-bit flash encryption key")
            else:
                steps.append(Step("Flash encryption key (XTS-AES-128) in BLOCK_KEY0", ("burn-key", "BLOCK_KEY0", key, "XTS_AES_128_KEY")))
        else:
            sizes = {256: ("XTS_AES_128_KEY", 1), 512: ("XTS_AES_256_KEY", 2)} if p.xts_256 else {256: ("XTS_AES_128_KEY", 1)}
            purpose, used = sizes.get(flash_key_bits or 0, (None, 0))
            if purpose is None:
                allowed = " or ".join(f"{b}-bit" for b in sizes)
                raise EspSecureError(f"{chip} eFuses take a {allowed} flash encryption key (espefuse 5.6.0), not {flash_key_bits} bits")
            title = "XTS-AES-128 key in BLOCK_KEY0" if used == 1 else "XTS-AES-256 key in BLOCK_KEY0/1 (XTS_AES_256_KEY_1/_2)"
            steps.append(Step(f"Flash encryption: {title}, read-protected", ("burn-key", "BLOCK_KEY0", key, purpose)))
            next_block = used
        steps.append(Step(f"Enable flash encryption: every {p.crypt_cnt} bit (release mode)",
                          ("burn-efuse", p.crypt_cnt, str(p.crypt_cnt_max))))  # fmt: skip
        steps.append(Step("Flash encryption lock-down: no encryption, decryption or cache in download mode, no JTAG",
                          _burn(p.fe_lockdown, done)))  # fmt: skip
    if secure_boot_version == 2:
        if chip == "esp32":
            steps.append(Step("Secure Boot V2 key digest in BLOCK2", ("burn-key", "secure_boot_v2", digests[0])))
        elif chip == "esp32c2":
            if not fe:
                steps.append(Step("Secure Boot V2 key digest in the upper half of BLOCK_KEY0",
                                  ("burn-key", "BLOCK_KEY0", digests[0], "SECURE_BOOT_DIGEST")))  # fmt: skip
        else:
            args: tuple[str, ...] = ("burn-key",)
            for i, digest in enumerate(digests):
                args += (f"BLOCK_KEY{next_block + i}", digest, f"SECURE_BOOT_DIGEST{i}")
            steps.append(Step(f"Secure Boot V2 key digest(s) in BLOCK_KEY{next_block}..", args))
        unused = [f"SECURE_BOOT_KEY_REVOKE{i}" for i in range(len(digests), p.digest_slots)] if p.key_blocks else []
        if unused:
            steps.append(Step("Revoke the unused digest slots", ("burn-efuse", *[x for n in unused for x in (n, "1")])))
        enable = [("ABS_DONE_1", 1)] if chip == "esp32" else [("SECURE_BOOT_EN", 1)]
        if scheme == "ecdsa384":
            enable.append(("SECURE_BOOT_SHA384_EN", 1))
        steps.append(Step("Enable Secure Boot V2 and its lock-down (no JTAG, no direct boot)",
                          _burn([*p.sb_lockdown, *enable], done)))  # fmt: skip
    elif secure_boot_version == 1:
        steps.append(Step("Secure Boot V1 key into BLOCK2 (read- and write-protected)", ("burn-key", "secure_boot_v1", f"@keys/{v1_key_file}")))
        steps.append(Step("Enable Secure Boot V1 (ABS_DONE_0) and its lock-down", _burn([("ABS_DONE_0", 1), *p.sb_lockdown], done)))
    # Write protection last: its bits are shared (on the C2 SPI_BOOT_CRYPT_CNT's also locks SECURE_BOOT_EN).
    protect = (list(p.fe_write_protect) + ([p.crypt_cnt] if chip != "esp32" else [])) if fe else []
    if protect:
        steps.append(Step("Write-protect " + ", ".join(protect) + " (release mode)", ("write-protect-efuse", *protect)))
    if secure_boot_version == 2:
        steps.append(Step("Write-protect RD_DIS: the digests stay readable (after the flash key is read-protected)",
                          ("write-protect-efuse", "RD_DIS")))  # fmt: skip
    if fe or sb:
        steps.append(Step("Lock download mode (espefuse can burn nothing after this)", p.download_lock, final=True))
    return [s for s in steps if s.args]


def _shell_arg(arg: str) -> str:
    for prefix, var in (("@release/", "$RELEASE"), ("@keys/", "$ESP_KEYS_DIR")):
        if arg.startswith(prefix):
            return f'"{var}/{arg[len(prefix):]}"'
    return shlex.quote(arg)


def render_script(chip: str, steps: Sequence[Step], header: Sequence[str] = ()) -> str:
    """``efuse-script.sh``: the steps as espefuse calls, run from anywhere.

    Paths are relative to the release folder (the script's parent folder); secrets come
    from ``$ESP_KEYS_DIR``; ``$ESPEFUSE`` overrides the command (e.g. ``python -m
    espefuse --virt --path-efuse-file F`` for a virtual chip), ``$ESP_PORT`` names the
    port; the summary goes to ``$ESP_EFUSE_SUMMARY`` before the download-mode lock.
    """
    needs_keys = any(a.startswith("@keys/") for s in steps for a in s.args)
    lines = [
        "#!/bin/sh",
        f"# eFuse provisioning for {chip}, generated by esp-secure-build. IRREVERSIBLE: every step burns eFuses.",
        *[f"# {line}" for line in header],
        "#",
        "# ESP_PORT=/dev/ttyUSB0 ESP_KEYS_DIR=/secure/keys sh provisioning/efuse-script.sh",
        "#   ESPEFUSE          the espefuse command (default: espefuse)",
        "#   ESP_KEYS_DIR      folder holding the secret key files named below (never the release folder)",
        "#   ESP_EFUSE_SUMMARY where the summary goes before the final lock (default: efuse-summary.json)",
        "set -eu",
        'RELEASE=$(cd "$(dirname "$0")/.." && pwd)',
        ': "${ESPEFUSE:=espefuse}"',
        ': "${ESP_EFUSE_SUMMARY:=efuse-summary.json}"',
    ]
    if needs_keys:
        lines.append(': "${ESP_KEYS_DIR:?set ESP_KEYS_DIR to the folder holding the secret keys}"')
    lines += [
        "efuse() {",
        "    # shellcheck disable=SC2086  # ESPEFUSE may be a command with arguments",
        f'    $ESPEFUSE --chip {chip} ${{ESP_PORT:+--port "$ESP_PORT"}} --do-not-confirm "$@"',
        "}",
    ]
    for i, step in enumerate(steps, 1):
        if step.final:
            lines += ["", "# Summary for the pre-flight check: esp-secure verify-release RELEASE --efuse-summary FILE",
                      'efuse summary --format json --file "$ESP_EFUSE_SUMMARY"']  # fmt: skip
        lines += ["", f"# {i}. {step.title}", "efuse " + " ".join(_shell_arg(a) for a in step.args)]
    return "\n".join(lines) + "\n"


def _burned(step: Step) -> str:
    return " ".join(a.split("/", 1)[1] if a.startswith("@") else a for a in step.args)


def render_readme(chip: str, steps: Sequence[Step], facts: Sequence[str], key_files: Sequence[str]) -> str:
    """``README.txt``: what the script burns, in words, and what the factory must hold."""
    lines = [f"eFuse provisioning for {chip} (generated by esp-secure-build)", "", *facts, ""]
    lines += ["Run efuse-script.sh once per device, before flashing the factory image. Every step is",
              "irreversible. It burns, in this order (ESP-IDF's release-mode sequence):", ""]  # fmt: skip
    for i, step in enumerate(steps, 1):
        if step.final:
            lines.append("   (the eFuse summary is saved here: check it with esp-secure verify-release --efuse-summary)")
        lines.append(f"{i:3}. {step.title}")
        lines.append(f"       espefuse {_burned(step)}")
    if key_files:
        lines += ["", "Secret files the script reads from $ESP_KEYS_DIR (never shipped in this folder):"]
        lines += [f"  {name}" for name in key_files]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Checking a device: ``espefuse summary --format json``


def parse_efuse_summary(text: str, path: str | None = None) -> dict[str, Any]:
    """An ``espefuse summary --format json`` document; the banner of a redirected stdout is skipped."""
    start = text.find("{")
    try:
        if start < 0:
            raise ValueError("no JSON object")
        data = json.JSONDecoder().raw_decode(text[start:])[0]
    except ValueError as exc:
        raise EspSecureError(f"not an espefuse JSON summary ({exc})", path) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "value" in v for v in data.values()):
        raise EspSecureError("not an espefuse JSON summary (expected eFuse name -> {value, ...})", path)
    return data


class _Summary:
    def __init__(self, data: dict[str, Any], chip: str, problems: list[str]) -> None:
        self.data, self.chip, self.problems = data, chip, problems

    def field(self, name: str) -> dict[str, Any] | None:
        entry = self.data.get(name)
        if entry is None:
            self.problems.append(f"the summary has no {name}: is it from an {self.chip}?")
        return entry

    def raw(self, name: str) -> int | None:
        entry = self.field(name)
        if entry is None:
            return None
        value = entry.get("raw_value", entry["value"])
        if isinstance(value, bool | int):
            return int(value)
        try:
            return int(str(value), 0)
        except ValueError:
            return None

    def block(self, name: str) -> bytes | None:
        """A block's bytes as espefuse shows them; None when read-protected (shown as ??)."""
        entry = self.field(name)
        if entry is None or "?" in str(entry["value"]) or entry.get("readable") is False:
            return None
        try:
            return bytes.fromhex(str(entry["value"]))
        except ValueError:
            return None

    def text(self, name: str) -> str:
        entry = self.data.get(name)
        return str(entry["value"]) if entry else ""


def check_efuse_summary(
    summary: dict[str, Any],
    *,
    chip: str,
    key_digests: list[bytes],
    secure_boot_version: int | None,
    flash_encryption: bool,
    xts_key_bits: int | None,
    flash_key: bytes | None,
) -> list[str]:
    """What in a device's eFuses does not match the release; empty when it matches.

    ``summary``: parsed ``espefuse summary --format json``; ``key_digests``: the V2
    public-key digests the release is signed with (ignored for V1: its eFuse key is
    read-protected); ``xts_key_bits``: the flash key size in bits (256 = XTS-AES-128,
    512 = XTS-AES-256, 128 = the C2's 128-bit key; None: from ``flash_key``, else
    unchecked); ``flash_key`` is compared wherever the chip still shows it (a virtual
    chip, or before read protection) and a readable key is itself a problem. The
    download-mode lock is not required: the summary is taken before it.
    """
    p = get_profile(chip)
    problems: list[str] = []
    s = _Summary(summary, chip, problems)
    if flash_key is not None and xts_key_bits is None and chip != "esp32":
        xts_key_bits = len(flash_key) * 8
    cnt = s.raw(p.crypt_cnt)
    if cnt is not None:
        enabled = bin(cnt).count("1") % 2 == 1
        if flash_encryption and not enabled:
            problems.append(f"flash encryption is not enabled ({p.crypt_cnt} = {cnt:#x})")
        elif not flash_encryption and enabled:
            problems.append(f"flash encryption is enabled ({p.crypt_cnt} = {cnt:#x}) but the release is not encrypted")
        if flash_encryption and chip != "esp32" and s.field(p.crypt_cnt) and s.data[p.crypt_cnt].get("writeable") is not False:
            problems.append(f"{p.crypt_cnt} is not write-protected: flash encryption is not in release mode")
    if flash_encryption:
        _check_flash_key(s, p, xts_key_bits, flash_key)
        for name, value in p.fe_lockdown:
            got = s.raw(name)
            if got is not None and got != value:
                problems.append(f"{name} is {got:#x}, release mode burns {value:#x}")
    _check_secure_boot(s, p, key_digests, secure_boot_version, flash_encryption)
    return problems


def _key_blocks(s: _Summary, p: EfuseProfile) -> dict[str, list[int]]:
    """Key purpose name -> block numbers holding it."""
    purposes: dict[str, list[int]] = {}
    for i in range(p.key_blocks):
        if s.field(f"KEY_PURPOSE_{i}") is not None:
            purposes.setdefault(s.text(f"KEY_PURPOSE_{i}"), []).append(i)
    return purposes


def _check_flash_key(s: _Summary, p: EfuseProfile, bits: int | None, flash_key: bytes | None) -> None:
    problems = s.problems
    # (block, expected bytes as espefuse shows them: key blocks are shown byte-reversed)
    blocks: list[tuple[str, bytes | None]] = []
    if p.chip == "esp32":
        blocks.append(("BLOCK1", flash_key[::-1] if flash_key else None))
    elif p.chip == "esp32c2":
        length = s.raw("XTS_KEY_LENGTH_256")
        if bits is not None and length is not None and length != (1 if bits == 256 else 0):
            problems.append(f"the flash key is {bits} bits but XTS_KEY_LENGTH_256 says {s.text('XTS_KEY_LENGTH_256')}")
        if bits == 128:
            blocks.append(("BLOCK_KEY0_LOW_128", flash_key[::-1] if flash_key else None))
        else:
            blocks.append(("BLOCK_KEY0", flash_key[::-1] if flash_key else None))
    else:
        purposes = _key_blocks(s, p)
        wanted = ["XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2"] if bits == 512 else ["XTS_AES_128_KEY"]
        if bits is None:
            wanted = ["XTS_AES_128_KEY"] if "XTS_AES_128_KEY" in purposes else ["XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2"]
        for purpose in ("XTS_AES_128_KEY", "XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2"):
            if purpose not in wanted and purpose in purposes:
                problems.append(f"BLOCK_KEY{purposes[purpose][0]} holds a {purpose}: the release uses "
                                f"{'XTS-AES-256' if bits == 512 else 'XTS-AES-128'}")  # fmt: skip
        for n, purpose in enumerate(wanted):
            found = purposes.get(purpose, [])
            if not found:
                problems.append(f"no key block has purpose {purpose}: the flash encryption key is not burned")
                continue
            half = flash_key[32 * n: 32 * n + 32][::-1] if flash_key else None
            blocks.append((f"BLOCK_KEY{found[0]}", half))
    for name, expected in blocks:
        value = s.block(name)
        if value is None:
            continue  # read-protected, as it must be
        problems.append(f"the flash encryption key in {name} is readable (not read-protected)")
        if expected is not None and value[: len(expected)] != expected:
            problems.append(f"{name} holds another flash encryption key than the release's")


def _check_secure_boot(s: _Summary, p: EfuseProfile, digests: list[bytes], version: int | None, fe: bool) -> None:
    problems = s.problems
    enable = "ABS_DONE_0" if version == 1 else "ABS_DONE_1" if p.chip == "esp32" else "SECURE_BOOT_EN"
    if version is None:
        for name in (["ABS_DONE_0", "ABS_DONE_1"] if p.chip == "esp32" else ["SECURE_BOOT_EN"]):
            if s.raw(name):
                problems.append(f"Secure Boot is enabled ({name}) but the release is not signed")
        return
    if not s.raw(enable):
        problems.append(f"Secure Boot V{version} is not enabled ({enable} not burned)")
    for name, value in p.sb_lockdown:
        got = s.raw(name)
        if got is not None and got != value and not (name == "SOFT_DIS_JTAG" and bin(got).count("1") % 2):
            problems.append(f"{name} is {got:#x}, release mode burns {value:#x}")
    if version == 1:
        if s.block("BLOCK2") is not None:
            problems.append("BLOCK2 (the Secure Boot V1 key) is readable: it must be read-protected")
        return
    rd_dis = s.field("RD_DIS")
    if rd_dis is not None and rd_dis.get("writeable") is not False:
        problems.append("RD_DIS is not write-protected: a digest block could still be read-protected")
    if p.chip == "esp32":
        got = s.block("BLOCK2")
        if got is None or not digests or got != digests[0]:
            problems.append(f"BLOCK2 holds {got.hex() if got else 'no readable digest'}, not the release's key digest")
        return
    if p.chip == "esp32c2":
        got = s.block("BLOCK_KEY0_HI_128")
        if got is None or not digests or got != digests[0][:16]:
            problems.append(f"BLOCK_KEY0_HI_128 holds {got.hex() if got else 'no readable digest'}, "
                            "not the release's key digest (its first 128 bits)")  # fmt: skip
        return
    purposes = _key_blocks(s, p)
    burned: dict[bytes, str] = {}
    for slot in range(p.digest_slots):
        revoked = bool(s.raw(f"SECURE_BOOT_KEY_REVOKE{slot}"))
        blocks = purposes.get(f"SECURE_BOOT_DIGEST{slot}", [])
        if not blocks:
            if not revoked:
                problems.append(f"digest slot {slot} is empty and not revoked (SECURE_BOOT_KEY_REVOKE{slot})")
            continue
        block = f"BLOCK_KEY{blocks[0]}"
        value = s.block(block)
        if value is None:
            problems.append(f"{block} (SECURE_BOOT_DIGEST{slot}) is read-protected: the ROM cannot read it")
        elif value not in digests:
            problems.append(f"{block} (SECURE_BOOT_DIGEST{slot}) holds {value.hex()}, not a key digest of the release")
        elif revoked:
            problems.append(f"{block} (SECURE_BOOT_DIGEST{slot}) holds a release key digest but slot {slot} is revoked")
        else:
            burned[value] = block
    for digest in digests:
        if digest not in burned:
            problems.append(f"key digest {digest.hex()} of the release is not burned in a usable slot")
