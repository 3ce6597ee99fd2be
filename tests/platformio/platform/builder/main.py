"""Offline stand-in for platform-espressif32's builder (tests only).

Compiles with Debian's riscv64-unknown-elf-gcc (esp32c3) and xtensa-lx106-elf-gcc
(esp32) instead of Espressif's toolchain packages, and defines what an extra script sees in platform-espressif32 with the
Arduino framework: ``PROGNAME``, ``ESP32_APP_OFFSET`` (board ``upload.offset_address``),
``PARTITIONS_TABLE_CSV`` (``board_build.partitions``: the platform's
``tools/partitions/`` first, then the project), ``FLASH_EXTRA_IMAGES`` (bootloader at
the chip's bootloader offset (0x1000 on esp32), ``partitions.bin`` at 0x8000, ``boot_app0.bin`` at
0xe000), ``ElfToBin`` (esptool elf2image to ``${PROGNAME}.bin``) and ``upload``.
"""

from os.path import abspath, isfile, join

from SCons.Script import AlwaysBuild, Builder, Default, DefaultEnvironment

env = DefaultEnvironment()
platform = env.PioPlatform()
board = env.BoardConfig()
mcu = board.get("build.mcu", "esp32c3")
PLATFORM_DIR = platform.get_dir()
# The stand-in framework's start code, linker scripts and bootloader are the sample project's:
# one copy in the repository (the test lays sample_project/ out beside tests/ as here).
SAMPLE_DIR = join(PLATFORM_DIR, "..", "..", "..", "sample_project")
if mcu == "esp32c3":
    ARCH, PREFIX = "riscv", "riscv64-unknown-elf-"
    COMPILE_ARCH = ["-march=rv32imc_zicsr_zifencei", "-mabi=ilp32"]
    LINK_ARCH = ["-march=rv32imc", "-mabi=ilp32"]  # see docs/toolchain.md
elif mcu == "esp32":
    ARCH, PREFIX = "xtensa", "xtensa-lx106-elf-"
    COMPILE_ARCH, LINK_ARCH = ["-mlongcalls"], []
else:
    raise SystemExit(f"the offline test platform builds esp32c3 and esp32 only, not {mcu}")
BOOTLOADER_OFFSET = "0x1000" if mcu in ("esp32", "esp32s2") else "0x0000"


def flash_freq(env):
    return str(int(str(board.get("build.f_flash", "80000000L")).rstrip("L")) // 1000000) + "m"


def flash_mode(env):
    mode = board.get("build.flash_mode", "dio")
    return "dio" if mode in ("qio", "qout") else mode


env.Replace(
    __get_board_flash_mode=flash_mode,
    __get_board_f_image=flash_freq,
    AR=PREFIX + "ar",
    AS=PREFIX + "gcc",
    CC=PREFIX + "gcc",
    CXX=PREFIX + "g++",
    RANLIB=PREFIX + "ranlib",
    SIZETOOL=PREFIX + "size",
    OBJCOPY=PREFIX + "objcopy",
    UPLOADER="",  # the real platform: tool-esptoolpy's esptool.py
    ESP32_APP_OFFSET=board.get("upload.offset_address", "0x10000"),
    PROGSUFFIX=".elf",
    ARFLAGS=["rc"],
)
env.Append(
    CCFLAGS=[*COMPILE_ARCH, "-Os", "-g", "-ffreestanding", "-ffunction-sections", "-fdata-sections", "-Wall"],
    ASFLAGS=[*COMPILE_ARCH, "-x", "assembler-with-cpp"],
    LINKFLAGS=[*LINK_ARCH, "-nostdlib", "-Wl,--gc-sections"],
)
if not env.get("LDSCRIPT_PATH"):
    env.Replace(LDSCRIPT_PATH=join(SAMPLE_DIR, "ld", f"{mcu}_app.ld"))

# Allow user to override via pre:script (as platform-espressif32)
if env.get("PROGNAME", "program") == "program":
    env.Replace(PROGNAME="firmware")

esptool_image = " ".join([
    '"$PYTHONEXE" -m esptool --chip', mcu, "elf2image",
    "--flash-mode ${__get_board_flash_mode(__env__)}",
    "--flash-freq ${__get_board_f_image(__env__)}",
    "--flash-size", board.get("upload.flash_size", "4MB"),
    "-o $TARGET $SOURCES",
])
env.Append(BUILDERS=dict(ElfToBin=Builder(action=env.VerboseAction(esptool_image, "Building $TARGET"), suffix=".bin")))

# The framework's part: runtime start code, a second-stage bootloader, the partition table.
START = "start_riscv.S" if ARCH == "riscv" else "start_xtensa.c"
env.BuildSources(join("$BUILD_DIR", "runtime"), join(SAMPLE_DIR, "src"), src_filter=f"-<*> +<support.c> +<{START}>")

boot_env = env.Clone()
boot_env.Replace(LINKFLAGS=[*LINK_ARCH, "-nostdlib", "-Wl,--gc-sections", "-T", join(SAMPLE_DIR, "ld", f"{mcu}_bootloader.ld")],
                 LIBS=[])  # fmt: skip
boot_obj = boot_env.Object(join("$BUILD_DIR", "bootloader", "bootloader.o"), join(SAMPLE_DIR, "bootloader", "bootloader.c"))
boot_elf = boot_env.Program(join("$BUILD_DIR", "bootloader.elf"), boot_obj)
boot_bin = env.ElfToBin(join("$BUILD_DIR", "bootloader"), boot_elf)

partitions_csv = board.get("build.partitions", "default.csv")
fw_partitions = join(PLATFORM_DIR, "tools", "partitions")
env.Replace(PARTITIONS_TABLE_CSV=abspath(join(fw_partitions, partitions_csv) if isfile(join(fw_partitions, partitions_csv)) else partitions_csv))
partition_table = env.Command(
    join("$BUILD_DIR", "partitions.bin"),
    "$PARTITIONS_TABLE_CSV",
    env.VerboseAction('"$PYTHONEXE" -m esp_secure_build partition-table $SOURCE $TARGET', "Generating partitions $TARGET"),
)
env.Append(FLASH_EXTRA_IMAGES=[
    (BOOTLOADER_OFFSET, join("$BUILD_DIR", "bootloader.bin")),
    ("0x8000", join("$BUILD_DIR", "partitions.bin")),
    ("0xe000", join(fw_partitions, "boot_app0.bin")),
])

target_elf = env.BuildProgram()
env.Depends(target_elf, [partition_table, boot_bin])
target_firm = env.ElfToBin(join("$BUILD_DIR", "${PROGNAME}"), target_elf)
target_buildprog = env.Alias("buildprog", target_firm, target_firm)

env.Replace(
    UPLOADERFLAGS=["--chip", mcu, "--port", '"$UPLOAD_PORT"', "--baud", "$UPLOAD_SPEED", "write-flash", "-z"],
    UPLOADCMD='"$PYTHONEXE" -m esptool $UPLOADERFLAGS $ESP32_APP_OFFSET $SOURCE',
)
for image in env.get("FLASH_EXTRA_IMAGES", []):
    env.Append(UPLOADERFLAGS=[image[0], env.subst(image[1])])
env.AddPlatformTarget("upload", target_firm, [env.VerboseAction("$UPLOADCMD", "Uploading $SOURCE")], "Upload")
AlwaysBuild(env.Alias("nobuild", target_firm))

Default([target_buildprog])
