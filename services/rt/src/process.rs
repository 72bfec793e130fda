//! Starting programs: loading a static ELF into a new process with the standard layout
//! (docs/ABI.md), giving it capabilities, and starting its first thread.

use crate::startup::Startup;
use crate::sys;
use alloc::string::ToString;
use keel_abi::{Error, PAGE_SIZE, PmoKind, STACK_SIZE, STACK_TOP, STARTUP_VA, Slot, perm};
use keel_formats::elf::{Executable, UserLimits};

/// A started child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Child {
    /// Our capability to the child process (all rights).
    pub process: Slot,
    pub pid: u64,
}

/// A capability to give a child: our slot, the rights it gets, a badge (0 = none), its name.
pub struct Grant<'a> {
    pub slot: Slot,
    pub rights: u32,
    pub badge: u64,
    pub name: &'a str,
}

/// How a child runs.
#[derive(Clone, Copy, Debug)]
pub struct Sched {
    pub priority: u8,
    pub affinity: u64,
}

impl Default for Sched {
    fn default() -> Self {
        Self { priority: 32, affinity: 0 }
    }
}

/// Loads `elf` into a new process named `name` with `args` and `grants`, and starts it.
pub fn spawn(name: &str, elf: &[u8], args: &[&str], grants: &[Grant], sched: Sched) -> Result<Child, Error> {
    let limits = UserLimits { min_vaddr: keel_abi::USER_MIN_VA, max_vaddr: keel_abi::PROGRAM_MAX_VA };
    let exe = Executable::parse(elf, &limits).map_err(|_| Error::Invalid)?;
    let (process, vmspace, pid) = sys::process_create(name)?;
    let result = populate(process, vmspace, &exe, args, grants, sched);
    let _ = sys::cap_delete(vmspace);
    match result {
        Ok(()) => Ok(Child { process, pid }),
        Err(e) => {
            let _ = sys::process_kill(process);
            let _ = sys::cap_delete(process);
            Err(e)
        }
    }
}

fn map_bytes(vmspace: Slot, va: u64, size: u64, offset: u64, bytes: &[u8], perms: u64) -> Result<(), Error> {
    let pmo = sys::pmo_create(PmoKind::Anonymous, size)?;
    let result = (|| {
        for (i, chunk) in bytes.chunks(keel_abi::MAX_COPY as usize).enumerate() {
            sys::pmo_write(pmo, offset + (i as u64) * keel_abi::MAX_COPY, chunk)?;
        }
        sys::vmspace_map(vmspace, pmo, va, size, 0, perms)
    })();
    // The mapping keeps the object alive; our capability is no longer needed.
    let _ = sys::cap_delete(pmo);
    result
}

fn populate(process: Slot, vmspace: Slot, exe: &Executable, args: &[&str], grants: &[Grant], sched: Sched) -> Result<(), Error> {
    for seg in exe.segments.iter() {
        let start = seg.vaddr & !(PAGE_SIZE - 1);
        let end = (seg.vaddr + seg.mem_size).next_multiple_of(PAGE_SIZE);
        let perms = perm::READ | if seg.write { perm::WRITE } else { 0 } | if seg.exec { perm::EXEC } else { 0 };
        map_bytes(vmspace, start, end - start, seg.vaddr - start, exe.segment_bytes(seg), perms)?;
    }
    map_bytes(vmspace, STACK_TOP - STACK_SIZE, STACK_SIZE, 0, &[], perm::READ | perm::WRITE)?;
    let mut startup = Startup::default();
    startup.args = args.iter().map(|a| a.to_string()).collect();
    for g in grants {
        let slot = sys::cap_copy(g.slot, Some(process), g.rights, g.badge)?;
        startup.caps.push((g.name.to_string(), slot));
    }
    let text = startup.render();
    if text.len() as u64 >= PAGE_SIZE {
        return Err(Error::Invalid);
    }
    map_bytes(vmspace, STARTUP_VA, PAGE_SIZE, 0, text.as_bytes(), perm::READ)?;
    let (thread, _) = sys::thread_create(process, exe.entry, STACK_TOP, STARTUP_VA, sched.priority, sched.affinity)?;
    let _ = sys::cap_delete(thread);
    Ok(())
}
