//! The guest machine the VMM builds (it mirrors QEMU `virt`): fixed physical addresses of the
//! devices the test guests touch. RAM size and the CPU list come from the DTB, not from here.
//!
//! Nothing here touches hardware; it is shared by the runtime, the scenarios and host tests.

/// Guest RAM base (where the VMM, like QEMU, puts RAM).
pub const RAM_BASE: u64 = 0x4000_0000;

/// PL011 UART: the guest's console.
pub const UART_BASE: u64 = 0x0900_0000;
/// One 4 KiB page of PL011 registers.
pub const UART_SIZE: u64 = 0x1000;

/// GICv3 distributor.
pub const GICD_BASE: u64 = 0x0800_0000;
/// GICv3 distributor frame size.
pub const GICD_SIZE: u64 = 0x1_0000;
/// First GICv3 redistributor (RD_base of vCPU 0).
pub const GICR_BASE: u64 = 0x080A_0000;
/// Distance between two vCPUs' redistributors (RD_base + SGI_base, 64 KiB each).
pub const GICR_STRIDE: u64 = 0x2_0000;

/// An address nothing answers at on the Keel guest machine (not RAM, not a device). On QEMU
/// `virt` itself it lies inside the PCIe MMIO window, which reads as all-ones.
pub const HOLE: u64 = 0x2000_0000;

/// Most CPUs a guest runs on: per-CPU stacks and state are sized for this many, indexed by
/// MPIDR_EL1.Aff0. A CPU with a larger Aff0, or a nonzero Aff1..Aff3, parks at boot.
pub const MAX_CPUS: usize = 8;
