//! Virtual machines: the calls a VM monitor makes, the exit record `vcpu_run` returns, and the
//! guest memory map every Keel VM has (it mirrors QEMU's `virt` board, so guests built for that
//! board run unchanged). Details in docs/ABI.md ("Virtual machines").

/// Guest physical layout (IPAs).
pub mod layout {
    /// GICv3 distributor, emulated in the kernel.
    pub const GICD_BASE: u64 = 0x0800_0000;
    pub const GICD_SIZE: u64 = 0x1_0000;
    /// GICv3 redistributors, emulated in the kernel: one RD_base + SGI_base frame pair per vCPU.
    pub const GICR_BASE: u64 = 0x080A_0000;
    pub const GICR_STRIDE: u64 = 0x2_0000;
    /// The PL011 the monitor emulates, and its interrupt (SPI 1).
    pub const UART_BASE: u64 = 0x0900_0000;
    pub const UART_SIZE: u64 = 0x1000;
    pub const UART_INTID: u32 = 33;
    /// virtio-mmio slots: slot n at `VIRTIO_BASE + n * VIRTIO_STRIDE`, interrupt `VIRTIO_INTID + n`.
    pub const VIRTIO_BASE: u64 = 0x0A00_0000;
    pub const VIRTIO_STRIDE: u64 = 0x200;
    pub const VIRTIO_SLOTS: u32 = 32;
    pub const VIRTIO_INTID: u32 = 48;
    /// Guest RAM starts here.
    pub const RAM_BASE: u64 = 0x4000_0000;
    /// Interrupts: the EL1 virtual and physical timer PPIs and the GIC maintenance PPI (as the
    /// guest sees them; the same INTIDs as the host's).
    pub const VTIMER_INTID: u32 = 27;
    pub const PTIMER_INTID: u32 = 30;
    /// The PMU's overflow interrupt (PPI 7).
    pub const PMU_INTID: u32 = 23;
    pub const MAINTENANCE_INTID: u32 = 25;
    /// Most vCPUs in one VM.
    pub const MAX_VCPUS: u32 = 8;
    /// SPIs the vGIC implements (INTIDs 32..96).
    pub const NR_SPIS: u32 = 64;
}

/// `vm_map` permissions (the same bits as `perm`); `MMIO` marks a region whose accesses exit to the
/// monitor (no PMO behind it).
pub mod map {
    pub const READ: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const EXEC: u64 = 4;
    pub const MMIO: u64 = 8;
}

/// `vcpu_init` flags.
pub const VCPU_POWER_ON: u64 = 1;

/// `vm_ioevent`: x3 holds the access size (1, 2, 4 or 8) and these flags.
pub mod ioevent {
    /// Only a write of the value in x4 matches (otherwise any value does).
    pub const MATCH: u64 = 1 << 8;
    /// Most ioevents one VM may have.
    pub const MAX_PER_VM: usize = 64;
}

/// Why `vcpu_run` returned (x1). The other result registers depend on the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ExitReason {
    /// An access to a monitor MMIO region: x2 = IPA, x3 = [`MmioInfo`] bits, x4 = value written,
    /// x5 = bytes in the VM's transmit buffer (stored before this access: take them first).
    /// For a read, pass the value to the next `vcpu_run` (x1).
    Mmio = 1,
    /// A hypercall (HVC) the kernel does not handle: x2..x5 = guest x0..x3. The next `vcpu_run`
    /// passes the results for guest x0..x3 in x1..x4.
    Hypercall = 2,
    /// The same for an SMC.
    Smc = 3,
    /// PSCI SYSTEM_OFF.
    SystemOff = 4,
    /// PSCI SYSTEM_RESET (or SYSTEM_RESET2).
    SystemReset = 5,
    /// A guest abort the kernel could not resolve (out of memory for guest RAM): x2 = IPA, x3 = ESR.
    Abort = 6,
    /// `vcpu_kick` asked the vCPU to return.
    Kicked = 7,
    /// The VM's transmit buffer holds bytes and the guest has stopped adding to it for now (it
    /// waits for an interrupt, or an interrupt came): x2 = bytes buffered. Take them
    /// (`vm_tx_take`) and run the vCPU again.
    Transmit = 8,
}

/// Most bytes a VM's transmit buffer holds (`vm_irq_line_create` x4): a store that finds it
/// full, or of a newline, exits to the monitor instead.
pub const TX_BUFFER: usize = 256;

