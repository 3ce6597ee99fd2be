/* A bare-metal app for the example: the platform brings the start code. */
#include <stdint.h>

static const char banner[] = "esp-secure-build PlatformIO example";
volatile uint32_t ticks;

void app_main(void)
{
    for (;;) {
        ticks += (uint32_t)banner[ticks % sizeof(banner)];
    }
}
