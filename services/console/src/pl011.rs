//! The receive side of the ARM PL011 UART (ARM DDI 0183) as the console uses it: the receive
//! FIFO and the receive interrupts. The kernel initialised the UART and writes DR for output, so
//! this never touches CR, LCR_H or the baud-rate registers, and never writes DR.

use keel_rt::mmio;

/// Register offsets.
mod reg {
    pub const DR: u64 = 0x000;
    pub const FR: u64 = 0x018;
    pub const IMSC: u64 = 0x038;
    pub const ICR: u64 = 0x044;
}

/// FR: receive FIFO empty.
const FR_RXFE: u32 = 1 << 4;
/// Interrupt bits (IMSC, ICR): receive, receive timeout, overrun.
const INT_RX: u32 = 1 << 4;
const INT_RT: u32 = 1 << 6;
const INT_OE: u32 = 1 << 10;

/// Most bytes taken in one drain (the FIFO holds 32; this bounds the work between echoes when
/// input floods in).
const MAX_DRAIN: usize = 256;

/// A PL011 whose registers this process mapped at `base`.
pub struct Pl011Rx {
    base: u64,
}

impl Pl011Rx {
    /// `base`: the virtual address of the register block in this process (a device mapping the
    /// console made with `device_pmo` + `vm::map_pmo`).
    pub fn new(base: u64) -> Self {
        Self { base }
    }

    /// Unmasks the receive and receive-timeout interrupts (keeping the others as they are).
    pub fn enable_rx_interrupts(&self) {
        let imsc = mmio::read32(self.base + reg::IMSC);
        mmio::write32(self.base + reg::IMSC, imsc | INT_RX | INT_RT);
    }

    /// Whether the receive FIFO holds a byte.
    pub fn has_input(&self) -> bool {
        mmio::read32(self.base + reg::FR) & FR_RXFE == 0
    }

    /// Clears the receive interrupts. Done before draining, so a byte that arrives during the
    /// drain raises the interrupt again rather than being left unread.
    pub fn clear_rx_interrupts(&self) {
        mmio::write32(self.base + reg::ICR, INT_RX | INT_RT | INT_OE);
    }

    /// Appends up to [`MAX_DRAIN`] bytes from the receive FIFO to `out`; true if the FIFO is
    /// now empty (false: call again).
    pub fn drain(&self, out: &mut alloc::vec::Vec<u8>) -> bool {
        for _ in 0..MAX_DRAIN {
            if mmio::read32(self.base + reg::FR) & FR_RXFE != 0 {
                return true;
            }
            // Bits 8..11 are framing/parity/break/overrun errors: the byte is kept anyway.
            out.push(mmio::read32(self.base + reg::DR) as u8);
        }
        mmio::read32(self.base + reg::FR) & FR_RXFE != 0
    }
}
