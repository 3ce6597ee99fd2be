/* Embeds ca_cert.pem as ESP-IDF's EMBED_TXTFILES does: a read-only section,
 * _binary_ca_cert_pem_start/_end around the bytes plus a terminating NUL, and
 * ca_cert_pem_length. The assembler finds the file through -I (see SConstruct). */
    .section .rodata.embedded, "a"
    .balign 4
    .global _binary_ca_cert_pem_start
    .global _binary_ca_cert_pem_end
    .global ca_cert_pem_length
_binary_ca_cert_pem_start:
    .incbin "ca_cert.pem"
    .byte 0
_binary_ca_cert_pem_end:
    .balign 4
ca_cert_pem_length:
    .long _binary_ca_cert_pem_end - _binary_ca_cert_pem_start - 1
