//! Running user threads on a CPU: decoding traps from EL0, idling while nothing is runnable,
//! and the first entry to user space.
//!
//! Each CPU has one kernel stack. A trap from EL0 saves the thread's registers in a frame at the
//! very top of it; the kernel may replace the frame's contents with another thread's (a switch),
//! and the eret at the end resumes whichever thread the frame holds. While no thread is runnable
//! the CPU waits in `run_user` with interrupts unmasked, below that frame.

use super::cpu;
use crate::arch::esr;
use crate::hal::MutexGuard;
use crate::kernel::{KERNEL, Kernel};
use crate::hal::UserRegs;
use crate::object::vmspace::Access;
use crate::sched::idle::ALL_IDLE;
use crate::trap::UserTrap;
use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable};
use core::sync::atomic::{AtomicU64, Ordering};

const FRAME_SIZE: u64 = core::mem::size_of::<UserRegs>() as u64;

/// Top of each CPU's kernel stack.
static STACK_TOPS: [AtomicU64; crate::percpu::MAX_CPUS] = [const { AtomicU64::new(0) }; crate::percpu::MAX_CPUS];

/// Physical address of the empty user table; nonzero once user space has started.
static EMPTY_TABLE: AtomicU64 = AtomicU64::new(0);

/// The CPUs online when user space started (bit i for CPU i), for the all-idle accounting.
static ONLINE: AtomicU64 = AtomicU64::new(0);

/// Whether user space has started (secondaries join when they see it).
pub fn started() -> bool {
    EMPTY_TABLE.load(Ordering::Acquire) != 0
}

/// Starts user space: installs `kernel` as the global kernel state and wakes every other CPU.
/// IRQs must be masked on this CPU.
pub fn start(kernel: Kernel, empty_table: u64) {
    debug_assert!(aarch64_cpu::registers::DAIF.is_set(aarch64_cpu::registers::DAIF::I));
    super::hal::set_empty_user_table(empty_table);
    *KERNEL.lock() = Some(kernel);
    ONLINE.store(crate::percpu::online().fold(0, |m, (i, _)| m | 1 << i), Ordering::Relaxed);
    EMPTY_TABLE.store(empty_table, Ordering::Release);
    for (i, c) in crate::percpu::online() {
        if i != cpu::cpu_id() {
            super::gic::send_sgi(c.mpidr(), super::gic::SGI_IPI);
        }
    }
}

/// Records `cpu`'s kernel stack top (at bring-up).
pub fn set_stack_top(cpu: usize, top: u64) {
    STACK_TOPS[cpu].store(top, Ordering::Relaxed);
}

/// Decodes the synchronous exception just taken from EL0.
pub fn decode_user_trap(frame: &UserRegs) -> UserTrap {
    let esr_value = ESR_EL1.get();
    let ec = esr::exception_class(esr_value);
    match ec {
        0x15 => UserTrap::Syscall,
        0x20 | 0x24 => {
            let iss = esr::iss(esr_value);
            let access = if ec == 0x20 {
                Access::Exec
            } else if esr::is_write(iss) {
                Access::Write
            } else {
                Access::Read
            };
            let status = iss & 0x3f;
            UserTrap::Abort {
                addr: if ec == 0x20 && status == 0x21 { frame.pc } else { FAR_EL1.get() },
                access,
                translation: (0x04..=0x07).contains(&status),
                class: esr::class_name(ec),
                status: esr::fault_status_name(iss),
            }
        }
        // EC 0 from EL0 is an instruction the CPU does not recognise (or UDF).
        0x00 => UserTrap::Fatal { class: "undefined instruction", esr: esr_value },
        _ => UserTrap::Fatal { class: esr::class_name(ec), esr: esr_value },
    }
}

/// Returns once `frame` holds a runnable thread of `cpu`, idling (lock dropped, IRQs unmasked)
/// while there is none.
pub fn run_user(mut guard: MutexGuard<'static, Option<Kernel>>, cpu: usize, frame: &mut UserRegs) {
    loop {
        let Some(k) = guard.as_mut() else { return };
        if k.current[cpu].is_some() && !k.cpus[cpu].need_resched {
            k.before_resume(cpu, frame);
            return;
        }
        k.schedule(cpu, frame);
        if k.current[cpu].is_some() {
            k.before_resume(cpu, frame);
            return;
        }
        drop(guard);
        idle_wait(cpu);
        guard = KERNEL.lock();
    }
}

/// Waits for an interrupt, then takes it (it is handled on this stack).
///
/// WFI runs with IRQs still masked: a pending interrupt wakes it all the same, so a wake-up IPI
/// that arrived after the lock was dropped is never consumed before the wait (which would leave
/// the CPU asleep until the next tick). Only then are IRQs unmasked to take what is pending.
///
/// Around the wait it tells [`ALL_IDLE`] (the time every CPU waits at once is not work; `make
/// bench` subtracts it).
#[inline(never)]
#[cold]
fn idle_wait(cpu_index: usize) {
    let online = ONLINE.load(Ordering::Relaxed);
    ALL_IDLE.enter(cpu_index, online, cpu::counter);
    cpu::wait_for_interrupt();
    ALL_IDLE.leave(cpu_index, online, cpu::counter);
    cpu::irq_enable();
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    cpu::irq_save();
}

unsafe extern "C" {
    fn ret_to_user(frame: *mut UserRegs) -> !;
    fn call_on_stack(sp: u64, f: extern "C" fn(usize) -> !, arg: usize) -> !;
}

/// Starts running user threads on this CPU; never returns.
pub fn enter_user_space(cpu_index: usize) -> ! {
    let top = STACK_TOPS[cpu_index].load(Ordering::Relaxed);
    assert!(top != 0, "cpu{cpu_index} has no recorded kernel stack (set_stack_top not called at bring-up)");
    // SAFETY: `top` is this CPU's own stack; everything above `top - FRAME_SIZE` becomes the user
    // frame and the Rust frames of the caller are abandoned (this function never returns).
    unsafe { call_on_stack(top - FRAME_SIZE, user_loop, cpu_index) }
}

extern "C" fn user_loop(cpu_index: usize) -> ! {
    let top = STACK_TOPS[cpu_index].load(Ordering::Relaxed);
    let frame_ptr = (top - FRAME_SIZE) as *mut UserRegs;
    // SAFETY: the frame area [top - FRAME_SIZE, top) lies above this function's stack pointer
    // (call_on_stack started it there) and nothing else uses it.
    let frame = unsafe { &mut *frame_ptr };
    *frame = UserRegs::default();
    cpu::irq_save();
    super::kspace::enable_user_space(EMPTY_TABLE.load(Ordering::Acquire));
    run_user(KERNEL.lock(), cpu_index, frame);
    // SAFETY: `frame` holds a user thread chosen by the scheduler and sits at the top of this
    // CPU's stack, as `ret_to_user` requires.
    unsafe { ret_to_user(frame_ptr) }
}
