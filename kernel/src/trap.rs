//! What happens when a user thread traps: system calls, page faults (demand paging or death),
//! and every other synchronous exception (the process is killed with one clear log line).

use crate::kernel::Kernel;
use crate::object::thread::UserRegs;
use crate::object::vmspace::{Access, FaultError};
use crate::object::Id;

/// A synchronous exception from EL0, decoded by the arch layer.
#[derive(Clone, Copy, Debug)]
pub enum UserTrap {
    /// `svc #0`.
    Syscall,
    /// An instruction or data abort at `addr`; `translation` is true for translation faults
    /// (nothing mapped in the table yet), false for permission and other faults.
    Abort { addr: u64, access: Access, translation: bool, class: &'static str, status: &'static str },
    /// Anything else (undefined instruction, alignment, breakpoint...): fatal for the process.
    Fatal { class: &'static str, esr: u64 },
}

impl Kernel {
    /// Handles a synchronous exception from the current user thread of `cpu`, then chooses what
    /// runs next (the arch layer idles if that is nothing).
    pub fn user_trap(&mut self, cpu: usize, frame: &mut UserRegs, trap: UserTrap) {
        match trap {
            UserTrap::Syscall => crate::syscall::dispatch(self, cpu, frame),
            UserTrap::Abort { addr, access, translation, class, status } => {
                let result = match (translation, self.current_vmspace(cpu)) {
                    (true, Some(vs)) => self.fault_in(vs, addr, access).map(|_| ()),
                    (false, Some(_)) => Err(FaultError::Forbidden),
                    (_, None) => Err(FaultError::Unmapped),
                };
                if let Err(why) = result {
                    let what = format_args!("{} at {addr:#x}: {} ({class}, {status})", access.name(), why.describe());
                    let code = if why == FaultError::NoMemory { keel_abi::EXIT_OOM } else { keel_abi::EXIT_FAULT };
                    self.kill_current_for_fault(cpu, frame.pc, what, code);
                }
            }
            UserTrap::Fatal { class, esr } => {
                let what = format_args!("{class} (ESR {esr:#x})");
                self.kill_current_for_fault(cpu, frame.pc, what, keel_abi::EXIT_FAULT);
            }
        }
        self.finish_trap(cpu, frame);
    }

    /// After any trap or interrupt from user space: reschedule if the current thread is gone,
    /// blocked, or should be preempted.
    ///
    /// Without a thread-table lookup: a thread that stops running here stops being current
    /// (blocking saves it and clears `current[cpu]`), except one killed while running, whose kill
    /// sets `need_resched` for its CPU.
    pub fn finish_trap(&mut self, cpu: usize, frame: &mut UserRegs) {
        debug_assert!(
            self.current[cpu].is_none()
                || self.cpus[cpu].need_resched
                || self.current[cpu]
                    .and_then(|t| self.threads.get(&t))
                    .is_some_and(|t| t.state == crate::object::thread::ThreadState::Running(cpu)),
            "cpu{cpu}: the current thread stopped running without a reschedule due"
        );
        if self.current[cpu].is_none() || self.cpus[cpu].need_resched {
            self.schedule(cpu, frame);
        }
    }

    fn current_vmspace(&self, cpu: usize) -> Option<Id> {
        let t = self.threads.get(&self.current[cpu]?)?;
        Some(self.processes.get(&t.pid)?.vmspace)
    }

    /// Ends the current thread's process with `code`; an out-of-memory kill (`EXIT_OOM`) is
    /// counted in its quota (`oom_kill`).
    fn kill_current_for_fault(&mut self, cpu: usize, pc: u64, what: core::fmt::Arguments, code: i64) {
        let Some(tid) = self.current[cpu] else { return };
        let Some(pid) = self.threads.get(&tid).map(|t| t.pid) else { return };
        let (name, quota) = self.processes.get(&pid).map_or(("?", 0), |p| (p.name.as_str(), p.quota));
        log::warn!("process {pid} ({name}): {what} at pc {pc:#x}; killed");
        if code == keel_abi::EXIT_OOM {
            crate::object::quota::QUOTAS.lock().record_oom_kill(quota);
        }
        self.exit_process(pid, code);
    }
}
