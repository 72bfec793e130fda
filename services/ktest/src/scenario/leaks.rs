//! `leaks[:<vms>]`: `vms` VM create/run/destroy cycles (default 100) and ten times as many
//! process spawn/exit cycles leave the kernel where it started: every count of live objects in
//! the census equal, the frames the kernel holds itself (neither free nor in a PMO or a page
//! table) equal, free kernel heap pages within one page (`make fuzz` runs `leaks:1000`: 1,000
//! VMs and 10,000 processes). See `sysfuzz::compare`.
//!
//! A VM cycle makes a one-vCPU VM with a page of guest RAM, an MMIO region and an ioevent in it,
//! runs the guest of the `syscalls` scenario through its hypercall, MMIO and SYSTEM_OFF exits,
//! adds an irq line, and deletes every capability. A process cycle spawns `ktest exit` through
//! procmgr and waits for its exit code. A warm-up of each first lets every heap involved reach
//! its steady size.

use super::syscalls::{GUEST_CODE, GUEST_HVC, GUEST_MMIO, GUEST_RAM, HVC_RESULT};
use super::sysfuzz::{compare, describe, settled_census, wait_for_system};
use super::{MS, SEC, procmgr, wait_exit};
use crate::check::Checks;
use crate::services::Procmgr;
use alloc::format;
use alloc::vec::Vec;
use keel_rt::abi::vm::{ExitReason, VCPU_POWER_ON, map};
use keel_rt::abi::{PAGE_SIZE, PmoKind};
use keel_rt::startup::Startup;
use keel_rt::sys::{self, Census};
use keel_rt::{Error, Slot, println};

const DEFAULT_VMS: u64 = 100;
const PROCESSES_PER_VM: u64 = 10;
const WARMUP: u64 = 40;
/// init keeps a record of each exited child until a PS request prunes it.
const PRUNE_EVERY: u64 = 20;

/// One VM made, run to SYSTEM_OFF and destroyed; what failed, if anything.
fn vm_cycle(control: Slot) -> Result<(), (&'static str, Error)> {
    let mut made: Vec<Slot> = Vec::new();
    let r = vm_cycle_in(control, &mut made);
    for s in made.into_iter().rev() {
        let _ = sys::cap_delete(s);
    }
    r
}

fn vm_cycle_in(control: Slot, made: &mut Vec<Slot>) -> Result<(), (&'static str, Error)> {
    let vm = sys::vm_create(control, 1).map_err(|e| ("vm_create", e))?;
    made.push(vm);
    let ram = sys::pmo_create(PmoKind::Anonymous, PAGE_SIZE).map_err(|e| ("pmo_create(guest RAM)", e))?;
    made.push(ram);
    let code: Vec<u8> = GUEST_CODE.iter().flat_map(|w| w.to_le_bytes()).collect();
    sys::pmo_write(ram, 0, &code).map_err(|e| ("pmo_write(guest code)", e))?;
    let rwx = map::READ | map::WRITE | map::EXEC;
    sys::vm_map(vm, ram, GUEST_RAM, PAGE_SIZE, 0, rwx).map_err(|e| ("vm_map(RAM)", e))?;
    sys::vm_map(vm, 0, GUEST_MMIO, PAGE_SIZE, 0, map::MMIO).map_err(|e| ("vm_map(MMIO)", e))?;
    let vcpu = sys::vcpu_create(vm, 0).map_err(|e| ("vcpu_create", e))?;
    made.push(vcpu);
    let line = sys::vm_irq_line_create(vm, 40).map_err(|e| ("vm_irq_line_create", e))?;
    made.push(line);
    // An ioevent on the MMIO region for a value the guest never stores (its store still exits).
    let bell = sys::notif_create().map_err(|e| ("notif_create", e))?;
    made.push(bell);
    let event = sys::vm_ioevent(vm, bell, GUEST_MMIO, 8, Some(!HVC_RESULT), 1).map_err(|e| ("vm_ioevent", e))?;
    made.push(event);
    sys::vcpu_init(vcpu, GUEST_RAM, GUEST_HVC, VCPU_POWER_ON).map_err(|e| ("vcpu_init", e))?;
    let expect = |r: Result<sys::VcpuExit, Error>, want: ExitReason, what| match r {
        Ok(e) if e.reason == want as u64 => Ok(()),
        Ok(_) => Err((what, Error::BadState)),
        Err(e) => Err((what, e)),
    };
    expect(sys::vcpu_run(vcpu, [0; 4]), ExitReason::Hypercall, "vcpu_run to the hypercall exit")?;
    expect(sys::vcpu_run(vcpu, [HVC_RESULT, 0, 0, 0]), ExitReason::Mmio, "vcpu_run to the MMIO exit")?;
    expect(sys::vcpu_run(vcpu, [0; 4]), ExitReason::SystemOff, "vcpu_run to SYSTEM_OFF")?;
    sys::vm_irq_line(line, 2).map_err(|e| ("vm_irq_line", e))?;
    Ok(())
}

