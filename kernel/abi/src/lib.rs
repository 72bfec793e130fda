//! The Keel system-call ABI, shared by the kernel and user space (see docs/ABI.md).
//!
//! A system call is `svc #0` with the call number in x8 and arguments in x0..x7. It returns a
//! status in x0 (0 or a positive value on success, a negative [`Error`] code on failure) and
//! results in x1..x7. Capabilities are named by slot numbers in the caller's slot table.
//! Nothing here depends on the kernel's internals; changing a number here changes the ABI.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod ipc;
pub mod quota;
pub mod rights;
pub mod syscall;
pub mod vm;

mod error;
pub use error::Error;

/// A slot in a process's capability table.
pub type Slot = u32;

/// The slot value meaning "no capability".
pub const NO_SLOT: Slot = u32::MAX;

/// Lowest and highest user virtual addresses a process may map (the low 256 TiB, TTBR0).
pub const USER_MIN_VA: u64 = 0x1000;
pub const USER_MAX_VA: u64 = 0x0000_FFFF_FFFF_F000;

/// Page size of user mappings.
pub const PAGE_SIZE: u64 = 4096;

/// Slots every process starts with (filled by the kernel at `process_create`). Other startup
/// capabilities are placed by the creator and named in the startup block (docs/ABI.md).
pub mod slots {
    use super::Slot;
    /// The process's own CapGroup.
    pub const SELF_PROCESS: Slot = 0;
    /// The process's own VmSpace.
    pub const SELF_VMSPACE: Slot = 1;
}

/// The layout of a new process (docs/ABI.md): the program links below [`PROGRAM_MAX_VA`], its
/// stack ends at [`STACK_TOP`] with an unmapped guard page below it, and the startup block (text,
/// NUL-terminated, one page) is at [`STARTUP_VA`]. The first thread starts with x0 = STARTUP_VA.
pub const STACK_TOP: u64 = 0x0000_0040_0000_0000;
pub const STACK_SIZE: u64 = 256 * 1024;
pub const STARTUP_VA: u64 = STACK_TOP + PAGE_SIZE;
pub const PROGRAM_MAX_VA: u64 = STACK_TOP - STACK_SIZE - PAGE_SIZE;

/// Largest PMO `pmo_create` makes (anonymous), and largest contiguous one.
pub const PMO_MAX_SIZE: u64 = 1 << 32;
pub const PMO_MAX_CONTIGUOUS: u64 = 64 << 20;
/// Most bytes one `debug_write`, `pmo_read` or `pmo_write` moves.
pub const MAX_COPY: u64 = 1 << 20;

/// Kinds of kernel objects, as reported by `cap_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ObjectKind {
    CapGroup = 1,
    Thread = 2,
    VmSpace = 3,
    Pmo = 4,
    Connection = 5,
    Notification = 6,
    Irq = 7,
    Control = 8,
    Vm = 9,
    VCpu = 10,
    VmIrqLine = 11,
    VmIoEvent = 12,
    Quota = 13,
    Bill = 14,
}

impl ObjectKind {
    pub fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::CapGroup,
            2 => Self::Thread,
            3 => Self::VmSpace,
            4 => Self::Pmo,
            5 => Self::Connection,
            6 => Self::Notification,
            7 => Self::Irq,
            8 => Self::Control,
            9 => Self::Vm,
            10 => Self::VCpu,
            11 => Self::VmIrqLine,
            12 => Self::VmIoEvent,
            13 => Self::Quota,
            14 => Self::Bill,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::CapGroup => "process",
            Self::Thread => "thread",
            Self::VmSpace => "vmspace",
            Self::Pmo => "pmo",
            Self::Connection => "connection",
            Self::Notification => "notification",
            Self::Irq => "irq",
            Self::Control => "control",
            Self::Vm => "vm",
            Self::VCpu => "vcpu",
            Self::VmIrqLine => "vm-irq-line",
            Self::VmIoEvent => "vm-ioevent",
            Self::Quota => "quota",
            Self::Bill => "bill",
        }
    }
}

/// Kinds of physical memory objects (`pmo_create`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum PmoKind {
    /// Zero-filled pages allocated on first touch.
    Anonymous = 0,
    /// Physically contiguous, allocated at once (DMA-able; `pmo_phys` reveals its address).
    Contiguous = 1,
}

/// Mapping permissions for `vmspace_map` (bit set).
pub mod perm {
    pub const READ: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const EXEC: u64 = 4;
    pub const ALL: u64 = READ | WRITE | EXEC;
}

/// Process states reported by `process_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ProcessState {
    Running = 0,
    Exited = 1,
}

/// Exit code the kernel gives a process it killed for a fault.
pub const EXIT_FAULT: i64 = -11;
/// Exit code of a process killed with `process_kill`.
pub const EXIT_KILLED: i64 = -9;
/// Exit code the kernel gives a process whose page fault could not be given memory: its quota
/// (or a quota above it, or the machine) had none left. Counted as an `oom_kill` of its quota.
pub const EXIT_OOM: i64 = -12;
