//! Deliberate faults, for tests that check a crashing program is killed and nothing else is hurt.

/// Reads address 0: a translation fault (nothing is mapped at the bottom page).
pub fn null_read() -> u64 {
    // SAFETY: not sound on purpose: address 0 is never mapped in a Keel process, so the load faults
    // and the kernel kills this process before the value could be used.
    unsafe { core::ptr::read_volatile(core::ptr::null::<u64>()) }
}

/// Executes a permanently undefined instruction.
pub fn undefined_instruction() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `udf` raises an undefined-instruction exception; the kernel kills the process.
    unsafe {
        core::arch::asm!("udf #0")
    };
}

/// Recurses until the stack runs into its guard page.
#[allow(unconditional_recursion)]
pub fn stack_overflow(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[0] = depth as u8;
    let frame = core::hint::black_box(frame);
    stack_overflow(depth + 1) + u64::from(frame[0])
}