impl ExitReason {
    pub fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::Mmio,
            2 => Self::Hypercall,
            3 => Self::Smc,
            4 => Self::SystemOff,
            5 => Self::SystemReset,
            6 => Self::Abort,
            7 => Self::Kicked,
            8 => Self::Transmit,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mmio => "mmio",
            Self::Hypercall => "hypercall",
            Self::Smc => "smc",
            Self::SystemOff => "system-off",
            Self::SystemReset => "system-reset",
            Self::Abort => "abort",
            Self::Kicked => "kicked",
            Self::Transmit => "transmit",
        }
    }
}

/// The decoded access of an [`ExitReason::Mmio`] exit (x3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioInfo {
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    pub write: bool,
    /// The guest register (0..30, 31 = XZR).
    pub reg: u8,
    /// A load that sign-extends (the kernel does the extension).
    pub sign_extend: bool,
}

impl MmioInfo {
    pub fn encode(self) -> u64 {
        u64::from(self.size) | (u64::from(self.write) << 8) | (u64::from(self.sign_extend) << 9) | (u64::from(self.reg) << 16)
    }

    pub fn decode(v: u64) -> Self {
        Self { size: v as u8, write: v & (1 << 8) != 0, sign_extend: v & (1 << 9) != 0, reg: (v >> 16) as u8 & 31 }
    }
}

/// Exit counters, per vCPU (`vcpu_stat` returns them by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    Hvc = 0,
    Smc = 1,
    Psci = 2,
    Wfi = 3,
    Wfe = 4,
    Sysreg = 5,
    MmioKernel = 6,
    MmioUser = 7,
    Stage2Fault = 8,
    Irq = 9,
    Timer = 10,
    Sgi = 11,
    AbortInjected = 12,
    UndefInjected = 13,
    /// A guest write that matched an ioevent: signalled in the kernel, no exit to the monitor.
    IoEvent = 14,
}

/// Number of counters.
pub const COUNTERS: usize = 15;

impl Counter {
    pub const ALL: [Counter; COUNTERS] = [
        Self::Hvc,
        Self::Smc,
        Self::Psci,
        Self::Wfi,
        Self::Wfe,
        Self::Sysreg,
        Self::MmioKernel,
        Self::MmioUser,
        Self::Stage2Fault,
        Self::Irq,
        Self::Timer,
        Self::Sgi,
        Self::AbortInjected,
        Self::UndefInjected,
        Self::IoEvent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Hvc => "hvc",
            Self::Smc => "smc",
            Self::Psci => "psci",
            Self::Wfi => "wfi",
            Self::Wfe => "wfe",
            Self::Sysreg => "sysreg",
            Self::MmioKernel => "mmio-kernel",
            Self::MmioUser => "mmio-user",
            Self::Stage2Fault => "stage2-fault",
            Self::Irq => "irq",
            Self::Timer => "timer",
            Self::Sgi => "sgi",
            Self::AbortInjected => "abort-injected",
            Self::UndefInjected => "undef-injected",
            Self::IoEvent => "ioevent",
        }
    }
}

/// SMCCC function IDs the kernel and monitors agree on.
pub mod smccc {
    /// Vendor-specific hypervisor service calls (owning entity 6) go to the monitor.
    pub fn is_vendor_hyp(fid: u64) -> bool {
        (fid >> 24) & 0x3f == 6 && fid & (1 << 31) != 0
    }
    /// SMCCC NOT_SUPPORTED.
    pub const NOT_SUPPORTED: i64 = -1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_info_round_trips() {
        for size in [1u8, 2, 4, 8] {
            for reg in [0u8, 17, 31] {
                let i = MmioInfo { size, write: reg % 2 == 0, reg, sign_extend: reg == 17 };
                assert_eq!(MmioInfo::decode(i.encode()), i);
            }
        }
    }

    #[test]
    fn vendor_hyp_range() {
        assert!(smccc::is_vendor_hyp(0xC600_0001));
        assert!(smccc::is_vendor_hyp(0x8600_0000));
        assert!(!smccc::is_vendor_hyp(0x8400_0000));
        assert!(!smccc::is_vendor_hyp(0x0600_0000));
    }

    #[test]
    fn counters_are_in_index_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
