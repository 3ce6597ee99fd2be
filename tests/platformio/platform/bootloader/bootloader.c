/* A tiny RAM-only second-stage bootloader: it never touches flash mapping, it
 * only shows the shape ESP-IDF's bootloader ELF has (descriptor, loader code in
 * a separate IRAM region, data in DRAM). */
#include <stdint.h>

volatile uint32_t boot_stage;
static volatile uint32_t boot_magic = 0x0b00710a;

__attribute__((section(".iram_loader.text"), noinline)) static void load_app(void)
{
    boot_stage = 2;
}

void call_start_cpu0(void)
{
    boot_stage = boot_magic;
    load_app();
    for (;;) {
    }
}
