//! Starting programs: loading a static ELF into a new process with the standard layout
//! (docs/ABI.md), giving it capabilities, and starting its first thread.

use crate::startup::Startup;
use crate::sys;
use alloc::string::ToString;
use keel_abi::{Error, PAGE_SIZE, PmoKind, STACK_SIZE, STACK_TOP, STARTUP_VA, Slot, perm};
use keel_formats::elf::{Executable, Segment, UserLimits};

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

/// Where a program's file lies in a memory object its loader may map (READ, MAP and EXEC
/// rights): the object and the offset of the file's first byte in it. [`spawn_from`] maps the
/// whole pages of a read-only segment from there instead of copying them, so every process of a
/// program shares one copy of its code.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub pmo: Slot,
    pub offset: u64,
}

/// Loads `elf` into a new process named `name` with `args` and `grants`, and starts it.
pub fn spawn(name: &str, elf: &[u8], args: &[&str], grants: &[Grant], sched: Sched) -> Result<Child, Error> {
    spawn_from(name, elf, None, args, grants, sched)
}

/// [`spawn`] of a program whose file is also in `source` (see [`Source`]).
pub fn spawn_from(name: &str, elf: &[u8], source: Option<Source>, args: &[&str], grants: &[Grant], sched: Sched) -> Result<Child, Error> {
    spawn_in(keel_abi::slots::SELF_PROCESS, name, elf, source, args, grants, sched)
}

/// [`spawn_from`] into a quota: `quota` is a slot naming a quota or a process (its quota; MANAGE
/// either way), or [`keel_abi::slots::SELF_PROCESS`] for our own. The child's count, records,
/// page tables and every page loaded for it are charged there; `Limit` or `NoMemory` when the
/// quota has no room.
pub fn spawn_in(quota: Slot, name: &str, elf: &[u8], source: Option<Source>, args: &[&str], grants: &[Grant], sched: Sched) -> Result<Child, Error> {
    let limits = UserLimits { min_vaddr: keel_abi::USER_MIN_VA, max_vaddr: keel_abi::PROGRAM_MAX_VA };
    let exe = Executable::parse(elf, &limits).map_err(|_| Error::Invalid)?;
    let (process, vmspace, pid) = sys::process_create_in(name, quota)?;
    let result = populate(process, vmspace, &exe, source, args, grants, sched);
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

/// Maps a new memory object holding `bytes` at `offset`, charged to the child (`process`).
fn map_bytes(process: Slot, vmspace: Slot, va: u64, size: u64, offset: u64, bytes: &[u8], perms: u64) -> Result<(), Error> {
    let pmo = sys::pmo_create_for(PmoKind::Anonymous, size, process)?;
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

/// The pages of read-only segment `seg` that [`Source`] `src` can back: `(va, size, offset in
/// the source)` of the whole pages that hold nothing but the segment's file bytes, if any and if
/// the file's place in the source keeps them page-aligned.
fn shared_pages(seg: &Segment, src: Source) -> Option<(u64, u64, u64)> {
    if seg.write || (src.offset + seg.file_offset) % PAGE_SIZE != seg.vaddr % PAGE_SIZE {
        return None;
    }
    let first = seg.vaddr.next_multiple_of(PAGE_SIZE);
    let end = (seg.vaddr + seg.file_size) & !(PAGE_SIZE - 1);
    (end > first).then(|| (first, end - first, src.offset + seg.file_offset + (first - seg.vaddr)))
}

fn populate(process: Slot, vmspace: Slot, exe: &Executable, source: Option<Source>, args: &[&str], grants: &[Grant], sched: Sched) -> Result<(), Error> {
    for seg in exe.segments.iter() {
        let start = seg.vaddr & !(PAGE_SIZE - 1);
        let end = (seg.vaddr + seg.mem_size).next_multiple_of(PAGE_SIZE);
        let perms = perm::READ | if seg.write { perm::WRITE } else { 0 } | if seg.exec { perm::EXEC } else { 0 };
        let bytes = exe.segment_bytes(seg);
        let shared = source.and_then(|src| Some((src, shared_pages(seg, src)?)));
        match shared {
            Some((src, (va, size, offset))) if sys::vmspace_map(vmspace, src.pmo, va, size, offset, perms).is_ok() => {
                // The partial pages around the shared ones are copied, as a whole segment is.
                let head = (va - seg.vaddr) as usize;
                if va > start {
                    map_bytes(process, vmspace, start, va - start, seg.vaddr - start, &bytes[..head], perms)?;
                }
                let tail = head + size as usize;
                if end > va + size {
                    map_bytes(process, vmspace, va + size, end - (va + size), 0, &bytes[tail..], perms)?;
                }
            }
            // No source, a writable segment, or one the source cannot back: copied.
            _ => map_bytes(process, vmspace, start, end - start, seg.vaddr - start, bytes, perms)?,
        }
    }
    map_bytes(process, vmspace, STACK_TOP - STACK_SIZE, STACK_SIZE, 0, &[], perm::READ | perm::WRITE)?;
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
    map_bytes(process, vmspace, STARTUP_VA, PAGE_SIZE, 0, text.as_bytes(), perm::READ)?;
    let (thread, _) = sys::thread_create(process, exe.entry, STACK_TOP, STARTUP_VA, sched.priority, sched.affinity)?;
    let _ = sys::cap_delete(thread);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(vaddr: u64, file_offset: u64, file_size: u64, write: bool) -> Segment {
        Segment { vaddr, mem_size: file_size, file_offset, file_size, read: true, write, exec: !write }
    }

    #[test]
    fn read_only_segments_share_their_whole_pages_of_file_bytes() {
        let src = Source { pmo: 3, offset: 0x2000 };
        // Text at 0x400000 from file offset 0x10000, 0x4d43c bytes: 0x4d whole pages.
        assert_eq!(shared_pages(&seg(0x40_0000, 0x1_0000, 0x4_d43c, false), src), Some((0x40_0000, 0x4_d000, 0x1_2000)));
        // Starting mid-page: the first whole page of it on.
        assert_eq!(shared_pages(&seg(0x40_0100, 0x100, 0x3000, false), src), Some((0x40_1000, 0x2000, 0x3000)));
        // Smaller than a page, writable, or not page-aligned in the source: copied.
        assert_eq!(shared_pages(&seg(0x40_0000, 0, 0xfff, false), src), None);
        assert_eq!(shared_pages(&seg(0x40_0000, 0, 0x4000, true), src), None);
        assert_eq!(shared_pages(&seg(0x40_0000, 0, 0x4000, false), Source { pmo: 3, offset: 0x2004 }), None);
    }
}
