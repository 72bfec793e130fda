//! System call numbers (x8). Arguments and results per call are in docs/ABI.md.

pub const NULL: u64 = 0;
pub const DEBUG_WRITE: u64 = 1;
pub const YIELD: u64 = 2;
pub const THREAD_EXIT: u64 = 3;
pub const PROCESS_EXIT: u64 = 4;
pub const CAP_INFO: u64 = 5;
pub const CAP_COPY: u64 = 6;
pub const CAP_DELETE: u64 = 7;
pub const CAP_REVOKE: u64 = 8;
pub const PROCESS_CREATE: u64 = 9;
pub const THREAD_CREATE: u64 = 10;
pub const PMO_CREATE: u64 = 11;
pub const PMO_WRITE: u64 = 12;
pub const PMO_READ: u64 = 13;
pub const VMSPACE_MAP: u64 = 14;
pub const VMSPACE_UNMAP: u64 = 15;
pub const PROCESS_WAIT: u64 = 16;
pub const PROCESS_KILL: u64 = 17;
pub const PROCESS_INFO: u64 = 18;
pub const CONN_CREATE: u64 = 19;
pub const IPC_CALL: u64 = 20;
pub const IPC_RECV: u64 = 21;
pub const IPC_REPLY_RECV: u64 = 22;
pub const IPC_REPLY: u64 = 23;
pub const NOTIF_CREATE: u64 = 24;
pub const NOTIF_SIGNAL: u64 = 25;
pub const NOTIF_WAIT: u64 = 26;
pub const IRQ_CREATE: u64 = 27;
pub const IRQ_BIND: u64 = 28;
pub const IRQ_ACK: u64 = 29;
pub const DEVICE_PMO: u64 = 30;
pub const MEM_INFO: u64 = 31;
pub const POWER_OFF: u64 = 32;
pub const THREAD_SET_SCHED: u64 = 33;
pub const SLEEP: u64 = 34;
pub const PMO_PHYS: u64 = 35;
pub const CAP_MOVE: u64 = 36;
pub const PROCESS_WATCH: u64 = 37;
pub const VM_CREATE: u64 = 38;
pub const VM_MAP: u64 = 39;
pub const VCPU_CREATE: u64 = 40;
pub const VCPU_INIT: u64 = 41;
pub const VCPU_RUN: u64 = 42;
pub const VCPU_KICK: u64 = 43;
pub const VM_IRQ_LINE: u64 = 44;
pub const VCPU_STAT: u64 = 45;
pub const VM_IRQ_LINE_CREATE: u64 = 46;
pub const FAULT_INJECT: u64 = 47;
pub const VM_IOEVENT: u64 = 48;
pub const CONN_OWNER: u64 = 49;
pub const VM_TX_TAKE: u64 = 50;
pub const QUOTA_CREATE: u64 = 51;
pub const QUOTA_SET: u64 = 52;
pub const QUOTA_STAT: u64 = 53;
pub const QUOTA_MOVE: u64 = 54;
pub const BILL_CREATE: u64 = 55;
pub const BILL_CHARGE: u64 = 56;
pub const BILL_REFUND: u64 = 57;

/// One past the highest call number.
pub const COUNT: u64 = 58;