/// One `ktest exit` spawned and waited for.
fn process_cycle(pm: &mut Procmgr) -> Result<(), (&'static str, Error)> {
    let child = pm.spawn_ktest(&["exit"]).map_err(|e| ("procmgr SPAWN ktest exit", e))?;
    let code = wait_exit(child.process, 10 * SEC);
    let _ = sys::cap_delete(child.process);
    match code {
        Ok(0) => Ok(()),
        Ok(other) => Err(("exit code of ktest exit", Error::from_code(other).unwrap_or(Error::Invalid))),
        Err(e) => Err(("wait for ktest exit", e)),
    }
}

/// The census once init has pruned its exited children (PS) and two reads agree, retried (up
/// to 2 s) until it matches `before`.
pub(super) fn census_after(pm: &mut Procmgr, before: &Census) -> Result<Census, Error> {
    let read = |pm: &mut Procmgr| {
        let _ = pm.ps_text();
        settled_census()
    };
    let mut after = read(pm);
    for _ in 0..20 {
        if after.as_ref().is_ok_and(|a| compare(before, a).is_empty()) {
            break;
        }
        sys::sleep_ns(100 * MS);
        after = read(pm);
    }
    after
}

/// Runs `rounds` of `cycle` (after [`WARMUP`] unmeasured ones) and checks the census; how many
/// measured rounds succeeded.
fn measure(
    c: &mut Checks,
    pm: &mut Procmgr,
    what: &str,
    rounds: u64,
    cycle: &mut dyn FnMut(&mut Procmgr) -> Result<(), (&'static str, Error)>,
) -> u64 {
    for i in 0..WARMUP {
        if i % PRUNE_EVERY == 0 {
            let _ = pm.ps_text();
        }
        if let Err((call, e)) = cycle(pm) {
            c.fail(format_args!("{what}: warm-up round {i}: {call}: {e:?}"));
            return 0;
        }
    }
    let _ = pm.ps_text();
    let Some(before) = c.expect_ok(format_args!("census before the {what}"), settled_census()) else { return 0 };
    let start = sys::counter();
    let mut done = 0;
    for i in 0..rounds {
        if i % PRUNE_EVERY == 0 {
            let _ = pm.ps_text();
        }
        match cycle(pm) {
            Ok(()) => done += 1,
            Err((call, e)) => {
                c.fail(format_args!("{what}: round {i}: {call}: {e:?}"));
                break;
            }
        }
    }
    let ms = sys::counter().wrapping_sub(start) * 1000 / sys::counter_freq().max(1);
    c.expect_eq(format_args!("{what} completed"), done, rounds);
    let Some(after) = c.expect_ok(format_args!("census after the {what}"), census_after(pm, &before)) else { return done };
    println!("ktest: leaks: {what}: {done} in {ms} ms");
    println!("ktest: leaks: census before: {}", describe(&before));
    println!("ktest: leaks: census after:  {}", describe(&after));
    let grown = after.process_frames().saturating_sub(before.process_frames());
    if grown > 0 {
        println!("ktest: leaks: {what}: live processes' memory grew by {grown} frames (their heaps and page tables)");
    }
    let diffs = compare(&before, &after);
    for d in &diffs {
        c.fail(format_args!("census after {done} {what}: {d}"));
    }
    if diffs.is_empty() {
        c.pass();
        println!("ktest: leaks: ok: {done} {what}: every object count and the kernel's own frames equal, heap within a page");
    }
    done
}

pub fn run(startup: &Startup, count: Option<u64>) -> i32 {
    let vms = count.unwrap_or(DEFAULT_VMS);
    let processes = vms.saturating_mul(PROCESSES_PER_VM);
    let mut c = Checks::new("leaks");
    let Some(mut pm) = procmgr(&mut c, startup) else { return c.finish("") };
    wait_for_system();
    let Some(control) = startup.cap("control") else {
        c.fail("no 'control' capability in the startup block");
        return c.finish("");
    };
    let v = measure(&mut c, &mut pm, "VM create/run/destroy cycles", vms, &mut |_| vm_cycle(control));
    let p = measure(&mut c, &mut pm, "process spawn/exit cycles", processes, &mut process_cycle);
    c.finish(format!("{v} VM cycles, {p} process cycles; census unchanged"))
}
