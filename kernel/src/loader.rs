//! Loading a static ELF program into a new process, and the startup block it finds at entry.
//!
//! The kernel loads only the first process (`init`) this way; init loads every other program
//! itself with the same layout (services/rt). Layout of a new process:
//!
//! - the ELF's PT_LOAD segments at their addresses, each in its own anonymous PMO;
//! - a stack of [`STACK_SIZE`] below [`STACK_TOP`], with an unmapped guard page under it;
//! - the startup block (text, see docs/ABI.md) at [`STARTUP_VA`]; x0 = its address, x1 = its length.

use crate::cap::Rights;
use crate::kernel::Kernel;
use crate::object::pmo::Pmo;
use crate::object::{Id, ObjRef};
use alloc::string::String;
use keel_abi::{Error, PAGE_SIZE, USER_MAX_VA, USER_MIN_VA, perm};
use keel_formats::elf::{Executable, UserLimits};
use keel_formats::startup::Startup;

use keel_abi::{STACK_SIZE, STACK_TOP, STARTUP_VA};

/// Programs must link below the stack.
pub const PROGRAM_LIMITS: UserLimits = UserLimits { min_vaddr: USER_MIN_VA, max_vaddr: keel_abi::PROGRAM_MAX_VA };

impl Kernel {
    /// Makes a process running `elf` with `args`, giving it `caps` (object, rights, name).
    pub fn spawn_elf(&mut self, name: &str, elf: &[u8], args: &[&str], caps: &[(ObjRef, Rights, &str)]) -> Result<Id, Error> {
        let exe = Executable::parse(elf, &PROGRAM_LIMITS).map_err(|e| {
            log::error!("{name}: not a loadable program: {e}");
            Error::Invalid
        })?;
        let pid = self.create_process(name)?;
        match self.populate(pid, &exe, args, caps) {
            Ok(()) => Ok(pid),
            Err(e) => {
                self.exit_process(pid, keel_abi::EXIT_FAULT);
                Err(e)
            }
        }
    }

    fn populate(&mut self, pid: Id, exe: &Executable, args: &[&str], caps: &[(ObjRef, Rights, &str)]) -> Result<(), Error> {
        let (vs, quota) = self.processes.get(&pid).map(|p| (p.vmspace, p.quota)).ok_or(Error::BadState)?;
        for seg in exe.segments.iter() {
            let start = seg.vaddr & !(PAGE_SIZE - 1);
            let end = (seg.vaddr + seg.mem_size).next_multiple_of(PAGE_SIZE);
            let mut pmo = Pmo::anonymous(end - start, quota);
            pmo.write(seg.vaddr - start, exe.segment_bytes(seg))?;
            let perms = perm::READ | if seg.write { perm::WRITE } else { 0 } | if seg.exec { perm::EXEC } else { 0 };
            self.map_new_pmo(vs, start, pmo, perms)?;
        }
        let stack = Pmo::anonymous(STACK_SIZE, quota);
        self.map_new_pmo(vs, STACK_TOP - STACK_SIZE, stack, perm::READ | perm::WRITE)?;

        let mut startup = Startup { args: args.iter().map(|a| String::from(*a)).collect(), caps: alloc::vec::Vec::new() };
        for (obj, rights, cap_name) in caps {
            let slot = self.insert_cap(pid, *obj, *rights)?;
            startup.caps.push((String::from(*cap_name), slot));
        }
        let text = startup.render();
        if text.len() as u64 > PAGE_SIZE {
            return Err(Error::Invalid);
        }
        let mut block = Pmo::anonymous(PAGE_SIZE, quota);
        block.write(0, text.as_bytes())?;
        self.map_new_pmo(vs, STARTUP_VA, block, perm::READ)?;
        let params = self.default_params();
        self.create_thread(pid, exe.entry, STACK_TOP, STARTUP_VA, params).map(|_| ())
    }

    fn map_new_pmo(&mut self, vs: Id, va: u64, mut pmo: Pmo, perms: u64) -> Result<(), Error> {
        let size = pmo.size;
        if va.checked_add(size).is_none_or(|end| end > USER_MAX_VA) {
            return Err(Error::Invalid);
        }
        let id = self.new_id();
        let space = self.vmspaces.get_mut(&vs).ok_or(Error::BadState)?;
        if let Err(e) = space.check_free_range(va, size).and_then(|()| space.add_region(va, size, id, &mut pmo, 0, perms)) {
            pmo.release();
            return Err(e);
        }
        self.pmos.insert(id, pmo);
        self.inc_ref(ObjRef::Pmo(id));
        Ok(())
    }
}
