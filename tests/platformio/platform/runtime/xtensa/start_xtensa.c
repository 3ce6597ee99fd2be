/* Xtensa entry: the ROM has set up a stack; zero .bss and run app_main. */
#include <stdint.h>

extern uint32_t _bss_start[], _bss_end[];
void app_main(void);

__attribute__((section(".iram1"), noreturn)) void call_start_cpu0(void)
{
    for (uint32_t *p = _bss_start; p < _bss_end; p++) {
        *p = 0;
    }
    app_main();
    for (;;) {
    }
}
