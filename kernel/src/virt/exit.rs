//! Running guests: entering and leaving guest mode, and everything the kernel finishes itself when
//! a guest exits (PSCI, WFI/WFE, the vGIC's registers and SGIs, the virtual timer, stage-2 demand
//! faults, ID registers, injected aborts and UNDEFINED). What it cannot finish goes back to the
//! monitor thread as the result of its `vcpu_run`.
//!
//! A thread in guest mode (`Thread::guest`) has its own registers saved in `Thread::regs`; the
//! trap frame, while it runs, holds the guest's. `load`/`save_current` in `kernel.rs` call
//! [`Kernel::load_guest`]/[`Kernel::put_guest`] for such threads.
//!
//! Invariant: `cpus[c].vcpu == v` exactly while vCPU `v`'s state is live on CPU `c`.

use super::psci::{self, Call};
use super::syndrome::{GuestExit, MmioAccess, load_value};
use super::vcpu::{Pending, Power};
use super::vgic::{Kicks, VGicError};
use super::vm::{FaultIn, IpaTarget, RegionKind};
use crate::hal::{self, GuestLoad, GuestTimer};
use crate::kernel::Kernel;
use crate::object::thread::{Block, ThreadState, UserRegs, set_return};
use crate::object::{Id, ObjRef};
use keel_abi::vm::{Counter, ExitReason, MmioInfo, smccc};

/// What to put in the guest after an exception is injected.
#[derive(Clone, Copy, Debug)]
enum Inject {
    Undefined,
    DataAbort { far: u64, write: bool },
    InstructionAbort { far: u64 },
}

impl Kernel {
    /// The vCPU loaded on `cpu`, if any.
    pub fn loaded_vcpu(&self, cpu: usize) -> Option<Id> {
        let v = self.cpus[cpu].vcpu;
        (v != 0).then_some(v)
    }

