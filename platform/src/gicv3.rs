//! GICv3 distributor and redistributor: register maps and the memory-mapped half of the driver.
//!
//! Owns the GICD and one GICR frame pair per CPU. The CPU interface (ICC_* system registers) is
//! the kernel's `arch` business. Interrupts are configured as Non-secure Group 1 with affinity
//! routing (ARE) enabled; QEMU's virt GIC runs with a single security state (GICD_CTLR.DS=1).

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! [u32,
    GICD_CTLR [
        RWP OFFSET(31) NUMBITS(1) [],
        DS OFFSET(6) NUMBITS(1) [],
        ARE OFFSET(4) NUMBITS(1) [],
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) []
    ],
    GICD_TYPER [
        ITLINES OFFSET(0) NUMBITS(5) []
    ],
    GICR_WAKER [
        CHILDREN_ASLEEP OFFSET(2) NUMBITS(1) [],
        PROCESSOR_SLEEP OFFSET(1) NUMBITS(1) []
    ]
];

register_structs! {
    /// GIC distributor (GICD), 64 KiB.
    pub GicdRegisters {
        (0x0000 => ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => typer: ReadOnly<u32, GICD_TYPER::Register>),
        (0x0008 => iidr: ReadOnly<u32>),
        (0x000c => _reserved0),
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => ispendr: [ReadWrite<u32>; 32]),
        (0x0280 => icpendr: [ReadWrite<u32>; 32]),
        (0x0300 => isactiver: [ReadWrite<u32>; 32]),
        (0x0380 => icactiver: [ReadWrite<u32>; 32]),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x0800 => _reserved1),
        (0x0c00 => icfgr: [ReadWrite<u32>; 64]),
        (0x0d00 => igrpmodr: [ReadWrite<u32>; 32]),
        (0x0d80 => _reserved2),
        (0x6000 => irouter: [ReadWrite<u64>; 1024]),
        (0x8000 => _reserved3),
        (0x10000 => @END),
    }
}

register_structs! {
    /// Redistributor control frame (RD_base), 64 KiB.
    pub GicrRdRegisters {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => iidr: ReadOnly<u32>),
        (0x0008 => typer: ReadOnly<u64>),
        (0x0010 => statusr: ReadWrite<u32>),
        (0x0014 => waker: ReadWrite<u32, GICR_WAKER::Register>),
        (0x0018 => _reserved0),
        (0x10000 => @END),
    }
}

register_structs! {
    /// Redistributor SGI/PPI frame (SGI_base), 64 KiB after RD_base.
    pub GicrSgiRegisters {
        (0x0000 => _reserved0),
        (0x0080 => igroupr0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => isenabler0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => icenabler0: ReadWrite<u32>),
        (0x0184 => _reserved3),
        (0x0200 => ispendr0: ReadWrite<u32>),
        (0x0204 => _reserved4),
        (0x0280 => icpendr0: ReadWrite<u32>),
        (0x0284 => _reserved5),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 32]),
        (0x0420 => _reserved6),
        (0x0c00 => icfgr: [ReadWrite<u32>; 2]),
        (0x0c08 => _reserved7),
        (0x0d00 => igrpmodr0: ReadWrite<u32>),
        (0x0d04 => _reserved8),
        (0x10000 => @END),
    }
}

/// Size of one redistributor (RD_base + SGI_base frames) in a GICv3 without VLPIs.
pub const GICR_FRAME_STRIDE: usize = 0x2_0000;
/// GICR_TYPER.Last: this is the last redistributor of its region.
const GICR_TYPER_LAST: u64 = 1 << 4;
/// The priority Keel gives every interrupt it enables (lower is more urgent; PMR lets all through).
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// How an interrupt is triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Level,
    Edge,
}

/// The distributor.
pub struct Distributor {
    regs: &'static GicdRegisters,
}

// SAFETY: GICD registers are MMIO reachable from every CPU; each method is a sequence of register
// accesses the GIC architecture allows from any CPU (SPI configuration is per-interrupt).
unsafe impl Send for Distributor {}
// SAFETY: as above.
unsafe impl Sync for Distributor {}

