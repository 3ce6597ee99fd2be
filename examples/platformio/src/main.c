/* A bare-metal app for the example: the platform brings the start code. */
#include <stdint.h>

static const char banner[] = "esp-secure-build PlatformIO example";
volatile uint32_t ticks;

void app_main(void)
{
    uint32_t i = 0;
    for (;;) {
        ticks += (uint32_t)banner[i];
        i = banner[i + 1] ? i + 1 : 0;
    }
}
