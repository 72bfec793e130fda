//! The two system-register helpers: `read_sysreg!("name")` and `write_sysreg!("name", value)`.
//! They expand to a bare `mrs`/`msr` and must be used inside an `unsafe` block whose `SAFETY:`
//! comment says why that access is sound; the owning module (timer, gic, trap) wraps each
//! register it uses once.

/// `mrs` of the named register (an assembler name or an `S<op0>_<op1>_C<n>_C<m>_<op2>` form).
macro_rules! read_sysreg {
    ($reg:literal) => {{
        let value: u64;
        core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) value, options(nostack, preserves_flags));
        value
    }};
}

/// `msr` of the named register.
macro_rules! write_sysreg {
    ($reg:literal, $value:expr) => {{
        let value: u64 = $value;
        core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) value, options(nostack, preserves_flags));
    }};
}
