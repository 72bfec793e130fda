//! Boot scenarios, chosen with `scenario=<name>` on the kernel command line, that exercise the
//! machine after boot and report on the console for the QEMU tests in `tests/`.
//!
//! - (none): the boot report, then power off (until the user-space shell exists).
//! - `smp`: every CPU takes timer ticks; the boot CPU IPIs every CPU (itself included) and every
//!   secondary IPIs the boot CPU back; each CPU's counts are printed.
//! - `exception`: a secondary CPU (or the only CPU) reads an unmapped kernel address; the decoded
//!   report must appear and the rest of the machine must carry on.
//! - `panic`: the kernel panics on purpose; the panic report must appear and the machine power off.

use crate::arch::aarch64::{console, cpu, gic, psci};
use crate::cmdline::CommandLine;
use crate::percpu::{self, MAX_CPUS};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use keel_platform::bounded::BoundedVec;
use keel_platform::dtb::Machine;

/// Set while the `smp` scenario wants secondaries to answer each IPI with one to the boot CPU.
static ECHO: AtomicBool = AtomicBool::new(false);
/// IPIs each secondary has answered so far.
static ECHOED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Set by the boot CPU to make a secondary fault in the `exception` scenario.
static FAULT_REQUEST: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// How long a scenario waits for an event before calling it failed, in counter seconds.
const WAIT_SECS: u64 = 10;
/// Ticks every CPU must have taken in the `smp` scenario.
const MIN_TICKS: u64 = 3;
/// A kernel address nothing maps (in the hole between the direct map and the MMIO window).
const UNMAPPED_KERNEL_VA: u64 = 0xFFFF_FD00_0000_0000;

macro_rules! say {
    ($($arg:tt)*) => { console::print(format_args!($($arg)*)) };
}

/// Scenarios the kernel runs itself, before and instead of user space.
const KERNEL_SCENARIOS: [&str; 3] = ["smp", "exception", "panic"];

/// Whether the command line names a kernel scenario (others are for user space's test program).
pub fn is_kernel_scenario(cmdline: &CommandLine) -> bool {
    cmdline.value("scenario").is_some_and(|s| KERNEL_SCENARIOS.contains(&s))
}

/// Runs the kernel scenario the command line names, then powers off.
pub fn run(cmdline: &CommandLine, _machine: &Machine) -> ! {
    let ok = match cmdline.value("scenario") {
        Some("smp") => smp(),
        Some("exception") => exception(),
        Some("panic") => panic!("scenario panic: this panic was requested on the kernel command line"),
        other => {
            say!("keel: {other:?} is not a kernel scenario (those are: smp, exception, panic)\n");
            false
        }
    };
    power_off(ok)
}

fn power_off(ok: bool) -> ! {
    if ok {
        say!("keel: powering off\n");
    } else {
        say!("keel: scenario FAILED; powering off\n");
    }
    psci::system_off()
}

/// Waits until `done` holds or the deadline passes; returns whether it held.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = cpu::counter() + WAIT_SECS * cpu::counter_freq();
    while !done() {
        if cpu::counter() > deadline {
            return false;
        }
        cpu::wait_for_interrupt();
    }
    true
}

fn smp() -> bool {
    let mut online = BoundedVec::<usize, MAX_CPUS>::new();
    for (i, _) in percpu::online() {
        let _ = online.push(i);
    }
    let ticked = wait_until(|| online.iter().all(|&i| percpu::get(i).ticks() >= MIN_TICKS));
    // Ping each CPU in turn and wait for its answer: SGIs from several sources to one target can
    // merge into one (GICv3 keeps one pending bit per SGI with affinity routing), so one at a time.
    ECHO.store(true, Ordering::Release);
    let boot = percpu::get(0);
    let mut ipis_ok = true;
    for &i in online.iter() {
        let before = boot.ipis();
        gic::send_sgi(percpu::get(i).mpidr(), gic::SGI_IPI);
        let answered = wait_until(|| percpu::get(i).ipis() >= 1 && boot.ipis() > before);
        if !answered {
            say!("smp: cpu{i} did not receive or answer its IPI\n");
        }
        ipis_ok &= answered;
    }
    for &i in online.iter() {
        let c = percpu::get(i);
        say!("smp: cpu{i} mpidr {:#x}: online, {} ticks, {} ipis received\n", c.mpidr(), c.ticks(), c.ipis());
    }
    if ticked && ipis_ok {
        say!("smp: ok: {} cpus online, every cpu ticked and received IPIs\n", online.len());
        true
    } else {
        say!("smp: not every cpu ticked ({ticked}) or exchanged IPIs with cpu0 ({ipis_ok})\n");
        false
    }
}

fn exception() -> bool {
    let victim = if percpu::online_count() > 1 { 1 } else { 0 };
    say!("exception: cpu{victim} will read unmapped kernel address {UNMAPPED_KERNEL_VA:#x}\n");
    if victim == 0 {
        fault_now();
    }
    FAULT_REQUEST[victim].store(true, Ordering::Release);
    gic::send_sgi(percpu::get(victim).mpidr(), gic::SGI_IPI);
    let stopped = wait_until(|| percpu::get(victim).is_stopped());
    if stopped {
        say!("exception: cpu{victim} stopped after its report; cpu0 still running\n");
    } else {
        say!("exception: cpu{victim} did not stop\n");
    }
    stopped
}

fn fault_now() -> ! {
    let value = cpu::read_kernel_address(UNMAPPED_KERNEL_VA);
    panic!("read of unmapped address {UNMAPPED_KERNEL_VA:#x} returned {value:#x} instead of faulting");
}

/// Called by a secondary CPU each time it wakes from its idle WFI.
pub fn secondary_woke(index: usize) {
    if ECHO.load(Ordering::Acquire) {
        let received = percpu::get(index).ipis();
        if ECHOED[index].swap(received, Ordering::AcqRel) < received {
            gic::send_sgi(percpu::get(0).mpidr(), gic::SGI_IPI);
        }
    }
    if FAULT_REQUEST[index].load(Ordering::Acquire) {
        fault_now();
    }
}
