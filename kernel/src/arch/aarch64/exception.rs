//! Exception entry from `vectors.S`: interrupts are dispatched to the GIC driver; every other
//! exception is, for now, unexpected and reported with its decoded syndrome before the CPU stops.
//!
//! A stopped CPU never returns to the code that faulted. When the last running CPU stops, the
//! machine powers off so a scenario test ends instead of hanging.

use super::{cpu, irq, psci, virt};
use crate::arch::esr;
use crate::kernel::KERNEL;
use crate::percpu;
use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable};

/// Registers saved by `vectors.S` (34 words: x0-x30, SP_EL0, ELR, SPSR) — a user thread's
/// registers when the exception came from EL0.
pub type TrapFrame = crate::hal::UserRegs;

/// The vector that was taken, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vector {
    CurrentSp0(Kind),
    CurrentSpx(Kind),
    Lower64(Kind),
    Lower32(Kind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sync,
    Irq,
    Fiq,
    SError,
}

impl Vector {
    fn from_index(i: u64) -> Self {
        let kind = match i % 4 {
            0 => Kind::Sync,
            1 => Kind::Irq,
            2 => Kind::Fiq,
            _ => Kind::SError,
        };
        match i / 4 {
            0 => Self::CurrentSp0(kind),
            1 => Self::CurrentSpx(kind),
            2 => Self::Lower64(kind),
            _ => Self::Lower32(kind),
        }
    }

    fn origin(self) -> &'static str {
        match self {
            Self::CurrentSp0(_) => "kernel (SP_EL0)",
            Self::CurrentSpx(_) => "kernel",
            Self::Lower64(_) => "lower EL (AArch64)",
            Self::Lower32(_) => "lower EL (AArch32)",
        }
    }
}

/// Called by `vectors.S` with the saved frame and the vector index.
#[unsafe(no_mangle)]
extern "C" fn handle_exception(frame: &mut TrapFrame, index: u64) {
    match Vector::from_index(index) {
        Vector::CurrentSpx(Kind::Irq) => {
            // The kernel was idle (the only time it runs with IRQs unmasked).
            let cpu = cpu::cpu_id();
            let mut k = KERNEL.lock();
            irq::handle_irq(k.as_mut(), cpu);
        }
        Vector::Lower64(Kind::Irq) => {
            let cpu = cpu::cpu_id();
            let guest = virt::in_guest();
            let mut guard = KERNEL.lock();
            if let Some(k) = guard.as_mut() {
                if guest {
                    k.guest_exited(cpu);
                    k.count_guest_irq(cpu);
                }
                irq::handle_irq(Some(&mut *k), cpu);
                if guest {
                    k.guest_interrupted(cpu, frame);
                }
                k.finish_trap(cpu, frame);
            } else {
                irq::handle_irq(None, cpu);
            }
            super::user::run_user(guard, cpu, frame);
        }
        Vector::Lower64(Kind::Sync) => {
            let cpu = cpu::cpu_id();
            let mut guard;
            if virt::in_guest() {
                let exit = virt::decode_guest_exit();
                guard = KERNEL.lock();
                if let Some(k) = guard.as_mut() {
                    if k.guest_fast_exit(cpu, frame, &exit) {
                        return;
                    }
                    k.guest_exited(cpu);
                    k.guest_trap(cpu, frame, exit);
                    k.finish_trap(cpu, frame);
                }
            } else {
                let trap = super::user::decode_user_trap(frame);
                guard = KERNEL.lock();
                if let Some(k) = guard.as_mut() {
                    k.user_trap(cpu, frame, trap);
                }
            }
            super::user::run_user(guard, cpu, frame);
        }
        Vector::Lower64(Kind::SError) if virt::in_guest() => {
            // An asynchronous external abort caused by the guest (routed here by HCR_EL2.AMO):
            // the guest's problem, not the kernel's. It is logged and the guest continues.
            let cpu = cpu::cpu_id();
            log::warn!("cpu{cpu}: SError from a guest at pc {:#x}; ignored", frame.pc);
            let guard = KERNEL.lock();
            super::user::run_user(guard, cpu, frame);
        }
        vector => report_and_stop(frame, vector),
    }
}

fn report_and_stop(frame: &TrapFrame, vector: Vector) -> ! {
    let esr_value = ESR_EL1.get();
    let ec = esr::exception_class(esr_value);
    let kind = match vector {
        Vector::CurrentSp0(k) | Vector::CurrentSpx(k) | Vector::Lower64(k) | Vector::Lower32(k) => k,
    };
    let cpu_index = cpu::cpu_id();
    let origin = vector.origin();
    if kind != Kind::Sync {
        log::error!("unexpected {kind:?} from {origin}, ESR {esr_value:#x}, ELR {:#x}; stopping cpu{cpu_index}", frame.pc);
    } else if esr::is_abort(ec) {
        let iss = esr::iss(esr_value);
        let access = match ec {
            0x20 | 0x21 => "instruction fetch",
            _ if esr::is_write(iss) => "write",
            _ => "read",
        };
        log::error!(
            "unexpected exception from {origin}: {} ({access}, {}; ESR {esr_value:#x}), FAR {:#x}, ELR {:#x}; stopping cpu{cpu_index}",
            esr::class_name(ec),
            esr::fault_status_name(iss),
            FAR_EL1.get(),
            frame.pc,
        );
    } else {
        log::error!(
            "unexpected exception from {origin}: {} (ESR {esr_value:#x}), FAR {:#x}, ELR {:#x}; stopping cpu{cpu_index}",
            esr::class_name(ec),
            FAR_EL1.get(),
            frame.pc,
        );
    }
    stop_this_cpu(cpu_index)
}

/// Marks this CPU stopped and parks it; the last CPU to stop powers the machine off.
pub fn stop_this_cpu(cpu_index: usize) -> ! {
    if percpu::mark_stopped(cpu_index) == 0 {
        log::error!("keel: every cpu has stopped; powering off");
        psci::system_off();
    }
    cpu::halt()
}
