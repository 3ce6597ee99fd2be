/* The two fields of ESP-IDF's esp_tls_cfg_t that carry the CA certificate. */
#pragma once

typedef struct esp_tls_cfg {
    const unsigned char *cacert_pem_buf; /* PEM, NUL-terminated */
    unsigned int cacert_pem_bytes;       /* size including the NUL, as esp-tls expects */
} esp_tls_cfg_t;