    /// Puts thread `tid` (current on `cpu`, its registers in `frame`) into guest mode on `vcpu`.
    pub fn enter_guest(&mut self, cpu: usize, frame: &mut UserRegs, tid: Id, vcpu: Id) {
        let Some(t) = self.threads.get_mut(&tid) else { return };
        t.save_user(frame);
        t.guest = Some(vcpu);
        // The runner holds a reference (the vCPU outlives a deleted cap while it runs): counted
        // here directly, as `inc_ref` would, without a second lookup.
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            v.runner = Some(tid);
            v.refs += 1;
        }
        self.load_guest(cpu, frame, vcpu);
        if self.vcpus.get(&vcpu).is_some_and(|v| v.power == Power::Off) {
            self.block_current(cpu, frame, Block::GuestOff { vcpu });
        }
    }

    /// Makes `vcpu` live on `cpu`: its registers into `frame`, its EL1 state, timer and vGIC
    /// interface into the CPU. A vCPU with CPU_ON pending starts at its entry point.
    pub fn load_guest(&mut self, cpu: usize, frame: &mut UserRegs, vcpu: Id) {
        let Some(v) = self.vcpus.get_mut(&vcpu) else { return };
        if let Power::OnPending { entry, context } = v.power {
            v.reset_to(entry, context);
            v.power = Power::On;
        }
        let Some(vm) = self.vms.get(&v.vm) else { return };
        hal::copy_regs(frame, &v.regs);
        hal::fp_restore(&v.fp);
        let load = GuestLoad { vttbr: vm.vttbr(), vmpidr: v.vmpidr(), cntvoff: vm.cntvoff, held_ppis: v.held_ppis };
        hal::guest_load(&mut v.ctx, load);
        v.lrs.hardware_cleared();
        self.cpus[cpu].vcpu = vcpu;
        self.cpus[cpu].guest_ioevents = !vm.ioevents.is_empty();
        self.cpus[cpu].guest_status_regs = !vm.status_regs.is_empty();
    }

    /// An interrupt took the guest on `cpu` out of guest mode: bytes in its VM's transmit
    /// buffer go to the monitor now (a guest that polls instead of waiting gets its output out
    /// by the next tick).
    pub fn guest_interrupted(&mut self, cpu: usize, frame: &mut UserRegs) {
        // Only a VM with kernel-kept registers can have a transmit buffer: others pay one load.
        if !self.cpus[cpu].guest_status_regs {
            return;
        }
        let buffered = self.vcpus.get(&self.cpus[cpu].vcpu).and_then(|v| self.vms.get(&v.vm)).map_or(0, |vm| vm.tx_pending());
        if buffered != 0 {
            self.leave_guest(cpu, frame, ExitReason::Transmit, &[buffered]);
        }
    }

    /// Saves the vCPU live on `cpu` out of `frame` and the CPU; the CPU is a host CPU again.
    pub fn put_guest(&mut self, cpu: usize, frame: &UserRegs) {
        let vcpu = core::mem::replace(&mut self.cpus[cpu].vcpu, 0);
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            hal::copy_regs(&mut v.regs, frame);
            hal::fp_save(&mut v.fp);
            hal::guest_put(&mut v.ctx);
        }
    }

    /// Ends guest mode for the current thread of `cpu`: the vCPU is saved and the thread returns
    /// from `vcpu_run` with `reason` and `details` (x1, x2...).
    pub fn leave_guest(&mut self, cpu: usize, frame: &mut UserRegs, reason: ExitReason, details: &[u64]) {
        let Some(tid) = self.current[cpu] else { return };
        self.put_guest(cpu, frame);
        let Some(t) = self.threads.get_mut(&tid) else { return };
        let Some(vcpu) = t.guest.take() else { return };
        t.restore_user(frame);
        let mut results = [0u64; 6];
        results[0] = reason as u64;
        for (r, d) in results[1..].iter_mut().zip(details) {
            *r = *d;
        }
        set_return(frame, 0, &results);
        self.detach_runner(vcpu);
    }

    /// The runner of `vcpu` stopped running it (returned, or died).
    pub fn detach_runner(&mut self, vcpu: Id) {
        let Some(v) = self.vcpus.get_mut(&vcpu) else { return };
        v.runner = None;
        if v.refs > 1 {
            v.refs -= 1;
        } else {
            // The runner's was the last reference.
            self.dec_ref(ObjRef::VCpu(vcpu));
        }
    }

    /// At every exit from a guest on `cpu`, before anything else: reads the list registers back
    /// into the vGIC, and re-samples the guest's timers: a timer line the vGIC holds high drops
    /// as soon as the guest's timer stops asserting (it switched the timer off, masked it or
    /// moved CVAL on), so a stale timer interrupt is never delivered; while it still asserts,
    /// the level-sensitive line stays high and the interrupt pends again after the guest's EOI.
    pub fn guest_exited(&mut self, cpu: usize) {
        let vcpu = self.cpus[cpu].vcpu;
        let Some(v) = self.vcpus.get_mut(&vcpu) else { return };
        let Some(vm) = self.vms.get_mut(&v.vm) else { return };
        // Always: reading also turns the virtual interface off, so a maintenance interrupt that
        // caused this exit stops asserting until the list registers are refilled.
        let live = v.lrs.live();
        hal::guest_lrs_read(v.lrs.values_mut(), live);
        let report = vm.vgic.sync(v.index, &mut v.lrs);
        for intid in hal::PASSED_PPIS {
            if v.held_ppis & (1 << intid) != 0 && !ppi_asserts(intid, &v.ctx) {
                v.held_ppis &= !(1 << intid);
                let _ = vm.vgic.set_ppi_level(v.index, intid, false);
                hal::guest_ppi_hold(intid, false);
            }
        }
        // An SPI this vCPU gave back may now go to another.
        let (vm_id, kicks) = (v.vm, report.kicks());
        if kicks.bits() != 0 {
            self.kick_vcpus(vm_id, kicks);
        }
    }

    /// Just before `frame` is resumed on `cpu`: a guest gets its pending interrupts in the list
    /// registers, or goes back to its monitor when it was kicked.
    pub fn before_resume(&mut self, cpu: usize, frame: &mut UserRegs) {
        let vcpu = self.cpus[cpu].vcpu;
        if vcpu == 0 {
            return;
        }
        let Some(v) = self.vcpus.get_mut(&vcpu) else { return };
        if v.kick {
            v.kick = false;
            self.leave_guest(cpu, frame, ExitReason::Kicked, &[]);
            return;
        }
        let Some(vm) = self.vms.get_mut(&v.vm) else { return };
        vm.vgic.flush(v.index, &mut v.lrs);
        let mask = v.lrs.to_write();
        hal::guest_lrs_write(v.lrs.values(), mask, v.lrs.underflow);
    }

    /// A passed-through PPI of the guest's own CPU (a timer, the PMU) asserted while the guest
    /// ran on `cpu`: raise the guest's line in the vGIC and hold the physical interrupt off while
    /// the line is high.
    pub fn guest_ppi_fired(&mut self, cpu: usize, intid: u32) {
        let vcpu = self.cpus[cpu].vcpu;
        let Some(v) = self.vcpus.get_mut(&vcpu) else {
            // No guest here: the device belongs to a vCPU already saved (its state is disabled
            // on put); nothing to deliver.
            return;
        };
        if !ppi_asserts(intid, &v.ctx) {
            // Asserted, then switched off or masked by the guest before this CPU took it.
            return;
        }
        if intid != hal::PMU_INTID {
            v.count(Counter::Timer);
        }
        v.held_ppis |= 1 << intid;
        hal::guest_ppi_hold(intid, true);
        if let Some(vm) = self.vms.get_mut(&v.vm) {
            let _ = vm.vgic.set_ppi_level(v.index, intid, true);
        }
    }

    /// `vcpu`, not loaded, was woken from WFI at `now` because a timer's deadline came: raise
    /// the line of each timer that asserts now, as [`Kernel::guest_ppi_fired`] does when the
    /// interrupt arrives while the guest runs. The vCPU then enters with the interrupt in a list
    /// register (its physical line held off) instead of taking it as one more exit right after
    /// entry; the line drops at an exit once the guest has moved the timer on.
    pub fn guest_timers_due(&mut self, vcpu: Id, now: u64) {
        let Some(v) = self.vcpus.get_mut(&vcpu) else { return };
        let Some(vm) = self.vms.get_mut(&v.vm) else { return };
        for timer in GuestTimer::ALL {
            let (ctl, cval) = timer.saved(&v.ctx);
            let intid = timer.intid();
            if ctl & (hal::TIMER_ENABLE | hal::TIMER_IMASK) != hal::TIMER_ENABLE || v.held_ppis & (1 << intid) != 0 {
                continue;
            }
            let offset = if timer == GuestTimer::Virtual { vm.cntvoff } else { 0 };
            if cval.checked_add(offset).is_some_and(|d| d <= now) {
                v.count(Counter::Timer);
                v.held_ppis |= 1 << intid;
                let _ = vm.vgic.set_ppi_level(v.index, intid, true);
            }
        }
    }

    /// An interrupt exit (counted; the interrupt itself is handled by the GIC driver).
    pub fn count_guest_irq(&mut self, cpu: usize) {
        let vcpu = self.cpus[cpu].vcpu;
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            v.count(Counter::Irq);
        }
    }

    /// Wakes or interrupts the vCPUs of `vm` that have something new to deliver.
    pub fn kick_vcpus(&mut self, vm: Id, kicks: Kicks) {
        let here = hal::this_cpu();
        for index in kicks.iter() {
            let Some(vcpu) = self.vms.get(&vm).and_then(|m| m.vcpus.get(index).copied().flatten()) else { continue };
            self.nudge_vcpu(vcpu, here);
        }
    }

    /// Makes the runner of `vcpu` look at it again: wakes it from WFI (or from being off, for a
    /// kick), or interrupts the CPU it runs on.
    pub fn nudge_vcpu(&mut self, vcpu: Id, here: usize) {
        let Some(runner) = self.vcpus.get(&vcpu).and_then(|v| v.runner) else { return };
        let kick = self.vcpus.get(&vcpu).is_some_and(|v| v.kick);
        match self.threads.get(&runner).map(|t| t.state) {
            Some(ThreadState::Blocked(Block::GuestWfi { .. })) => self.wake_guest(runner),
            Some(ThreadState::Blocked(Block::GuestOff { .. })) if kick => self.wake_guest(runner),
            Some(ThreadState::Running(c)) if c != here => hal::send_ipi(c),
            _ => {}
        }
    }

    /// Makes a guest-mode thread blocked in WFI or off runnable again.
    pub fn wake_guest(&mut self, tid: Id) {
        let Some(t) = self.threads.get_mut(&tid) else { return };
        if let Some(d) = t.deadline.take() {
            self.sleepers.remove(&(d, tid));
        }
        self.make_ready(tid, hal::this_cpu());
    }

    /// The exits answered without leaving the guest's context, before [`Kernel::guest_exited`]:
    /// an `hvc`/`smc` whose answer is a value (PSCI and SMCCC queries, NOT_SUPPORTED), and a
    /// read of a vGIC register while no list register is live. Neither changes the vGIC, the
    /// vCPU's run state or the scheduler, so the list registers and the timers' lines stay as
    /// they are in the CPU and the guest resumes at once: no list-register read-back and
    /// refill, no reschedule check. Taken only when nothing else waits for this exit: no
    /// reschedule due on `cpu`, no kick, no passed-through PPI held (its line is re-sampled on
    /// the full path). Returns whether it handled the exit; if not, nothing was changed.
    pub fn guest_fast_exit(&mut self, cpu: usize, frame: &mut UserRegs, exit: &GuestExit) -> bool {
        use keel_abi::vm::layout;
        // Only the kinds of exit it may take, and before any lookup, so the exits it does not
        // take (MMIO to the monitor above all) pay a few instructions for it.
        let gic_window = layout::GICD_BASE..layout::GICR_BASE + layout::GICR_STRIDE * u64::from(layout::MAX_VCPUS);
        let candidate = match *exit {
            GuestExit::Hvc | GuestExit::Smc => true,
            GuestExit::DataAbort { ipa, access: Some(_), write: false, s1ptw: false, .. } => gic_window.contains(&ipa) || self.cpus[cpu].guest_status_regs,
            GuestExit::DataAbort { access: Some(_), write: true, s1ptw: false, .. } => self.cpus[cpu].guest_ioevents || self.cpus[cpu].guest_status_regs,
            _ => false,
        };
        if !candidate || self.cpus[cpu].need_resched {
            return false;
        }
        let vcpu = self.cpus[cpu].vcpu;
        let status_regs = self.cpus[cpu].guest_status_regs;
        let Some(v) = self.vcpus.get_mut(&vcpu) else { return false };
        if v.kick || v.held_ppis != 0 {
            return false;
        }
        match *exit {
            GuestExit::Hvc | GuestExit::Smc => {
                let args = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
                let value = match psci::decode(args) {
                    Call::Value(value) => {
                        v.count(Counter::Psci);
                        value
                    }
                    Call::Other if !smccc::is_vendor_hyp(args[0]) => smccc::NOT_SUPPORTED,
                    _ => return false,
                };
                if matches!(exit, GuestExit::Smc) {
                    v.count(Counter::Smc);
                    skip_instruction(frame);
                } else {
                    v.count(Counter::Hvc);
                }
                frame.x[0] = value as u64;
                true
            }
            // A doorbell: the write is finished by the signal. Should the signal wake a thread
            // that ought to run here now, a self-IPI makes the guest exit again at once.
            GuestExit::DataAbort { ipa, access: Some(a), write: true, s1ptw: false, .. } => {
                let value = stored_value(frame, a);
                let Some(vm) = self.vms.get_mut(&v.vm) else { return false };
                // A byte for the transmit buffer, or an InterruptACK the kernel keeps.
                if status_regs && (vm.tx_store(ipa, a.size, value) || vm.status_ack(ipa, a.size, value)) {
                    v.count(Counter::MmioKernel);
                    skip_instruction(frame);
                    return true;
                }
                let Some((notif, bits)) = vm.doorbell(ipa, a.size, value) else {
                    return false;
                };
                v.count(Counter::IoEvent);
                skip_instruction(frame);
                self.signal(notif, bits);
                if self.cpus[cpu].need_resched {
                    hal::send_ipi(cpu);
                }
                true
            }
            // An InterruptStatus the kernel keeps.
            GuestExit::DataAbort { ipa, access: Some(a), write: false, s1ptw: false, .. }
                if status_regs && !gic_window.contains(&ipa) && let Some(status) = self.vms.get(&v.vm).and_then(|vm| vm.status_read(ipa, a.size)) =>
            {
                v.count(Counter::MmioKernel);
                if a.reg != 31 {
                    frame.x[a.reg as usize] = load_value(u64::from(status), a);
                }
                skip_instruction(frame);
                true
            }
            GuestExit::DataAbort { ipa, access: Some(a), write: false, s1ptw: false, .. } if v.lrs.live() == 0 => {
                let (vm_id, index) = (v.vm, v.index);
                let Some(vm) = self.vms.get_mut(&vm_id) else { return false };
                let Some(target) = vm.gic_target(ipa) else { return false };
                v.count(Counter::MmioKernel);
                match vgic_mmio(vm, index, frame, target, a) {
                    // A read: nothing to kick.
                    Some(Ok(None)) => skip_instruction(frame),
                    outcome => self.vgic_finish(frame, vcpu, vm_id, a, outcome),
                }
                true
            }
            _ => false,
        }
    }

    /// Handles a synchronous exit of the guest on `cpu`.
    pub fn guest_trap(&mut self, cpu: usize, frame: &mut UserRegs, exit: GuestExit) {
        let vcpu = self.cpus[cpu].vcpu;
        if !self.vcpus.contains_key(&vcpu) {
            return;
        }
        match exit {
            GuestExit::Hvc => {
                self.count(vcpu, Counter::Hvc);
                self.hypercall(cpu, frame, vcpu, ExitReason::Hypercall);
            }
            GuestExit::Smc => {
                self.count(vcpu, Counter::Smc);
                skip_instruction(frame);
                self.hypercall(cpu, frame, vcpu, ExitReason::Smc);
            }
            GuestExit::Wfi => {
                self.count(vcpu, Counter::Wfi);
                skip_instruction(frame);
                self.guest_wait(cpu, frame, vcpu);
            }
            GuestExit::Wfe => {
                // A spin-wait: let others run, never block (an SEV from another vCPU is not
                // tracked, so blocking could wait forever).
                self.count(vcpu, Counter::Wfe);
                skip_instruction(frame);
                self.yield_current(cpu, frame);
            }
            GuestExit::Sysreg { op0, op1, crn, crm, op2, reg, read } => {
                self.count(vcpu, Counter::Sysreg);
                self.sysreg(frame, vcpu, (op0, op1, crn, crm, op2), reg, read);
            }
            GuestExit::DataAbort { ipa, access, write, s1ptw, fsc } => self.data_abort(cpu, frame, vcpu, ipa, access, write, s1ptw, fsc),
            GuestExit::InstructionAbort { ipa, s1ptw: _, fsc } => {
                match self.stage2_fault(vcpu, ipa, false, true, fsc) {
                    Ok(()) => {}
                    Err(FaultIn::NoMemory) => self.out_of_guest_memory(cpu, frame, vcpu, ipa),
                    Err(FaultIn::Forbidden) => self.inject(frame, vcpu, Inject::InstructionAbort { far: frame.pc }),
                }
            }
            // The first SVE use makes SVE live for the vCPU; the instruction runs again.
            GuestExit::Sve => {
                let ok = self.vcpus.get_mut(&vcpu).is_some_and(|v| hal::guest_sve_first_use(&mut v.ctx, &mut v.fp));
                if !ok {
                    self.inject(frame, vcpu, Inject::Undefined);
                }
            }
            GuestExit::Other { .. } => self.inject(frame, vcpu, Inject::Undefined),
        }
    }

    fn count(&mut self, vcpu: Id, c: Counter) {
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            v.count(c);
        }
    }

    fn vm_of(&self, vcpu: Id) -> Option<Id> {
        self.vcpus.get(&vcpu).map(|v| v.vm)
    }

    /// HVC or SMC: PSCI and SMCCC in the kernel, vendor hypervisor calls to the monitor,
    /// everything else NOT_SUPPORTED.
    fn hypercall(&mut self, cpu: usize, frame: &mut UserRegs, vcpu: Id, reason: ExitReason) {
        let args = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
        let call = psci::decode(args);
        if !matches!(call, Call::Other | Call::Yield) {
            self.count(vcpu, Counter::Psci);
        }
        match call {
            Call::Value(v) => frame.x[0] = v as u64,
            Call::CpuOn { target, entry, context } => frame.x[0] = self.psci_cpu_on(vcpu, target, entry, context) as u64,
            Call::AffinityInfo { target } => frame.x[0] = self.psci_affinity_info(vcpu, target) as u64,
            Call::CpuOff => {
                if let Some(v) = self.vcpus.get_mut(&vcpu) {
                    v.power = Power::Off;
                }
                self.block_current(cpu, frame, Block::GuestOff { vcpu });
            }
            Call::CpuSuspend => {
                frame.x[0] = psci::SUCCESS as u64;
                self.guest_wait(cpu, frame, vcpu);
            }
            Call::Yield => {
                frame.x[0] = psci::SUCCESS as u64;
                self.yield_current(cpu, frame);
            }
            Call::SystemOff => self.leave_guest(cpu, frame, ExitReason::SystemOff, &[]),
            Call::SystemReset => self.leave_guest(cpu, frame, ExitReason::SystemReset, &[]),
            Call::Other if smccc::is_vendor_hyp(args[0]) => {
                if let Some(v) = self.vcpus.get_mut(&vcpu) {
                    v.pending = Pending::Hypercall;
                }
                self.leave_guest(cpu, frame, reason, &args);
            }
            Call::Other => frame.x[0] = smccc::NOT_SUPPORTED as u64,
        }
    }

    fn psci_cpu_on(&mut self, vcpu: Id, target: u64, entry: u64, context: u64) -> i64 {
        let Some(vm_id) = self.vm_of(vcpu) else { return psci::DENIED };
        let Some(vm) = self.vms.get(&vm_id) else { return psci::DENIED };
        let Some(index) = psci::target_index(target, vm.vcpus.len()) else { return psci::INVALID_PARAMETERS };
        if !matches!(vm.target(entry), IpaTarget::Ram { .. }) {
            return psci::INVALID_ADDRESS;
        }
        let Some(target_id) = vm.vcpus[index] else { return psci::INVALID_PARAMETERS };
        let Some(t) = self.vcpus.get_mut(&target_id) else { return psci::INVALID_PARAMETERS };
        match t.power {
            Power::On => psci::ALREADY_ON,
            Power::OnPending { .. } => psci::ON_PENDING,
            Power::Off => {
                t.power = Power::OnPending { entry, context };
                if let Some(runner) = t.runner {
                    if matches!(self.threads.get(&runner).map(|r| r.state), Some(ThreadState::Blocked(Block::GuestOff { .. }))) {
                        self.wake_guest(runner);
                    }
                }
                psci::SUCCESS
            }
        }
    }

    fn psci_affinity_info(&self, vcpu: Id, target: u64) -> i64 {
        let Some(vm) = self.vm_of(vcpu).and_then(|m| self.vms.get(&m)) else { return psci::DENIED };
        let Some(index) = psci::target_index(target, vm.vcpus.len()) else { return psci::INVALID_PARAMETERS };
        match vm.vcpus[index].and_then(|t| self.vcpus.get(&t)).map(|t| t.power) {
            Some(Power::On) => psci::AFFINITY_ON,
            Some(Power::OnPending { .. }) => psci::AFFINITY_ON_PENDING,
            Some(Power::Off) | None => psci::AFFINITY_OFF,
        }
    }

    /// WFI (or CPU_SUSPEND): return at once when an interrupt is deliverable or the virtual timer
    /// has fired; otherwise block until one is, or until the timer's deadline.
    /// Bytes in the transmit buffer first go to the monitor (the wait ends early, as a WFI may).
    fn guest_wait(&mut self, cpu: usize, frame: &mut UserRegs, vcpu: Id) {
        let Some(v) = self.vcpus.get(&vcpu) else { return };
        let Some(vm) = self.vms.get(&v.vm) else { return };
        if v.kick || vm.vgic.has_deliverable(v.index) {
            return;
        }
        let buffered = vm.tx_pending();
        if buffered != 0 {
            self.leave_guest(cpu, frame, ExitReason::Transmit, &[buffered]);
            return;
        }
        // The earliest deadline of the timers that are armed (enabled, unmasked) and not already
        // asserting in the vGIC, on the physical counter.
        let mut deadline: Option<u64> = None;
        for timer in GuestTimer::ALL {
            let (ctl, cval) = hal::guest_timer(timer);
            if ctl & (hal::TIMER_ENABLE | hal::TIMER_IMASK) != hal::TIMER_ENABLE || v.held_ppis & (1 << timer.intid()) != 0 {
                continue;
            }
            if ctl & hal::TIMER_ISTATUS != 0 {
                return; // it fires as soon as the guest resumes
            }
            // The virtual timer fires when CNTPCT - CNTVOFF >= CVAL; past the end of the
            // physical count it never fires.
            let offset = if timer == GuestTimer::Virtual { vm.cntvoff } else { 0 };
            let Some(d) = cval.checked_add(offset) else { continue };
            if d <= hal::now_ticks() {
                return;
            }
            deadline = Some(deadline.map_or(d, |e: u64| e.min(d)));
        }
        if let (Some(tid), Some(d)) = (self.current[cpu], deadline) {
            self.add_sleeper(tid, d);
        }
        self.block_current(cpu, frame, Block::GuestWfi { vcpu });
    }

    fn sysreg(&mut self, frame: &mut UserRegs, vcpu: Id, enc: (u8, u8, u8, u8, u8), reg: u8, read: bool) {
        // Debug registers (op0 = 2, trapped by MDCR_EL2.TDA/TDOSA/TDRA until first use): the
        // first access loads the guest's own into the CPU and runs the instruction again,
        // untrapped. A trap with them loaded is one the CPU itself refuses: UNDEFINED.
        if enc.0 == 2 {
            if !self.vcpus.get_mut(&vcpu).is_some_and(|v| hal::guest_debug_load(&mut v.ctx)) {
                self.inject(frame, vcpu, Inject::Undefined);
            }
            return;
        }
        // PMU registers (trapped by MDCR_EL2.TPM/TPMCR until first use): the same, for the
        // guest's own PMU.
        if is_pmu_register(enc) {
            if !self.vcpus.get_mut(&vcpu).is_some_and(|v| hal::guest_pmu_load(&mut v.ctx)) {
                self.inject(frame, vcpu, Inject::Undefined);
            }
            return;
        }
        let value = if reg == 31 { 0 } else { frame.x[reg as usize] };
        let result: Option<u64> = match (enc, read) {
            // ICC_SGI1R_EL1 and ICC_ASGI1R_EL1: virtual SGIs to other vCPUs.
            ((3, 0, 12, 11, 5), false) | ((3, 0, 12, 11, 6), false) => {
                self.count(vcpu, Counter::Sgi);
                if let Some(vm_id) = self.vm_of(vcpu) {
                    let index = self.vcpus.get(&vcpu).map_or(0, |v| v.index);
                    if let Some(vm) = self.vms.get_mut(&vm_id) {
                        let kicks = vm.vgic.send_sgi(index, value);
                        self.kick_vcpus(vm_id, kicks);
                    }
                }
                Some(0)
            }
            // ICC_SGI0R_EL1: Group 0 SGIs do not exist for a guest of Keel; ignored.
            ((3, 0, 12, 11, 7), false) => Some(0),
            // ID registers (TID3).
            ((3, 0, 0, crm, op2), true) if (1..=7).contains(&crm) => Some(super::idregs::sanitize(0, crm, op2, hal::guest_id_reg(0, 0, crm, op2))),
            // ACTLR_EL1 (TACR): reads as zero, writes ignored.
            ((3, 0, 1, 0, 1), _) => Some(0),
            _ => None,
        };
        match result {
            Some(v) => {
                if read && reg != 31 {
                    frame.x[reg as usize] = v;
                }
                skip_instruction(frame);
            }
            None => self.inject(frame, vcpu, Inject::Undefined),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn data_abort(&mut self, cpu: usize, frame: &mut UserRegs, vcpu: Id, ipa: u64, access: Option<MmioAccess>, write: bool, s1ptw: bool, fsc: u8) {
        let Some(vm_id) = self.vm_of(vcpu) else { return };
        let Some(vm) = self.vms.get(&vm_id) else { return };
        let target = vm.target(ipa);
        let far = frame_far();
        match (target, access) {
            (IpaTarget::Ram { .. }, _) => match self.stage2_fault(vcpu, ipa, write && !s1ptw, false, fsc) {
                Ok(()) => {}
                Err(FaultIn::NoMemory) => self.out_of_guest_memory(cpu, frame, vcpu, ipa),
                Err(FaultIn::Forbidden) => self.inject(frame, vcpu, Inject::DataAbort { far, write }),
            },
            (IpaTarget::Gicd(_) | IpaTarget::Gicr(..), Some(a)) if !s1ptw => {
                self.count(vcpu, Counter::MmioKernel);
                self.vgic_access(frame, vcpu, vm_id, target, a);
            }
            (IpaTarget::Mmio, Some(a)) if !s1ptw => {
                skip_instruction(frame);
                let info = MmioInfo { size: a.size, write: a.write, reg: a.reg, sign_extend: a.sign_extend }.encode();
                let mut vm = vm;
                // The interrupt status registers the kernel keeps (a fast exit missed them).
                if self.cpus[cpu].guest_status_regs {
                    if let Some(status) = (!a.write).then(|| vm.status_read(ipa, a.size)).flatten() {
                        self.count(vcpu, Counter::MmioKernel);
                        if a.reg != 31 {
                            frame.x[a.reg as usize] = load_value(u64::from(status), a);
                        }
                        return;
                    }
                    if a.write {
                        let value = stored_value(frame, a);
                        if self.vms.get_mut(&vm_id).is_some_and(|vm| vm.tx_store(ipa, a.size, value) || vm.status_ack(ipa, a.size, value)) {
                            self.count(vcpu, Counter::MmioKernel);
                            return;
                        }
                        let Some(again) = self.vms.get(&vm_id) else { return };
                        vm = again;
                    }
                }
                let buffered = vm.tx_pending();
                if a.write {
                    let value = stored_value(frame, a);
                    // A registered doorbell: signalled here, and the guest goes on.
                    if let Some((notif, bits)) = vm.doorbell(ipa, a.size, value) {
                        self.count(vcpu, Counter::IoEvent);
                        self.signal(notif, bits);
                        return;
                    }
                    self.count(vcpu, Counter::MmioUser);
                    self.leave_guest(cpu, frame, ExitReason::Mmio, &[ipa, info, value, buffered]);
                } else {
                    self.count(vcpu, Counter::MmioUser);
                    if let Some(v) = self.vcpus.get_mut(&vcpu) {
                        v.pending = Pending::MmioRead(a);
                    }
                    self.leave_guest(cpu, frame, ExitReason::Mmio, &[ipa, info, 0, buffered]);
                }
            }
            // No syndrome for a device access, a table walk outside RAM, or nothing there.
            _ => {
                log::debug!("vm {vm_id} vcpu {vcpu}: {} at IPA {ipa:#x} outside RAM or undecodable; injecting abort", if write { "write" } else { "read" });
                self.inject(frame, vcpu, Inject::DataAbort { far, write });
            }
        }
    }

    fn vgic_access(&mut self, frame: &mut UserRegs, vcpu: Id, vm_id: Id, target: IpaTarget, a: MmioAccess) {
        let Some(index) = self.vcpus.get(&vcpu).map(|v| v.index) else { return };
        let Some(vm) = self.vms.get_mut(&vm_id) else { return };
        let outcome = vgic_mmio(vm, index, frame, target, a);
        self.vgic_finish(frame, vcpu, vm_id, a, outcome);
    }

    /// After a vGIC register access: the instruction is skipped and the vCPUs the access
    /// concerns are kicked, or the guest gets a data abort (`outcome` `None`: not a vGIC frame).
    fn vgic_finish(&mut self, frame: &mut UserRegs, vcpu: Id, vm_id: Id, a: MmioAccess, outcome: Option<Result<Option<Kicks>, VGicError>>) {
        let Some(outcome) = outcome else { return };
        match outcome {
            Ok(kicks) => {
                skip_instruction(frame);
                if let Some(k) = kicks {
                    self.kick_vcpus(vm_id, k);
                }
            }
            Err(_) => self.inject(frame, vcpu, Inject::DataAbort { far: frame_far(), write: a.write }),
        }
    }

    /// A stage-2 fault on guest RAM: enter the page.
    fn stage2_fault(&mut self, vcpu: Id, ipa: u64, write: bool, exec: bool, fsc: u8) -> Result<(), FaultIn> {
        self.count(vcpu, Counter::Stage2Fault);
        if !GuestExit::is_translation(fsc) && !(0x08..=0x0b).contains(&fsc) {
            return Err(FaultIn::Forbidden);
        }
        let vm_id = self.vm_of(vcpu).ok_or(FaultIn::Forbidden)?;
        let vm = self.vms.get_mut(&vm_id).ok_or(FaultIn::Forbidden)?;
        let IpaTarget::Ram { start, region } = vm.target(ipa) else { return Err(FaultIn::Forbidden) };
        let RegionKind::Ram { pmo, .. } = region.kind else { return Err(FaultIn::Forbidden) };
        let p = self.pmos.get_mut(&pmo).ok_or(FaultIn::Forbidden)?;
        vm.fault_in(start, region, ipa, write, exec, p)
    }

    fn out_of_guest_memory(&mut self, cpu: usize, frame: &mut UserRegs, vcpu: Id, ipa: u64) {
        log::warn!("vcpu {vcpu}: no memory for guest RAM at IPA {ipa:#x}; returning to the monitor");
        self.leave_guest(cpu, frame, ExitReason::Abort, &[ipa, 0]);
    }

    /// Injects a synchronous exception into the loaded guest, as the CPU would take it at EL1.
    fn inject(&mut self, frame: &mut UserRegs, vcpu: Id, what: Inject) {
        let mode = frame.pstate & 0xf;
        let from_el0 = mode == 0;
        let offset = match mode {
            0b0100 => 0x000, // EL1t
            0b0101 => 0x200, // EL1h
            _ => 0x400,      // EL0 (AArch64)
        };
        const IL: u64 = 1 << 25;
        const SEA: u64 = 0x10;
        let (esr, far, counter) = match what {
            Inject::Undefined => (IL, 0, Counter::UndefInjected),
            Inject::DataAbort { far, write } => {
                let ec: u64 = if from_el0 { 0x24 } else { 0x25 };
                ((ec << 26) | IL | (u64::from(write) << 6) | SEA, far, Counter::AbortInjected)
            }
            Inject::InstructionAbort { far } => {
                let ec: u64 = if from_el0 { 0x20 } else { 0x21 };
                ((ec << 26) | IL | SEA, far, Counter::AbortInjected)
            }
        };
        self.count(vcpu, counter);
        let vbar = hal::guest_exception(frame.pc, frame.pstate, esr, far);
        frame.pc = vbar + offset;
        frame.pstate = super::vcpu::PSTATE_EL1H_MASKED;
    }
}

/// PSTATE.SS, the software-step state bit.
const PSTATE_SS: u64 = 1 << 21;

/// Moves the guest past the instruction Keel emulated. A guest that single-steps itself then
/// takes its step exception as soon as it resumes, as if the instruction had run on the CPU:
/// PSTATE.SS cleared is the "active-pending" state (Arm ARM D2.12, Software Step exceptions).
fn skip_instruction(frame: &mut UserRegs) {
    frame.pc += 4;
    frame.pstate &= !PSTATE_SS;
}

/// The guest virtual address of the current data abort (FAR_EL2), for the injected FAR_EL1.
fn frame_far() -> u64 {
    hal::guest_fault_address()
}

fn size_mask(size: u8) -> u64 {
    if size >= 8 { u64::MAX } else { (1u64 << (u32::from(size) * 8)) - 1 }
}

/// The value a guest store `a` writes (XZR for register 31), cut to its size.
fn stored_value(frame: &UserRegs, a: MmioAccess) -> u64 {
    if a.reg == 31 { 0 } else { frame.x[a.reg as usize] & size_mask(a.size) }
}

/// Whether the loaded guest's device behind passed-through PPI `intid` asserts its interrupt
/// now (a timer: enabled, unmasked and met; the PMU: an overflow with its interrupt enabled).
fn ppi_asserts(intid: u32, ctx: &crate::hal::GuestContext) -> bool {
    match GuestTimer::from_intid(intid) {
        Some(timer) => hal::timer_asserts(hal::guest_timer(timer).0),
        None => intid == hal::PMU_INTID && hal::guest_pmu_asserts(ctx),
    }
}

/// Whether system register (op0, op1, CRn, CRm, op2) is a PMUv3 register (Arm ARM D13: PMCR,
/// PMCNTEN*, PMOVS*, PMSWINC, PMSELR, PMCEID*, PMCCNTR, PMXEV*, PMUSERENR, PMINTEN*, PMMIR at
/// CRn 9; PMEVCNTR<n>, PMEVTYPER<n>, PMCCFILTR at CRn 14, CRm 8..15).
fn is_pmu_register((op0, op1, crn, crm, _op2): (u8, u8, u8, u8, u8)) -> bool {
    op0 == 3 && ((crn == 9 && (12..=14).contains(&crm) && (op1 == 3 || op1 == 0)) || (crn == 14 && op1 == 3 && (8..=15).contains(&crm)))
}

#[cfg(test)]
mod tests {
    use super::is_pmu_register;

    #[test]
    fn pmu_registers_are_recognised_and_nothing_else() {
        // PMCR_EL0, PMCCNTR_EL0, PMUSERENR_EL0, PMINTENSET_EL1, PMEVCNTR0_EL0, PMEVTYPER30_EL0,
        // PMCCFILTR_EL0.
        for enc in [(3, 3, 9, 12, 0), (3, 3, 9, 13, 0), (3, 3, 9, 14, 0), (3, 0, 9, 14, 1), (3, 3, 14, 8, 0), (3, 3, 14, 15, 6), (3, 3, 14, 15, 7)] {
            assert!(is_pmu_register(enc), "{enc:?}");
        }
        // CNTV_CTL_EL0 (CRn 14, CRm 3), ICC_SGI1R_EL1, an ID register, a debug register.
        for enc in [(3, 3, 14, 3, 1), (3, 0, 12, 11, 5), (3, 0, 0, 5, 0), (2, 0, 0, 0, 4)] {
            assert!(!is_pmu_register(enc), "{enc:?}");
        }
    }
}

/// Performs a guest's access `a` to the vGIC register at `target` of `vm` for its vCPU `index`:
/// a read's value goes into the guest's register. `None` when `target` is not a vGIC frame.
fn vgic_mmio(vm: &mut super::vm::Vm, index: usize, frame: &mut UserRegs, target: IpaTarget, a: MmioAccess) -> Option<Result<Option<Kicks>, VGicError>> {
    let outcome = match (target, a.write) {
        (IpaTarget::Gicd(off), true) => vm.vgic.dist_write(index, off, a.size, stored_value(frame, a)).map(Some),
        (IpaTarget::Gicd(off), false) => vm.vgic.dist_read(index, off, a.size).map(|v| {
            if a.reg != 31 {
                frame.x[a.reg as usize] = load_value(v, a);
            }
            None
        }),
        (IpaTarget::Gicr(t, off), true) => vm.vgic.redist_write(index, t, off, a.size, stored_value(frame, a)).map(Some),
        (IpaTarget::Gicr(t, off), false) => vm.vgic.redist_read(index, t, off, a.size).map(|v| {
            if a.reg != 31 {
                frame.x[a.reg as usize] = load_value(v, a);
            }
            None
        }),
        _ => return None,
    };
    Some(outcome)
}
