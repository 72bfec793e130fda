// Keel boot path: arm64 Image header, EL2/VHE entry, bootstrap page tables, jump to the high half.
//
// Runs with the MMU off at whatever 2 MiB-aligned physical address the loader chose, so every
// address here is PC-relative (adr/adrp) until the MMU is on. It builds two tiny tables:
//   TTBR0: identity map (1 GiB blocks) of the GiB holding the kernel and the GiB holding the DTB;
//   TTBR1: the kernel image at KIMAGE_VBASE in 2 MiB blocks (RWX; Rust replaces it with W^X tables).
// It enables the MMU through the *_EL1 register names: under VHE (HCR_EL2.E2H=1) those reach the EL2
// registers, and when Keel must refuse to run (entered at EL1, or no VHE) the very same code runs at
// EL1, so the refusal is printed by the normal Rust logger.
//
// kernel_main(dtb_pa: x0, boot_status: x1, kimage_pa: x2) never returns.

.equ BOOT_OK,            0
.equ BOOT_ENTERED_EL1,   1
.equ BOOT_NO_VHE,        2

.equ HCR_RW,   (1 << 31)
.equ HCR_TGE,  (1 << 27)
.equ HCR_E2H,  (1 << 34)

.equ MAIR_VALUE, 0x000000000044ff04   // attr0 Device-nGnRE, attr1 Normal WB, attr2 Normal NC, attr3 Device-nGnRnE(0)
.equ PTE_NORMAL_BLOCK, (1 | (1 << 2) | (3 << 8) | (1 << 10))   // block, AttrIndx=1, inner shareable, AF
.equ PTE_TABLE, 3
.equ SCTLR_RES1, 0x30d00800
.equ SCTLR_MMU_ON, (SCTLR_RES1 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12))  // M, C, SA, I
// TCR (EL1 layout, also TCR_EL2 under VHE): 48-bit VAs in both halves, 4 KiB granule, WBWA inner-shareable walks.
.equ TCR_BASE, (16 | (1 << 8) | (1 << 10) | (3 << 12) | (16 << 16) | (1 << 24) | (1 << 26) | (3 << 28) | (2 << 30))
.equ CPACR_FPEN, (3 << 20)

.section .text.head, "ax"
.global _start
_start:
    // arm64 Image header (Documentation/arch/arm64/booting.rst)
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   0                       // text_offset
    .quad   __kimage_size           // image_size
    .quad   0xa                     // flags: little endian, 4 KiB pages, anywhere in RAM
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

.section .text.boot, "ax"
primary_entry:
    mov     x19, x0                 // DTB physical address
    mov     x21, #BOOT_ENTERED_EL1
    mrs     x1, CurrentEL
    ubfx    x1, x1, #2, #2
    cmp     x1, #2
    b.lo    at_el1
    b.hi    park                    // EL3: firmware's job, not ours
    mov     x21, #BOOT_NO_VHE
    mrs     x1, id_aa64mmfr1_el1
    ubfx    x1, x1, #8, #4          // VH
    cbz     x1, drop_to_el1
    mov     x21, #BOOT_OK
    bl      el2_enable_vhe
    b       build_tables

// A CPU with EL2 but no VHE: continue at EL1 only to report the refusal.
drop_to_el1:
    mov     x1, #HCR_RW
    msr     hcr_el2, x1
    mov     x1, #3                  // CNTHCTL_EL2 (E2H=0 layout): EL1PCTEN | EL1PCEN
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    ldr     x1, =SCTLR_RES1
    msr     sctlr_el1, x1
    mov     x1, #0x3c5              // EL1h, DAIF masked
    msr     spsr_el2, x1
    adr     x1, at_el1
    msr     elr_el2, x1
    isb
    eret

at_el1:
build_tables:
    // FP/SIMD must not trap (Rust services may use it; the kernel itself is built soft-float).
    mov     x1, #CPACR_FPEN
    msr     cpacr_el1, x1
    adrp    x22, _start             // physical load address of the image
    adrp    x23, __boot_pt_start
    // zero the six boot table pages
    mov     x1, x23
    add     x2, x23, #(6 * 4096)
