// Exception vector table (VBAR_EL2 under VHE; VBAR_EL1 while Keel only reports a refusal at EL1).
//
// Every entry saves a TrapFrame { x0..x30, sp_el0, elr, spsr } (34 u64) on the current stack and
// calls handle_exception(frame, kind) in exception.rs, then restores the (possibly edited) frame
// and returns with eret. `kind` numbers the 16 vectors in table order (0..15).

.equ FRAME_SIZE, 272

.macro VECTOR kind
.balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exception_save
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    VECTOR 0    // current EL, SP0: sync
    VECTOR 1    //                  irq
    VECTOR 2    //                  fiq
    VECTOR 3    //                  serror
    VECTOR 4    // current EL, SPx: sync
    VECTOR 5    //                  irq
    VECTOR 6    //                  fiq
    VECTOR 7    //                  serror
    VECTOR 8    // lower EL, AArch64: sync
    VECTOR 9    //                    irq
    VECTOR 10   //                    fiq
    VECTOR 11   //                    serror
    VECTOR 12   // lower EL, AArch32: sync
    VECTOR 13   //                    irq
    VECTOR 14   //                    fiq
    VECTOR 15   //                    serror

exception_save:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, sp_el0
    stp     x30, x1, [sp, #240]
    mrs     x1, elr_el1
    mrs     x2, spsr_el1
    stp     x1, x2, [sp, #256]
    mov     x1, x0
    mov     x0, sp
    bl      handle_exception

// Restores the frame at sp and returns from the exception. `ret_to_user(frame)` enters here
// with sp = frame to start a user thread.
.global exception_return
exception_return:
    ldp     x1, x2, [sp, #256]
    msr     elr_el1, x1
    msr     spsr_el1, x2
    ldp     x30, x1, [sp, #240]
    msr     sp_el0, x1
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #FRAME_SIZE
    eret

// x0 = the frame to return with (it must sit at the top of this CPU's kernel stack).
.global ret_to_user
ret_to_user:
    mov     sp, x0
    b       exception_return

// x0 = new stack pointer, x1 = function to call on it with x2 as its argument. Never returns.
.global call_on_stack
call_on_stack:
    mov     sp, x0
    mov     x0, x2
    br      x1
