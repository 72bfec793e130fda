//! Boot: the arm64 Linux `Image` header and the two entry points, in assembly.
//!
//! - `_start` (primary, Linux boot protocol): x0 = DTB physical address, MMU off, EL1h. Zeroes
//!   .bss (which holds the stacks), then runs the common setup and `primary_main(dtb, cpu)`.
//! - `secondary_entry` (PSCI CPU_ON): x0 = context ID. Common setup, then
//!   `secondary_main(context, cpu)`.
//!
//! Common setup: a CPU whose MPIDR has Aff1..Aff3 set or Aff0 >= MAX_CPUS parks in a WFE loop
//! (there is no stack for it). Otherwise TPIDR_EL1 = Aff0, SP_EL1 = the top of stack Aff0,
//! SCTLR_EL1 = RES1 bits + I-cache (MMU, D-cache and alignment checks off), CPACR_EL1 = 0 (FP and
//! SIMD trap: the target is soft-float, so an FP instruction is a bug worth seeing), VBAR_EL1 =
//! the vector table. All of DAIF stays masked; Rust unmasks what a scenario needs.
//!
//! The image is linked at 0x4008_0000 = RAM base + text_offset, where the VMM and QEMU load it;
//! image_size covers .bss, so the loader places the DTB past the stacks.

use crate::machine::MAX_CPUS;

/// Bytes of stack per CPU.
pub const STACK_SIZE: usize = 16 * 1024;

/// Where the VMM loads a Linux `Image`: 0x80000 above a 2 MiB-aligned RAM base.
const TEXT_OFFSET: u64 = 0x8_0000;
/// Image header flags: little-endian (bit 0 = 0), 4 KiB pages (bits 1-2 = 1), may be placed
/// anywhere in physical memory (bit 3 = 1).
const IMAGE_FLAGS: u64 = 0xA;
/// SCTLR_EL1: the ARMv8.0 RES1 bits (29, 28, 23, 22, 20, 11) plus I (bit 12).
const SCTLR_EL1_BOOT: u64 = 0x30d0_1800;

#[repr(C, align(16))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

/// Per-CPU stacks, indexed by MPIDR_EL1.Aff0; only boot assembly refers to them.
static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

unsafe extern "C" {
    /// The PSCI CPU_ON entry point (defined below).
    pub fn secondary_entry();
}

core::arch::global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   {text_offset}           // text_offset
    .quad   __image_size            // image_size (includes .bss and the stacks)
    .quad   {flags}                 // flags
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

.section .text.boot, "ax"
primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                 // DTB physical address
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
0:  cmp     x1, x2
    b.hs    1f
    stp     xzr, xzr, [x1], #16
    b       0b
1:  adrp    x20, {primary_main}
    add     x20, x20, :lo12:{primary_main}
    b       cpu_setup

.global secondary_entry
secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0                 // context ID
    adrp    x20, {secondary_main}
    add     x20, x20, :lo12:{secondary_main}

cpu_setup:
    mrs     x1, mpidr_el1
    mov     x3, #0xff00             // Aff1
    movk    x3, #0xff, lsl #16      // Aff2
    movk    x3, #0xff, lsl #32      // Aff3
    tst     x1, x3
    b.ne    park
    and     x2, x1, #0xff
    cmp     x2, #{max_cpus}
    b.hs    park
    msr     tpidr_el1, x2
    msr     spsel, #1
    adrp    x3, {stacks}
    add     x3, x3, :lo12:{stacks}
    add     x4, x2, #1
    mov     x5, #{stack_size}
    madd    x3, x4, x5, x3
    mov     sp, x3
    mov     x3, #({sctlr} & 0xffff)
    movk    x3, #({sctlr} >> 16), lsl #16
    msr     sctlr_el1, x3
    msr     cpacr_el1, xzr
    adrp    x3, exception_vectors
    add     x3, x3, :lo12:exception_vectors
    msr     vbar_el1, x3
    isb
    mov     x0, x19
    mov     x1, x2
    blr     x20
park:
    wfe
    b       park
"#,
    text_offset = const TEXT_OFFSET,
    flags = const IMAGE_FLAGS,
    max_cpus = const MAX_CPUS,
    stack_size = const STACK_SIZE,
    sctlr = const SCTLR_EL1_BOOT,
    stacks = sym STACKS,
    primary_main = sym crate::runtime::primary_main,
    secondary_main = sym crate::smp::secondary_main,
);
