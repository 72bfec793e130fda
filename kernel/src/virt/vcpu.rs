//! Virtual CPUs: a guest's registers and EL1 state while it is not on a CPU, its PSCI power
//! state, the exit it owes its monitor an answer for, and its exit counters.
//!
//! A VCpu runs on the monitor thread that called `vcpu_run` (its `runner`); while it does, that
//! thread is in guest mode and the scheduler loads and saves the vCPU instead of the thread's own
//! registers. Invariant: `runner` is set exactly while a thread is in guest mode for this vCPU.

use super::vgic::LrFile;
use crate::hal::{FpState, GuestContext};
use crate::object::Id;
use crate::object::thread::UserRegs;
use alloc::boxed::Box;
use keel_abi::vm::{COUNTERS, Counter};

/// PSTATE a vCPU enters with: EL1h, D, A, I and F masked.
pub const PSTATE_EL1H_MASKED: u64 = 0x3c5;

/// PSCI power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Off,
    /// CPU_ON accepted; the vCPU starts at `entry` with x0 = `context` when its thread next runs.
    OnPending { entry: u64, context: u64 },
    On,
}

/// An exit the monitor must complete at its next `vcpu_run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    None,
    /// A load from a monitor MMIO region: the value goes into this register.
    MmioRead(super::syndrome::MmioAccess),
    /// A forwarded hypercall: the results go into x0..x3.
    Hypercall,
}

pub struct VCpu {
    pub vm: Id,
    pub index: usize,
    /// x0-x30, SP_EL0, PC (ELR_EL2) and PSTATE (SPSR_EL2), in the trap-frame layout.
    pub regs: UserRegs,
    pub fp: Box<FpState>,
    pub ctx: Box<GuestContext>,
    pub lrs: LrFile,
    pub power: Power,
    pub pending: Pending,
    /// The thread running this vCPU (in `vcpu_run`), if any.
    pub runner: Option<Id>,
    /// The monitor asked (`vcpu_kick`) for the vCPU to return to it.
    pub kick: bool,
    /// The passed-through PPIs (bit per INTID: the EL1 timers, the PMU) that assert their
    /// interrupt with the vGIC's line high; the host holds the physical interrupt off meanwhile
    /// (it would only fire again). Dropped when the device stops asserting (re-sampled at every
    /// exit).
    pub held_ppis: u32,
    pub counters: [u64; COUNTERS],
    /// References: caps.
    pub refs: u32,
}

impl VCpu {
    pub fn new(vm: Id, index: usize, lr_count: usize) -> Self {
        Self {
            vm,
            index,
            regs: UserRegs { pstate: PSTATE_EL1H_MASKED, ..UserRegs::default() },
            fp: Box::new(FpState::new()),
            ctx: Box::new(GuestContext::reset()),
            lrs: LrFile::new(lr_count),
            power: Power::Off,
            pending: Pending::None,
            runner: None,
            kick: false,
            held_ppis: 0,
            counters: [0; COUNTERS],
            refs: 0,
        }
    }

    pub fn count(&mut self, c: Counter) {
        self.counters[c as usize] += 1;
    }

    /// Resets the vCPU to enter at `entry` with x0 = `x0` (boot or PSCI CPU_ON): MMU off, EL1h,
    /// interrupts masked, all other registers zero.
    pub fn reset_to(&mut self, entry: u64, x0: u64) {
        self.regs = UserRegs { pstate: PSTATE_EL1H_MASKED, pc: entry, ..UserRegs::default() };
        self.regs.x[0] = x0;
        *self.fp = FpState::new();
        let vmcr = self.ctx.vmcr;
        *self.ctx = GuestContext::reset();
        self.ctx.vmcr = vmcr;
    }

    /// The MPIDR the guest reads: Aff0 = index, bit 31 RES1.
    pub fn vmpidr(&self) -> u64 {
        (1 << 31) | self.index as u64
    }
}
