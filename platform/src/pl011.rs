//! ARM PL011 UART: register map and a polled/interrupt-driven byte driver.
//!
//! Owns nothing but the register block it is given. The base address (from the DTB, mapped by
//! the kernel as Device memory) is the only unsafe step. Never blocks except while the TX FIFO
//! is full.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! [u32,
    FR [
        TXFE OFFSET(7) NUMBITS(1) [],
        RXFF OFFSET(6) NUMBITS(1) [],
        TXFF OFFSET(5) NUMBITS(1) [],
        RXFE OFFSET(4) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    LCR_H [
        WLEN OFFSET(5) NUMBITS(2) [ Bits8 = 3 ],
        FEN OFFSET(4) NUMBITS(1) []
    ],
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    INT [
        OE OFFSET(10) NUMBITS(1) [],
        RT OFFSET(6) NUMBITS(1) [],
        TX OFFSET(5) NUMBITS(1) [],
        RX OFFSET(4) NUMBITS(1) []
    ]
];

register_structs! {
    /// PL011 registers (ARM DDI 0183).
    pub Pl011Registers {
        (0x000 => dr: ReadWrite<u32>),
        (0x004 => rsr: ReadWrite<u32>),
        (0x008 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x024 => ibrd: ReadWrite<u32>),
        (0x028 => fbrd: ReadWrite<u32>),
        (0x02c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x030 => cr: ReadWrite<u32, CR::Register>),
        (0x034 => ifls: ReadWrite<u32>),
        (0x038 => imsc: ReadWrite<u32, INT::Register>),
        (0x03c => ris: ReadOnly<u32, INT::Register>),
        (0x040 => mis: ReadOnly<u32, INT::Register>),
        (0x044 => icr: WriteOnly<u32, INT::Register>),
        (0x048 => @END),
    }
}

/// A PL011 at a mapped address.
pub struct Pl011 {
    regs: &'static Pl011Registers,
}

// SAFETY: the registers are MMIO reachable from every CPU; `Pl011` has no CPU-local state, and
// whoever shares it serialises access (the kernel keeps it behind a lock).
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must be the virtual address of a PL011 register block mapped as Device memory for
    /// the rest of the kernel's life, and no other code may program the UART's control registers.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees `base` maps a live PL011 register block.
        Self { regs: unsafe { &*(base as *const Pl011Registers) } }
    }

    /// Enables transmit and receive, keeping the line settings (baud, word length, FIFOs) that
    /// firmware or QEMU set. It does not touch LCR_H: changing LCR_H.FEN flushes the receive FIFO
    /// (QEMU does exactly that), which would lose bytes typed before the kernel started.
    pub fn init(&self) {
        if !self.regs.cr.matches_all(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET) {
            self.regs.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
        }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put_byte(&self, byte: u8) {
        while self.regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs.dr.set(byte as u32);
    }

    /// Sends bytes, turning `\n` into `\r\n` for terminals.
    pub fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put_byte(b'\r');
            }
            self.put_byte(b);
        }
    }

    /// One received byte, if the receive FIFO holds any.
    pub fn get_byte(&self) -> Option<u8> {
        if self.regs.fr.is_set(FR::RXFE) {
            None
        } else {
            Some(self.regs.dr.get() as u8)
        }
    }

    /// Raise the UART interrupt when bytes arrive (receive and receive-timeout interrupts).
    pub fn enable_rx_interrupt(&self) {
        self.regs.imsc.write(INT::RX::SET + INT::RT::SET);
    }

    /// Acknowledges the receive interrupts (after the FIFO has been drained).
    pub fn ack_rx_interrupt(&self) {
        self.regs.icr.write(INT::RX::SET + INT::RT::SET + INT::OE::SET);
    }
}