1:  stp     xzr, xzr, [x1], #16
    cmp     x1, x2
    b.lo    1b
    // TTBR0 identity: L0 at pt+0, L1 at pt+4K
    add     x3, x23, #4096
    mov     x0, x22
    bl      identity_map_gib
    mov     x0, x19
    bl      identity_map_gib
    // TTBR1: L0 at pt+8K, L1 at pt+12K, L2 at pt+16K; KIMAGE_VBASE has L0 index 511, L1/L2 index 0.
    add     x4, x23, #(2 * 4096)
    add     x5, x23, #(3 * 4096)
    add     x6, x23, #(4 * 4096)
    orr     x1, x5, #PTE_TABLE
    str     x1, [x4, #(511 * 8)]
    orr     x1, x6, #PTE_TABLE
    str     x1, [x5]
    ldr     x7, =__kimage_size
    lsr     x7, x7, #21             // number of 2 MiB blocks
    mov     x8, x22
    ldr     x9, =PTE_NORMAL_BLOCK
    mov     x10, x6
2:  orr     x1, x8, x9
    str     x1, [x10], #8
    add     x8, x8, #(1 << 21)
    subs    x7, x7, #1
    b.ne    2b
    // The tables were written with the MMU (and so the caches) off: drop any stale lines.
    mov     x1, x23
    add     x2, x23, #(6 * 4096)
3:  dc      ivac, x1
    add     x1, x1, #64
    cmp     x1, x2
    b.lo    3b
    dsb     sy

    mov     x0, x23                 // TTBR0
    add     x1, x23, #(2 * 4096)    // TTBR1
    bl      mmu_enable
    ldr     x1, =primary_high
    br      x1

// x0 = a physical address; maps its GiB 1:1 in the TTBR0 tables (L0 at x23, L1 at x3).
// Both addresses must share one L0 entry (true on every machine with < 512 GiB below the kernel).
identity_map_gib:
    lsr     x1, x0, #39
    lsr     x2, x22, #39
    cmp     x1, x2
    b.ne    9f
    orr     x2, x3, #PTE_TABLE
    str     x2, [x23, x1, lsl #3]
    ubfx    x1, x0, #30, #9
    lsr     x2, x0, #30
    lsl     x2, x2, #30
    ldr     x4, =PTE_NORMAL_BLOCK
    orr     x2, x2, x4
    str     x2, [x3, x1, lsl #3]
9:  ret

// x0 = TTBR0, x1 = TTBR1 (physical). Uses the *_EL1 names (EL2 registers under VHE).
mmu_enable:
    ldr     x2, =MAIR_VALUE
    msr     mair_el1, x2
    ldr     x2, =TCR_BASE
    mrs     x3, id_aa64mmfr0_el1
    ubfx    x3, x3, #0, #3          // PARange -> IPS
    cmp     x3, #5
    mov     x4, #5
    csel    x3, x3, x4, ls          // 52-bit PA needs 64 KiB pages: cap IPS at 48 bits
    bfi     x2, x3, #32, #3
    msr     tcr_el1, x2
    msr     ttbr0_el1, x0
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x2, =SCTLR_MMU_ON
    msr     sctlr_el1, x2
    isb
    ret

// HCR_EL2 for the host: E2H (VHE), TGE (EL0 runs in the EL2&0 regime), RW.
el2_enable_vhe:
    ldr     x1, =(HCR_E2H | HCR_TGE | HCR_RW)
    msr     hcr_el2, x1
    isb
    ret

park:
    wfe
    b       park

// x0 = new TTBR1 (physical). Called at its physical address through the identity map (TTBR0),
// so no instruction is fetched through TTBR1 while it changes. Touches no memory or stack.
.global switch_ttbr1_idmap
switch_ttbr1_idmap:
    dsb     ishst
    msr     ttbr1_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ret

// Secondary CPUs enter here from PSCI CPU_ON with x0 = physical address of their SecondaryBoot
// record: { ttbr0, ttbr1, tcr, mair, sctlr, stack_top, cpu_index, entry } (see smp.rs).
.global secondary_entry
secondary_entry:
    mov     x19, x0
    bl      el2_enable_vhe
    mov     x1, #CPACR_FPEN
    msr     cpacr_el1, x1
    ldp     x0, x1, [x19, #0]
    ldp     x2, x3, [x19, #16]
    msr     mair_el1, x3
    msr     tcr_el1, x2
    msr     ttbr0_el1, x0
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x2, [x19, #32]
    msr     sctlr_el1, x2
    isb
    ldp     x2, x0, [x19, #40]      // stack_top, cpu_index
    ldr     x3, [x19, #56]          // entry (virtual)
    mov     sp, x2
    br      x3

.section .text, "ax"
primary_high:
    ldr     x1, =__boot_stack_top
    mov     sp, x1
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
1:  stp     xzr, xzr, [x1], #16
    cmp     x1, x2
    b.lo    1b
    mov     x0, x19
    mov     x1, x21
    mov     x2, x22
    bl      kernel_main
    b       park