/// The call's name, for logs and tests.
pub fn name(nr: u64) -> &'static str {
    match nr {
        NULL => "null",
        DEBUG_WRITE => "debug_write",
        YIELD => "yield",
        THREAD_EXIT => "thread_exit",
        PROCESS_EXIT => "process_exit",
        CAP_INFO => "cap_info",
        CAP_COPY => "cap_copy",
        CAP_DELETE => "cap_delete",
        CAP_REVOKE => "cap_revoke",
        PROCESS_CREATE => "process_create",
        THREAD_CREATE => "thread_create",
        PMO_CREATE => "pmo_create",
        PMO_WRITE => "pmo_write",
        PMO_READ => "pmo_read",
        VMSPACE_MAP => "vmspace_map",
        VMSPACE_UNMAP => "vmspace_unmap",
        PROCESS_WAIT => "process_wait",
        PROCESS_KILL => "process_kill",
        PROCESS_INFO => "process_info",
        CONN_CREATE => "conn_create",
        IPC_CALL => "ipc_call",
        IPC_RECV => "ipc_recv",
        IPC_REPLY_RECV => "ipc_reply_recv",
        IPC_REPLY => "ipc_reply",
        NOTIF_CREATE => "notif_create",
        NOTIF_SIGNAL => "notif_signal",
        NOTIF_WAIT => "notif_wait",
        IRQ_CREATE => "irq_create",
        IRQ_BIND => "irq_bind",
        IRQ_ACK => "irq_ack",
        DEVICE_PMO => "device_pmo",
        MEM_INFO => "mem_info",
        POWER_OFF => "power_off",
        THREAD_SET_SCHED => "thread_set_sched",
        SLEEP => "sleep",
        PMO_PHYS => "pmo_phys",
        CAP_MOVE => "cap_move",
        PROCESS_WATCH => "process_watch",
        VM_CREATE => "vm_create",
        VM_MAP => "vm_map",
        VCPU_CREATE => "vcpu_create",
        VCPU_INIT => "vcpu_init",
        VCPU_RUN => "vcpu_run",
        VCPU_KICK => "vcpu_kick",
        VM_IRQ_LINE => "vm_irq_line",
        VCPU_STAT => "vcpu_stat",
        VM_IRQ_LINE_CREATE => "vm_irq_line_create",
        FAULT_INJECT => "fault_inject",
        VM_IOEVENT => "vm_ioevent",
        CONN_OWNER => "conn_owner",
        VM_TX_TAKE => "vm_tx_take",
        QUOTA_CREATE => "quota_create",
        QUOTA_SET => "quota_set",
        QUOTA_STAT => "quota_stat",
        QUOTA_MOVE => "quota_move",
        BILL_CREATE => "bill_create",
        BILL_CHARGE => "bill_charge",
        BILL_REFUND => "bill_refund",
        _ => "unknown",
    }
}

/// Pages of `mem_info` (x0 selects one; the results are in x1..x7).
pub mod mem_info {
    /// x1 total frames, x2 free frames, x3 kernel heap pages, x4 free kernel heap pages, x5 frames
    /// held by pmos, x6 frames in user and stage-2 page tables (one read: x2, x5 and x6 agree).
    pub const MEMORY: u64 = 0;
    /// Live kernel objects: x1 processes, x2 threads, x3 vmspaces, x4 pmos, x5 connections,
    /// x6 notifications, x7 irqs.
    pub const OBJECTS: u64 = 1;
    /// x1 vms, x2 vcpus, x3 vm irq lines, x4 capabilities, x5 slot tables, x6 frames held by pmos,
    /// x7 vm ioevents.
    pub const MORE_OBJECTS: u64 = 2;
    /// The CPU's feature registers as a guest would read them (host values with what Keel does
    /// not switch hidden): x1 ID_AA64ISAR0_EL1, x2 ID_AA64ISAR1_EL1, x3 ID_AA64ISAR2_EL1,
    /// x4 ID_AA64PFR0_EL1, x5 ID_AA64PFR1_EL1, x6 ID_AA64MMFR0_EL1, x7 ID_AA64ZFR0_EL1. EL0 may
    /// not read them itself (the instruction is undefined there); this is how a program learns
    /// whether it may use RNDR, for example.
    pub const CPU: u64 = 3;
    /// Idle time: x1 counter ticks during which every online CPU waited for an interrupt at
    /// once, since user space started; x2 how many such stretches began; x3 the counter when
    /// this was read. Under icount (`make bench`) the counter counts instructions except across
    /// such stretches, where QEMU jumps it to the next timer deadline: elapsed ticks minus the
    /// growth of x1 is the instructions executed.
    pub const IDLE: u64 = 4;
}
