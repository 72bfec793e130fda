//! The `hostile` scenario's decisions, separate from their execution: a deterministic xorshift
//! generator and [`Planner`], which turns it into a stream of [`Op`]s — random system-register
//! reads and writes, MMIO accesses to the GIC and to holes, and SMCCC calls with random IDs and
//! arguments. Pure and arch-neutral, so the safety rules are unit-tested on the host:
//!
//! - MMIO never touches the UART (the guest's console), RAM, or QEMU-`virt` devices that DMA
//!   into RAM (fw_cfg, the ITS); GIC redistributor writes skip the LPI registers, which would
//!   make an LPI-capable GIC write pending bits to wherever a random PENDBASER points;
//! - every access is aligned to its size (an unaligned Device access would only test the guest);
//! - no call from [`smccc::changes_power_state`] is ever made; a denied ID becomes PSCI_VERSION.

use crate::machine::{GICD_BASE, GICD_SIZE, GICR_BASE, GICR_STRIDE, HOLE, UART_BASE, UART_SIZE};
use crate::smccc;
use crate::sysreg_space::{READ_COUNT, WRITE_COUNT};

/// xorshift64: a fixed seed gives the same run every time.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator; a zero seed (which would stay zero) is replaced.
    pub fn new(seed: u64) -> Self {
        XorShift64(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..bound` (`bound` > 0; the slight modulo bias does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Bytes moved by one MMIO access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// `ldrb`/`strb`.
    B8,
    /// `ldrh`/`strh`.
    B16,
    /// `ldr w`/`str w`.
    B32,
    /// `ldr x`/`str x`.
    B64,
}

impl Width {
    /// Size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            Width::B8 => 1,
            Width::B16 => 2,
            Width::B32 => 4,
            Width::B64 => 8,
        }
    }
}

/// Which kind of conduit an SMCCC call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0`.
    Hvc,
    /// `smc #0` (trapped by the hypervisor, or UNDEF without EL3).
    Smc,
}

/// One hostile operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Run read stub `index` (see `sysreg_space::read_encoding`).
    SysRead { index: usize },
    /// Run write stub `index` with `value` in x0.
    SysWrite { index: usize, value: u64 },
    /// Load from `addr`.
    MmioRead { addr: u64, width: Width },
    /// Store `value` (truncated to the width) to `addr`.
    MmioWrite { addr: u64, width: Width, value: u64 },
    /// An SMCCC call.
    Call {
        conduit: Conduit,
        id: u32,
        args: [u64; 3],
    },
}

/// A physical range the fuzzer may access: `[base, base + size)`.
#[derive(Debug, Clone, Copy)]
struct Window {
    base: u64,
    size: u64,
    /// Offsets (within each `stride`-sized frame) where writes are turned into reads.
    no_write: Option<(u64, u64, u64)>,
}

/// Turns random bits into [`Op`]s.
#[derive(Debug, Clone)]
pub struct Planner {
    rng: XorShift64,
    windows: [Window; 6],
}

/// Redistributor RD_base offsets 0x40..0x100: SETLPIR, CLRLPIR, PROPBASER, PENDBASER, INVLPIR,
/// INVALLR, SYNCR.
const GICR_LPI_REGS: (u64, u64) = (0x40, 0x100);

impl Planner {
    /// A planner for a guest with `cpus` vCPUs whose RAM ends at `ram_end`.
    pub fn new(seed: u64, cpus: usize, ram_end: u64) -> Self {
        let redists = (cpus as u64 + 2) * GICR_STRIDE; // two frames past the last vCPU: a hole
        Planner {
            rng: XorShift64::new(seed),
            windows: [
                Window {
                    base: GICD_BASE,
                    size: GICD_SIZE,
                    no_write: None,
                },
                Window {
                    base: GICR_BASE,
                    size: redists,
                    no_write: Some((GICR_STRIDE, GICR_LPI_REGS.0, GICR_LPI_REGS.1)),
                },
                // Flash on QEMU virt, nothing on the Keel guest machine.
                Window {
                    base: 0,
                    size: 0x0800_0000,
                    no_write: None,
                },
                // Between the GICD and QEMU's ITS (0x0808_0000): a hole on both.
                Window {
                    base: GICD_BASE + GICD_SIZE,
                    size: 0x0007_0000,
                    no_write: None,
                },
                Window {
                    base: HOLE,
                    size: 0x0100_0000,
                    no_write: None,
                },
                Window {
                    base: ram_end,
                    size: 0x0100_0000,
                    no_write: None,
                },
            ],
        }
    }

    /// The next operation.
    pub fn next(&mut self) -> Op {
        let pick = self.rng.below(100);
        match pick {
            0..40 => Op::SysRead {
                index: self.rng.below(READ_COUNT as u64) as usize,
            },
            40..50 => Op::SysWrite {
                index: self.rng.below(WRITE_COUNT as u64) as usize,
                value: self.rng.next(),
            },
            50..75 => self.mmio(),
            75..95 => self.call(Conduit::Hvc),
            _ => self.call(Conduit::Smc),
        }
    }

