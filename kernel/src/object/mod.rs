//! Kernel objects. Capabilities name them with an [`ObjRef`]: a kind and an id into the owning
//! map of the kernel (`kernel.rs`). Every object counts its references (caps, plus
//! the internal ones each kind documents) and is destroyed when the count reaches zero.

pub mod ipc;
pub mod pmo;
pub mod process;
pub mod quota;
pub mod thread;
pub mod vmspace;

use keel_abi::ObjectKind;

/// Object ids: unique for the kernel's lifetime, never reused.
pub type Id = u64;

/// What a capability refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjRef {
    Process(Id),
    Thread(Id),
    VmSpace(Id),
    Pmo(Id),
    Conn(Id),
    Notif(Id),
    Irq(u32),
    Vm(Id),
    VCpu(Id),
    /// One SPI of one VM, for a device backend to drive.
    VmIrqLine(Id),
    /// A guest write the kernel turns into a notification signal (`vm_ioevent`).
    VmIoEvent(Id),
    /// The machine itself: power, device memory and interrupt lines. Held by init.
    Control,
    /// A budget of memory, processes and threads (object/quota.rs).
    Quota(Id),
    /// Memory a service keeps for a client, charged to the client's quota (object/quota.rs).
    Bill(Id),
}

impl ObjRef {
    pub fn kind(self) -> ObjectKind {
        match self {
            Self::Process(_) => ObjectKind::CapGroup,
            Self::Thread(_) => ObjectKind::Thread,
            Self::VmSpace(_) => ObjectKind::VmSpace,
            Self::Pmo(_) => ObjectKind::Pmo,
            Self::Conn(_) => ObjectKind::Connection,
            Self::Notif(_) => ObjectKind::Notification,
            Self::Irq(_) => ObjectKind::Irq,
            Self::Vm(_) => ObjectKind::Vm,
            Self::VCpu(_) => ObjectKind::VCpu,
            Self::VmIrqLine(_) => ObjectKind::VmIrqLine,
            Self::VmIoEvent(_) => ObjectKind::VmIoEvent,
            Self::Control => ObjectKind::Control,
            Self::Quota(_) => ObjectKind::Quota,
            Self::Bill(_) => ObjectKind::Bill,
        }
    }
}