impl Distributor {
    /// # Safety
    /// `base` must be the virtual address of the GICD frame, mapped as Device memory for the rest
    /// of the kernel's life; only one `Distributor` may exist.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees `base` maps a live GICD.
        Self { regs: unsafe { &*(base as *const GicdRegisters) } }
    }

    /// Number of interrupt IDs the distributor implements (32 * (ITLinesNumber + 1), at most 1020).
    pub fn num_intids(&self) -> u32 {
        (32 * (self.regs.typer.read(GICD_TYPER::ITLINES) + 1)).min(1020)
    }

    /// Disables and deconfigures every SPI, then turns on affinity routing and Group 1.
    pub fn init(&self) {
        self.regs.ctlr.set(0);
        self.wait_rwp();
        let words = (self.num_intids() / 32) as usize;
        for i in 1..words {
            self.regs.icenabler[i].set(u32::MAX);
            self.regs.icpendr[i].set(u32::MAX);
            self.regs.igroupr[i].set(u32::MAX);
            self.regs.igrpmodr[i].set(0);
        }
        for intid in 32..self.num_intids() as usize {
            self.regs.ipriorityr[intid].set(DEFAULT_PRIORITY);
        }
        self.wait_rwp();
        self.regs.ctlr.write(GICD_CTLR::ARE::SET + GICD_CTLR::ENABLE_GRP1::SET);
        self.wait_rwp();
    }

    fn wait_rwp(&self) {
        while self.regs.ctlr.is_set(GICD_CTLR::RWP) {
            core::hint::spin_loop();
        }
    }

    /// Routes SPI `intid` to the CPU with affinity `mpidr_aff` (Aff3.Aff2.Aff1.Aff0 as in MPIDR) and
    /// enables it. `intid` must be an SPI the distributor implements.
    pub fn enable_spi(&self, intid: u32, trigger: Trigger, mpidr_aff: u64) {
        let i = intid as usize;
        // GICD_IROUTER keeps Aff3 at bits 39:32 and Aff2..Aff0 at 23:0, exactly as MPIDR_EL1 does.
        self.regs.irouter[i].set(mpidr_aff & 0xff_00ff_ffff);
        let cfg = &self.regs.icfgr[i / 16];
        let shift = (i % 16) * 2 + 1;
        let edge = u32::from(trigger == Trigger::Edge);
        cfg.set((cfg.get() & !(1 << shift)) | (edge << shift));
        self.regs.ipriorityr[i].set(DEFAULT_PRIORITY);
        self.regs.isenabler[i / 32].set(1 << (i % 32));
    }

    /// Re-enables SPI `intid` as configured by `enable_spi`.
    pub fn unmask_spi(&self, intid: u32) {
        let i = intid as usize;
        self.regs.isenabler[i / 32].set(1 << (i % 32));
    }

    /// Disables SPI `intid`.
    pub fn disable_spi(&self, intid: u32) {
        let i = intid as usize;
        self.regs.icenabler[i / 32].set(1 << (i % 32));
        self.wait_rwp();
    }
}

/// One CPU's redistributor.
pub struct Redistributor {
    rd: &'static GicrRdRegisters,
    sgi: &'static GicrSgiRegisters,
}

// SAFETY: a redistributor is MMIO reachable from every CPU; the kernel configures another CPU's
// only before that CPU runs, and its own afterwards.
unsafe impl Send for Redistributor {}
// SAFETY: as above.
unsafe impl Sync for Redistributor {}

impl Redistributor {
    /// Finds the redistributor whose GICR_TYPER affinity matches `mpidr` in a region.
    ///
    /// # Safety
    /// `region_base` must be the virtual address of a redistributor region of `region_size` bytes,
    /// mapped as Device memory for the rest of the kernel's life.
    pub unsafe fn find(region_base: usize, region_size: usize, mpidr: u64) -> Option<Self> {
        let want = ((mpidr >> 8) & 0xff00_0000) | (mpidr & 0x00ff_ffff);
        let mut offset = 0;
        while offset + GICR_FRAME_STRIDE <= region_size {
            let base = region_base + offset;
            // SAFETY: `base` lies inside the mapped region (checked above) and frames are 128 KiB apart.
            let rd = unsafe { &*(base as *const GicrRdRegisters) };
            let typer = rd.typer.get();
            if (typer >> 32) == want {
                // SAFETY: the SGI frame is the second 64 KiB of the same redistributor.
                let sgi = unsafe { &*((base + 0x1_0000) as *const GicrSgiRegisters) };
                return Some(Self { rd, sgi });
            }
            if typer & GICR_TYPER_LAST != 0 {
                break;
            }
            offset += GICR_FRAME_STRIDE;
        }
        None
    }

    /// Wakes the redistributor and puts all SGIs/PPIs in Group 1, disabled, at the default priority.
    pub fn init(&self) {
        self.rd.waker.modify(GICR_WAKER::PROCESSOR_SLEEP::CLEAR);
        while self.rd.waker.is_set(GICR_WAKER::CHILDREN_ASLEEP) {
            core::hint::spin_loop();
        }
        self.sgi.icenabler0.set(u32::MAX);
        self.sgi.icpendr0.set(u32::MAX);
        self.sgi.igroupr0.set(u32::MAX);
        self.sgi.igrpmodr0.set(0);
        for p in 0..32 {
            self.sgi.ipriorityr[p].set(DEFAULT_PRIORITY);
        }
    }

    /// Enables SGI or PPI `intid` (0..32) on this CPU.
    pub fn enable_private(&self, intid: u32) {
        self.sgi.isenabler0.set(1 << intid);
    }

    /// Disables SGI or PPI `intid` (0..32) on this CPU.
    pub fn disable_private(&self, intid: u32) {
        self.sgi.icenabler0.set(1 << intid);
    }
}