    fn mmio(&mut self) -> Op {
        let window = self.windows[self.rng.below(self.windows.len() as u64) as usize];
        let width = match self.rng.below(4) {
            0 => Width::B8,
            1 => Width::B16,
            2 => Width::B32,
            _ => Width::B64,
        };
        let offset = self.rng.below(window.size) & !(width.bytes() - 1);
        let addr = window.base + offset;
        debug_assert!(
            !touches_uart(addr, width.bytes()),
            "hostile MMIO never touches the console"
        );
        let mut write = self.rng.below(2) == 0;
        if let Some((stride, lo, hi)) = window.no_write {
            let in_frame = offset % stride;
            if (lo..hi).contains(&in_frame) {
                write = false;
            }
        }
        if write {
            Op::MmioWrite {
                addr,
                width,
                value: self.rng.next(),
            }
        } else {
            Op::MmioRead { addr, width }
        }
    }

    fn call(&mut self, conduit: Conduit) -> Op {
        let r = self.rng.next();
        let low = (r >> 8) as u32;
        let id = match r % 64 {
            0 => 0xC600_0000 | (low & 0xff), // Keel vendor range: reaches the VM monitor
            1 => 0x8600_0000 | (low & 0xff),
            2..=20 => 0x8400_0000 | (low & 0x1f), // PSCI, SMC32
            21..=30 => 0xC400_0000 | (low & 0x1f), // PSCI, SMC64
            31..=40 => 0x8000_0000 | (low & 0xffff), // SMCCC architecture calls
            41..=45 => 0xC500_0000 | (low & 0xff), // standard hypervisor services
            _ => low,                             // anything at all
        };
        let id = if smccc::changes_power_state(id) {
            smccc::PSCI_VERSION
        } else {
            id
        };
        Op::Call {
            conduit,
            id,
            args: [self.rng.next(), self.rng.next(), self.rng.next()],
        }
    }
}

/// Whether `addr..addr + len` overlaps the guest's console.
pub fn touches_uart(addr: u64, len: u64) -> bool {
    addr < UART_BASE + UART_SIZE && UART_BASE < addr.saturating_add(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::RAM_BASE;

    const RAM_END: u64 = RAM_BASE + 0x0800_0000;

    #[test]
    fn same_seed_same_run() {
        let mut a = Planner::new(7, 4, RAM_END);
        let mut b = Planner::new(7, 4, RAM_END);
        for _ in 0..1000 {
            assert_eq!(a.next(), b.next());
        }
    }

    #[test]
    fn operations_respect_the_safety_rules() {
        let mut planner = Planner::new(0x4b45_454c, 4, RAM_END);
        let mut kinds = [0usize; 5];
        for _ in 0..200_000 {
            let op = planner.next();
            match op {
                Op::SysRead { index } => {
                    assert!(index < READ_COUNT);
                    kinds[0] += 1;
                }
                Op::SysWrite { index, .. } => {
                    assert!(index < WRITE_COUNT);
                    kinds[1] += 1;
                }
                Op::MmioRead { addr, width } | Op::MmioWrite { addr, width, .. } => {
                    assert_eq!(addr % width.bytes(), 0, "{addr:#x} unaligned");
                    assert!(
                        !touches_uart(addr, width.bytes()),
                        "{addr:#x} hits the UART"
                    );
                    assert!(
                        !(RAM_BASE..RAM_END).contains(&addr),
                        "{addr:#x} is guest RAM"
                    );
                    assert!(
                        !(0x0808_0000..GICR_BASE).contains(&addr),
                        "{addr:#x} is QEMU's ITS"
                    );
                    assert!(
                        !(0x0901_0000..0x0a00_0000).contains(&addr),
                        "{addr:#x} is a QEMU device"
                    );
                    let is_write = matches!(op, Op::MmioWrite { .. });
                    if is_write && (GICR_BASE..GICR_BASE + 6 * GICR_STRIDE).contains(&addr) {
                        let in_frame = (addr - GICR_BASE) % GICR_STRIDE;
                        assert!(
                            !(0x40..0x100).contains(&in_frame),
                            "LPI register write at {addr:#x}"
                        );
                    }
                    kinds[if is_write { 3 } else { 2 }] += 1;
                }
                Op::Call { id, .. } => {
                    assert!(
                        !smccc::changes_power_state(id),
                        "{id:#x} changes power state"
                    );
                    kinds[4] += 1;
                }
            }
        }
        assert!(
            kinds.iter().all(|&n| n > 1000),
            "every kind occurs: {kinds:?}"
        );
    }

    #[test]
    fn uart_overlap_check() {
        assert!(touches_uart(UART_BASE, 1));
        assert!(touches_uart(UART_BASE - 4, 8));
        assert!(!touches_uart(UART_BASE + UART_SIZE, 8));
        assert!(!touches_uart(UART_BASE - 8, 8));
    }
}
