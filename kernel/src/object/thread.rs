//! Threads: saved user registers, FP/SIMD state, scheduling parameters and what a blocked thread
//! waits for.

use super::Id;
pub use crate::hal::UserRegs;
use crate::hal::FpState;
use crate::sched::runqueue::{SchedId, SchedParams};
use alloc::boxed::Box;
use keel_abi::ipc::{CapList, Message};


/// Where a thread is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// In a run queue.
    Ready,
    /// Its registers are live on this CPU.
    Running(usize),
    Blocked(Block),
    /// Killed; dropped by the CPU that runs it, if any, at its next kernel entry.
    Dead,
}

/// What a blocked thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// A client whose call waits for a server thread on `conn`.
    Call { conn: Id },
    /// A client whose call is being served by `server`.
    Reply { server: Id },
    /// A server thread waiting for calls on `conn`.
    Recv { conn: Id },
    /// Waiting for bits on a notification.
    Notif { notif: Id },
    /// Waiting for process `pid` to exit.
    ProcessExit { pid: Id },
    /// Sleeping until its deadline.
    Sleep,
    /// In guest mode: the vCPU executed WFI and has nothing to deliver (a deadline is set when
    /// its virtual timer is armed).
    GuestWfi { vcpu: Id },
    /// In guest mode: the vCPU is powered off (PSCI) until CPU_ON or a kick.
    GuestOff { vcpu: Id },
    /// Its quota used up its CPU time for this period (`cpu.max`): it waits in the kernel's
    /// throttled list for the next period.
    Throttled,
}

/// IPC state of a thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadIpc {
    /// The message of a call waiting for a server, and the sender's slots of the caps it carries.
    pub msg: Message,
    pub caps: Option<CapList>,
    /// For a server thread: the client it is serving.
    pub caller: Option<Id>,
    /// The badge of the capability the pending call was made through.
    pub badge: u64,
}

pub struct Thread {
    pub tid: Id,
    pub pid: Id,
    pub regs: UserRegs,
    pub fp: Box<FpState>,
    pub state: ThreadState,
    pub params: SchedParams,
    /// Its record in the scheduler, from creation until the thread object goes.
    pub sched: SchedId,
    /// Its process's address space: (vmspace id, table root, ASID), copied at creation so that a
    /// switch needs no lookup (a process keeps one address space, which outlives its threads).
    pub space: (Id, u64, u16),
    pub ipc: ThreadIpc,
    /// Counter value at which a sleep or timed wait ends.
    pub deadline: Option<u64>,
    /// References: caps to this thread.
    pub refs: u32,
    /// The vCPU this thread runs (guest mode, inside `vcpu_run`); its own registers are in `regs`.
    pub guest: Option<Id>,
    /// The quota its count and record are charged to (its process's; moves with it).
    pub quota: Id,
    /// It holds its quota's THREADS charge (from creation until it dies, whatever its state
    /// says in between).
    pub counted: bool,
}

impl Thread {
    pub fn new(tid: Id, pid: Id, entry: u64, stack: u64, arg: u64, params: SchedParams, sched: SchedId, space: (Id, u64, u16)) -> Self {
        let mut regs = UserRegs::default();
        regs.pc = entry;
        regs.sp = stack;
        regs.x[0] = arg;
        regs.pstate = 0; // EL0t, interrupts unmasked
        Self {
            tid,
            pid,
            regs,
            fp: Box::new(FpState::new()),
            state: ThreadState::Ready,
            params,
            sched,
            space,
            ipc: ThreadIpc::default(),
            deadline: None,
            refs: 0,
            guest: None,
            quota: 0,
            counted: false,
        }
    }

    /// Saves its user-mode state: the trap frame's registers and the live FP/SIMD registers.
    pub fn save_user(&mut self, frame: &UserRegs) {
        crate::hal::copy_regs(&mut self.regs, frame);
        crate::hal::fp_save(&mut self.fp);
    }

    /// Makes its saved user-mode state live again: registers into `frame`, FP/SIMD restored.
    pub fn restore_user(&self, frame: &mut UserRegs) {
        crate::hal::copy_regs(frame, &self.regs);
        crate::hal::fp_restore(&self.fp);
    }

    /// Sets the registers a system call returns: x0 = status, then results from x1.
    pub fn set_return(&mut self, status: i64, results: &[u64]) {
        set_return(&mut self.regs, status, results);
    }
}

/// Writes a system call's status and results into saved or live registers.
pub fn set_return(regs: &mut UserRegs, status: i64, results: &[u64]) {
    regs.x[0] = status as u64;
    for (i, r) in results.iter().enumerate().take(7) {
        regs.x[1 + i] = *r;
    }
}

/// The result words of a system call that succeeded: x1.. (at most seven; x0 is the status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Words {
    len: u8,
    words: [u64; 7],
}

impl Words {
    pub const NONE: Self = Self { len: 0, words: [0; 7] };

    /// The first seven of `words`.
    pub fn new(words: &[u64]) -> Self {
        let mut w = Self::NONE;
        for (d, s) in w.words.iter_mut().zip(words) {
            *d = *s;
        }
        w.len = words.len().min(7) as u8;
        w
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.words[..self.len as usize]
    }
}

/// What a system call that succeeded means for its caller, for the dispatcher to finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The caller returns at once: x0 = 0 and no result words.
    Done,
    /// The caller returns at once: x0 = 0 and these words from x1.
    Return(Words),
    /// The caller returns 0, after giving up the CPU (to the back of its run queue).
    ReturnAfterYield,
    /// The caller does not return now: it blocked, runs its guest, or exited. Its result is
    /// written into its saved registers when it wakes, and the frame may already hold another
    /// thread.
    Suspended,
}

impl Outcome {
    pub fn words(words: &[u64]) -> Self {
        Self::Return(Words::new(words))
    }
}
