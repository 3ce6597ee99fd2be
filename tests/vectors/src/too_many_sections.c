/* 17 initialised data sections at separate DRAM addresses (too_many_sections.ld): an ESP
 * image holds at most 16 segments, so elf2image must refuse this ELF. Built by
 * ../regenerate.py with xtensa-lx106-elf-gcc. */
#define BLOB(n) __attribute__((section(".blob" #n), used)) const unsigned int blob##n = 0x5EC00000u + n;
BLOB(0) BLOB(1) BLOB(2) BLOB(3) BLOB(4) BLOB(5) BLOB(6) BLOB(7) BLOB(8)
BLOB(9) BLOB(10) BLOB(11) BLOB(12) BLOB(13) BLOB(14) BLOB(15) BLOB(16)

void call_start_cpu0(void)
{
    for (;;) {
    }
}
