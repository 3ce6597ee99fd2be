/* RISC-V entry: set gp and sp, zero .bss, run app_main. */
    .section .iram1.entry, "ax"
    .global call_start_cpu0
    .type call_start_cpu0, @function
call_start_cpu0:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, _stack_top
    la t0, _bss_start
    la t1, _bss_end
1:  bgeu t0, t1, 2f
    sw zero, 0(t0)
    addi t0, t0, 4
    j 1b
2:  call app_main
3:  j 3b
    .size call_start_cpu0, . - call_start_cpu0
