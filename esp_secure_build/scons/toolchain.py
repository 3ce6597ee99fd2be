"""``env.EspToolchain()``: configure Debian's cross compiler for ``$ESP_CHIP``.

RISC-V chips use ``gcc-riscv64-unknown-elf`` (32-bit code through its multilibs);
Xtensa chips use ``gcc-xtensa-lx106``, which produces Xtensa ELFs with the right
machine type for the ESP32 memory map (call0 ABI: the code is for images, not
for running on silicon). Flags and their reasons are in docs/toolchain.md.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from ..chips import get_chip
from ..errors import EspSecureError

PREFIXES = {"riscv": "riscv64-unknown-elf-", "xtensa": "xtensa-lx106-elf-"}
DEBIAN_PACKAGES = {"riscv": "gcc-riscv64-unknown-elf", "xtensa": "gcc-xtensa-lx106"}

_COMSTRS = {
    "CCCOMSTR": "CC $TARGET",
    "ASCOMSTR": "AS $TARGET",
    "ASPPCOMSTR": "AS $TARGET",
    "LINKCOMSTR": "LINK $TARGET",
    "ARCOMSTR": "AR $TARGET",
    "RANLIBCOMSTR": "RANLIB $TARGET",
}


def _riscv_flags(march: str) -> tuple[list[str], list[str]]:
    # binutils 2.40 wants Zicsr/Zifencei spelled out to assemble CSR access, but
    # the same -march at link time selects the rv64 default multilib; link with
    # the plain ISA string (see docs/toolchain.md).
    compile_arch = [f"-march={march}_zicsr_zifencei", f"-mabi={'ilp32f' if 'f' in march[4:] else 'ilp32'}"]
    link_arch = [f"-march={march}", compile_arch[1]]
    return compile_arch, link_arch


def esp_toolchain(env: Any, chip_name: str | None = None, verbose: bool | None = None) -> None:
    """Set CC, AS, LINK and flags on ``env`` for the chip (default ``$ESP_CHIP``)."""
    chip = get_chip(chip_name or env.subst("$ESP_CHIP"))
    prefix = env.get("ESP_TOOLCHAIN_PREFIX") or PREFIXES[chip.arch]
    if shutil.which(prefix + "gcc", path=env["ENV"].get("PATH")) is None:
        raise EspSecureError(
            f"{prefix}gcc not found on PATH; install it with: apt-get install {DEBIAN_PACKAGES[chip.arch]}"
        )
    # "cc", not "gcc": SCons's gcc tool runs the host's gcc --version on every build.
    for tool in ("cc", "gnulink", "gas", "ar"):
        env.Tool(tool)
    top = env.Dir("#").abspath
    common = ["-Os", "-g", "-ffreestanding", "-ffunction-sections", "-fdata-sections", f"-ffile-prefix-map={top}=."]
    if chip.arch == "riscv":
        assert chip.riscv_march is not None
        compile_arch, link_arch = _riscv_flags(chip.riscv_march)
    else:
        # Code in flash calls IRAM functions more than 256 KiB away.
        compile_arch, link_arch = ["-mlongcalls"], []
    env.Replace(
        CC=prefix + "gcc",
        AS=prefix + "gcc",
        AR=prefix + "ar",
        RANLIB=prefix + "ranlib",
        LINK=prefix + "gcc",
        OBJCOPY=prefix + "objcopy",
        NM=prefix + "nm",
        PROGSUFFIX=".elf",
        OBJSUFFIX=".o",
        LIBPREFIX="lib",
        LIBSUFFIX=".a",
    )
    env.Append(
        CCFLAGS=compile_arch + common + ["-Wall", "-Wextra"],
        # gcc does not hand -ffile-prefix-map to gas: map the DWARF comp_dir of .S files ourselves.
        ASPPFLAGS=[*compile_arch, "-g", f"-ffile-prefix-map={top}=.", f"-Wa,--debug-prefix-map={top}=."],
        ASFLAGS=compile_arch,
        LINKFLAGS=[*link_arch, "-nostdlib", "-Wl,--gc-sections"],
    )
    env["ESP_ARCH"] = chip.arch
    if not (verbose if verbose is not None else env.get("ESP_VERBOSE")):
        env.SetDefault(**_COMSTRS)


def esp_program(env: Any, target: str, sources: list[Any], linker_script: str, **kwargs: Any) -> Any:
    """``env.Program`` with a linker script that is a real dependency.

    SCons does not see ``-T script`` by itself: without the explicit dependency an
    edited linker script would not relink.
    """
    script = env.File(linker_script)
    program = env.Program(target, sources, LINKFLAGS=[*env["LINKFLAGS"], "-T", script.abspath, f"-Wl,-Map={env.File(target).abspath}.map"], **kwargs)
    env.Depends(program, script)
    link_map = env.File(target).abspath + ".map"
    env.SideEffect(link_map, program)
    env.Clean(program, link_map)  # SCons removes side effects' files on -c only when told
    return program


def generate(env: Any) -> None:
    env.SetDefault(ENV={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    env.AddMethod(esp_toolchain, "EspToolchain")
    env.AddMethod(esp_program, "EspProgram")
