//! `memcpy`, `memmove` and `memset` for Keel's bare-metal AArch64 code (the kernel and every user
//! program), in place of compiler-builtins' portable ones.
//!
//! compiler-builtins (`-Zbuild-std-features=compiler-builtins-mem`) defines these symbols weak
//! and, on AArch64, copies or fills one machine word per loop iteration: 4 to 5 instructions per
//! 8 bytes, ~1,500 to zero a page. Every struct move above a few words, every page zeroed, every
//! message and file byte copied goes through them. The strong definitions here move 64 bytes per
//! iteration with `ldp`/`stp` (14 instructions per 64 bytes), then the tail by its size bits.
//!
//! They rely on what Keel's `SCTLR_EL2` sets for both the kernel and EL0 (the EL2&0 regime):
//! alignment checking off (`A` = 0), so `ldp`/`stp` of any alignment work on Normal memory.
//! Nothing may call them with the MMU off or on device memory (boot.S zeroes its BSS and tables
//! itself; MMIO goes through volatile accesses). `memmove` copies forwards unless the
//! destination starts inside the source, then backwards, 16 bytes at a time.
//!
//! Checked by ktest's `mem` checks (every length to 300 bytes at every alignment to 16, both
//! overlap directions) and by everything else that runs.
#![no_std]

// SAFETY: each routine touches only [dst, dst + n) and [src, src + n), as their C contracts
// require of callers; they use only caller-saved registers (x0-x16) and no stack; the alignment
// and MMU conditions they rely on are stated above.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
core::arch::global_asm!(
    r#"
    .section .text.keel_mem, "ax", %progbits

    .global memcpy
    .type memcpy, %function
    .p2align 4
memcpy:
    mov     x3, x0
    cmp     x2, #64
    b.lo    2f
1:  ldp     x4, x5, [x1]
    ldp     x6, x7, [x1, #16]
    ldp     x8, x9, [x1, #32]
    ldp     x10, x11, [x1, #48]
    add     x1, x1, #64
    sub     x2, x2, #64
    stp     x4, x5, [x3]
    stp     x6, x7, [x3, #16]
    stp     x8, x9, [x3, #32]
    stp     x10, x11, [x3, #48]
    add     x3, x3, #64
    cmp     x2, #64
    b.hs    1b
2:  tbz     x2, #5, 3f
    ldp     x4, x5, [x1]
    ldp     x6, x7, [x1, #16]
    add     x1, x1, #32
    stp     x4, x5, [x3]
    stp     x6, x7, [x3, #16]
    add     x3, x3, #32
3:  tbz     x2, #4, 4f
    ldp     x4, x5, [x1], #16
    stp     x4, x5, [x3], #16
4:  tbz     x2, #3, 5f
    ldr     x4, [x1], #8
    str     x4, [x3], #8
5:  tbz     x2, #2, 6f
    ldr     w4, [x1], #4
    str     w4, [x3], #4
6:  tbz     x2, #1, 7f
    ldrh    w4, [x1], #2
    strh    w4, [x3], #2
7:  tbz     x2, #0, 8f
    ldrb    w4, [x1]
    strb    w4, [x3]
8:  ret
    .size memcpy, . - memcpy

    .global memmove
    .type memmove, %function
    .p2align 4
memmove:
    // Forwards (memcpy loads each chunk before storing it) unless dst lies in (src, src + n).
    sub     x4, x0, x1
    cmp     x4, x2
    b.hs    memcpy
    add     x1, x1, x2
    add     x3, x0, x2
1:  cmp     x2, #16
    b.lo    2f
    ldp     x4, x5, [x1, #-16]!
    stp     x4, x5, [x3, #-16]!
    sub     x2, x2, #16
    b       1b
2:  cbz     x2, 3f
    ldrb    w4, [x1, #-1]!
    strb    w4, [x3, #-1]!
    sub     x2, x2, #1
    b       2b
3:  ret
    .size memmove, . - memmove

    .global memset
    .type memset, %function
    .p2align 4
memset:
    and     w1, w1, #0xff
    mov     x3, x0
    orr     w1, w1, w1, lsl #8
    orr     w1, w1, w1, lsl #16
    orr     x1, x1, x1, lsl #32
    cmp     x2, #64
    b.lo    2f
1:  stp     x1, x1, [x3]
    stp     x1, x1, [x3, #16]
    stp     x1, x1, [x3, #32]
    stp     x1, x1, [x3, #48]
    add     x3, x3, #64
    sub     x2, x2, #64
    cmp     x2, #64
    b.hs    1b
2:  tbz     x2, #5, 3f
    stp     x1, x1, [x3]
    stp     x1, x1, [x3, #16]
    add     x3, x3, #32
3:  tbz     x2, #4, 4f
    stp     x1, x1, [x3], #16
4:  tbz     x2, #3, 5f
    str     x1, [x3], #8
5:  tbz     x2, #2, 6f
    str     w1, [x3], #4
6:  tbz     x2, #1, 7f
    strh    w1, [x3], #2
7:  tbz     x2, #0, 8f
    strb    w1, [x3]
8:  ret
    .size memset, . - memset
"#
);
