/* esp-secure-build sample application.
 *
 * Small but real: code in IROM (flash), a function in IRAM, read-only data in
 * DROM, initialised data in DRAM and zeroed .bss, and the server's CA
 * certificate embedded as a linker symbol, used the way ESP-IDF's esp-tls
 * examples use it.
 */
#include <stddef.h>
#include <stdint.h>

#include "esp_tls_cfg.h"

#define IRAM_ATTR __attribute__((section(".iram1")))

/* Symbols of the embedded certificate, named as ESP-IDF's EMBED_TXTFILES names them. */
extern const uint8_t server_root_cert_pem_start[] asm("_binary_ca_cert_pem_start");
extern const uint8_t server_root_cert_pem_end[] asm("_binary_ca_cert_pem_end");

/* DROM: read-only tables and strings. */
static const uint32_t crc_nibble_table[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};
const char sample_banner[] = "esp-secure-build sample application";

/* DRAM: initialised data and .bss. */
volatile uint32_t boot_count = 1;
volatile uint32_t cert_crc;
esp_tls_cfg_t tls_cfg;

/* IRAM: must run while the flash cache is off, like a real driver's ISR. */
IRAM_ATTR uint32_t crc32_iram(const uint8_t *data, size_t len)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_nibble_table[crc & 0x0f];
        crc = (crc >> 4) ^ crc_nibble_table[crc & 0x0f];
    }
    return ~crc;
}

/* IROM: ordinary code runs from flash. */
void app_main(void)
{
    tls_cfg.cacert_pem_buf = server_root_cert_pem_start;
    tls_cfg.cacert_pem_bytes = (unsigned int)(server_root_cert_pem_end - server_root_cert_pem_start);
    cert_crc = crc32_iram(tls_cfg.cacert_pem_buf, tls_cfg.cacert_pem_bytes);
    boot_count++;
    for (;;) {
        if (sample_banner[0] == 0) {
            break;
        }
    }
}
