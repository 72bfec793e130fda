//! `guest=crash`: the guest breaks itself for good — VBAR_EL1 points into a hole, then `udf`. The
//! UNDEF vectors to the hole, whose instruction abort vectors to the hole again, forever (on the
//! Keel guest machine every iteration is a stage-2 fault the hypervisor must inject). It never
//! prints PASS: the test is that the hypervisor survives, keeps its other VMs running and can
//! destroy this one.

use super::Outcome;
use crate::machine::HOLE;
use crate::runtime::Guest;

pub fn run(_guest: &Guest) -> Outcome {
    say!("crash: VBAR_EL1 = {HOLE:#x}, then udf: this guest now loops in exception entry");
    // SAFETY: deliberately unsound for the guest: it never runs Rust code again.
    unsafe {
        core::arch::asm!(
            "msr vbar_el1, {v}",
            "isb",
            "udf #0",
            v = in(reg) HOLE,
            options(noreturn, nostack),
        );
    }
}
