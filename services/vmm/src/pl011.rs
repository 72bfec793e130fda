//! An emulated ARM PrimeCell PL011 UART (ARM DDI 0183), enough for Linux's `amba-pl011` driver
//! and its `earlycon`: the data, flag, control and interrupt registers and the AMBA ID registers
//! the bus matches the driver by.
//!
//! It owns the UART's register state, a receive FIFO filled by [`Pl011::push_input`] and a
//! bounded buffer of transmitted bytes drained by [`Pl011::take_output`]. Every guest access goes
//! through [`Pl011::read`] / [`Pl011::write`], which never panic: an access that is not 1, 2 or
//! 4 bytes at a 4-byte-aligned offset, or that hits no register, reads as zero and writes are
//! ignored (RAZ/WI). The FIFO and the output buffer are bounded, so a guest cannot make the VMM
//! allocate without limit.
//!
//! Model (what QEMU's `hw/char/pl011.c` does, which Linux is known to work with):
//! - Transmission is instantaneous: FR always shows TXFE, never TXFF or BUSY. Every write to DR
//!   sets TXIS, which stays set until the guest writes it to ICR (Linux unmasks TXIM only while
//!   it has data queued, and writes its first bytes directly, so this never storms). Bytes are
//!   sent even while CR.UARTEN/TXE are clear, as QEMU does, so early consoles that skip the
//!   enable still print.
//! - RXIS and RTIS are levels: set exactly while the receive FIFO holds data, whatever ICR says
//!   (the hardware re-asserts RTIS after a timeout anyway; a level cannot leave the driver
//!   waiting for an edge that never comes).
//! - The receive FIFO holds 16 bytes while LCR_H.FEN is set and 1 byte otherwise; changing FEN
//!   empties it. A byte pushed into a full FIFO is refused (`push_input` returns false, the
//!   caller keeps it), so overrun (OE) never happens. No framing, parity or break errors occur,
//!   so RSR and the DR error bits read zero. Loopback, modem lines and DMA are not emulated
//!   (CR.LBE and DMACR are stored and read back only).
//!   The interrupt line is `(RIS & IMSC) != 0` ([`Pl011::irq_level`]).

use alloc::vec::Vec;

/// The flag register's offset (UARTFR), which the kernel answers for the monitor.
pub const FLAGS_OFFSET: u64 = reg::FR;

/// The data register's offset (UARTDR), whose stores the kernel buffers for the monitor while
/// [`Pl011::transmit_changes_only_output`].
pub const DATA_OFFSET: u64 = reg::DR;

/// Register offsets.
mod reg {
    pub const DR: u64 = 0x000;
    pub const RSR_ECR: u64 = 0x004;
    pub const FR: u64 = 0x018;
    pub const ILPR: u64 = 0x020;
    pub const IBRD: u64 = 0x024;
    pub const FBRD: u64 = 0x028;
    pub const LCR_H: u64 = 0x02C;
    pub const CR: u64 = 0x030;
    pub const IFLS: u64 = 0x034;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03C;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    pub const DMACR: u64 = 0x048;
    /// PeriphID0..3 at 0xFE0..=0xFEC, then PCellID0..3 at 0xFF0..=0xFFC.
    pub const ID_FIRST: u64 = 0xFE0;
}

/// FR bits.
const FR_RXFE: u32 = 1 << 4;
const FR_RXFF: u32 = 1 << 6;
const FR_TXFE: u32 = 1 << 7;

/// Interrupt bits (RIS, MIS, IMSC, ICR).
pub const INT_RX: u32 = 1 << 4;
/// Transmit interrupt.
pub const INT_TX: u32 = 1 << 5;
/// Receive-timeout interrupt.
pub const INT_RT: u32 = 1 << 6;
/// Every implemented interrupt bit (RIMIS..OEIM).
const INT_ALL: u32 = 0x7FF;

/// LCR_H: FIFOs enabled.
const LCR_H_FEN: u32 = 1 << 4;

/// Reset values.
const CR_RESET: u32 = 0x300; // TXE | RXE
const IFLS_RESET: u32 = 0x12; // half full, both directions

/// Register widths.
const IBRD_MASK: u32 = 0xFFFF;
const FBRD_MASK: u32 = 0x3F;
const BYTE_MASK: u32 = 0xFF;
const CR_MASK: u32 = 0xFFFF;
const IFLS_MASK: u32 = 0x3F;
const DMACR_MASK: u32 = 0x7;

/// PeriphID0..3 (part 0x011, designer ARM, revision 1: a 16-byte-FIFO PL011 to Linux) and
/// PCellID0..3.
const ID_REGS: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1];

/// Receive FIFO depth with FIFOs enabled (revision 1 PL011s have 16).
pub const RX_FIFO_DEPTH: usize = 16;

/// Most transmitted bytes held before [`Pl011::take_output`] drains them; more are dropped and
/// counted.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// One emulated PL011.
#[derive(Debug, Clone)]
pub struct Pl011 {
    rx: [u8; RX_FIFO_DEPTH],
    /// Index of the oldest byte in `rx`.
    rx_head: usize,
    /// Bytes in `rx`; at most `rx_depth()`.
    rx_len: usize,
    output: Vec<u8>,
    output_dropped: u64,
    /// Latched interrupt bits (TXIS); RXIS/RTIS are derived from the FIFO.
    latched: u32,
    imsc: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    dmacr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// A UART in its reset state: FIFOs disabled, CR = TXE | RXE, every interrupt masked.
    pub fn new() -> Self {
        Self {
            rx: [0; RX_FIFO_DEPTH],
            rx_head: 0,
            rx_len: 0,
            output: Vec::new(),
            output_dropped: 0,
            latched: 0,
            imsc: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            dmacr: 0,
        }
    }

    /// A guest read of `size` bytes at `offset` into the register window.
    pub fn read(&mut self, offset: u64, size: u8) -> u32 {
        let Some(mask) = access_mask(offset, size) else {
            return 0;
        };
        let value = match offset {
            reg::DR => self.pop_rx().map_or(0, u32::from),
            reg::RSR_ECR => 0,
            reg::FR => self.flags(),
            reg::ILPR => self.ilpr,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::RIS => self.ris(),
            reg::MIS => self.ris() & self.imsc,
            reg::DMACR => self.dmacr,
            _ => id_register(offset).map_or(0, u32::from),
        };
        value & mask
    }

    /// A guest write of `size` bytes of `value` at `offset` into the register window.
    pub fn write(&mut self, offset: u64, size: u8, value: u32) {
        let Some(mask) = access_mask(offset, size) else {
            return;
        };
        let value = value & mask;
        match offset {
            reg::DR => self.transmit(value as u8),
            reg::RSR_ECR => {} // clears errors; none are ever recorded
            reg::ILPR => self.ilpr = value & BYTE_MASK,
            reg::IBRD => self.ibrd = value & IBRD_MASK,
            reg::FBRD => self.fbrd = value & FBRD_MASK,
            reg::LCR_H => {
                if (self.lcr_h ^ value) & LCR_H_FEN != 0 {
                    self.rx_head = 0;
                    self.rx_len = 0;
                }
                self.lcr_h = value & BYTE_MASK;
            }
            reg::CR => self.cr = value & CR_MASK,
            reg::IFLS => self.ifls = value & IFLS_MASK,
            reg::IMSC => self.imsc = value & INT_ALL,
            reg::ICR => self.latched &= !value,
            reg::DMACR => self.dmacr = value & DMACR_MASK,
            _ => {} // FR, RIS, MIS, the ID registers and holes are read-only or unused
        }
    }

    /// Whether the UART's interrupt line is asserted.
    pub fn irq_level(&self) -> bool {
        self.ris() & self.imsc != 0
    }

    /// Queues one received byte for the guest; false (byte not taken) if the FIFO is full.
    pub fn push_input(&mut self, byte: u8) -> bool {
        if self.rx_len >= self.rx_depth() {
            return false;
        }
        let slot = (self.rx_head + self.rx_len) % RX_FIFO_DEPTH;
        self.rx[slot] = byte;
        self.rx_len += 1;
        true
    }

    /// How many more bytes [`Pl011::push_input`] would take now.
    pub fn input_room(&self) -> usize {
        self.rx_depth().saturating_sub(self.rx_len)
    }

    /// Every byte the guest has transmitted since the last call, oldest first.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    /// How many transmitted bytes were dropped because the output buffer was full.
    pub fn output_dropped(&self) -> u64 {
        self.output_dropped
    }

    /// Raw interrupt status: the latched bits plus RXIS/RTIS while the FIFO holds data.
    fn ris(&self) -> u32 {
        let rx = if self.rx_len > 0 { INT_RX | INT_RT } else { 0 };
        self.latched | rx
    }

    /// Whether a store to UARTDR now would change nothing but the output: the transmit
    /// interrupt is latched already or masked, so the line's level stays. (RIS would show the
    /// bit, but a guest's RIS load reaches the monitor, which passes buffered bytes through
    /// first.) While it is, the kernel may buffer such stores.
    pub fn transmit_changes_only_output(&self) -> bool {
        self.latched & INT_TX != 0 || self.imsc & INT_TX == 0
    }

    /// UARTFR as a load reads it now (the kernel answers the guest's loads with this value).
    pub fn flags(&self) -> u32 {
        let mut flags = FR_TXFE;
        if self.rx_len == 0 {
            flags |= FR_RXFE;
        }
        if self.rx_len >= self.rx_depth() {
            flags |= FR_RXFF;
        }
        flags
    }

    fn rx_depth(&self) -> usize {
        if self.lcr_h & LCR_H_FEN != 0 {
            RX_FIFO_DEPTH
        } else {
            1
        }
    }

    fn pop_rx(&mut self) -> Option<u8> {
        if self.rx_len == 0 {
            return None;
        }
        let byte = self.rx.get(self.rx_head).copied();
        self.rx_head = (self.rx_head + 1) % RX_FIFO_DEPTH;
        self.rx_len -= 1;
        byte
    }

    fn transmit(&mut self, byte: u8) {
        if self.output.len() < OUTPUT_LIMIT {
            self.output.push(byte);
        } else {
            self.output_dropped = self.output_dropped.saturating_add(1);
        }
        self.latched |= INT_TX;
    }
}

/// The value mask of a valid access (1, 2 or 4 bytes at a 4-byte-aligned offset), else `None`.
fn access_mask(offset: u64, size: u8) -> Option<u32> {
    if !offset.is_multiple_of(4) {
        return None;
    }
    match size {
        1 => Some(0xFF),
        2 => Some(0xFFFF),
        4 => Some(u32::MAX),
        _ => None,
    }
}

/// PeriphID0..3 / PCellID0..3 at 0xFE0..=0xFFC.
fn id_register(offset: u64) -> Option<u8> {
    let index = offset.checked_sub(reg::ID_FIRST)? / 4;
    ID_REGS.get(usize::try_from(index).ok()?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RXIM: u32 = INT_RX;
    const TXIM: u32 = INT_TX;

    /// A UART set up the way Linux's driver leaves it: FIFOs on, UART/TX/RX enabled.
    fn enabled() -> Pl011 {
        let mut uart = Pl011::new();
        uart.write(reg::LCR_H, 4, 0x70); // 8 bits, FIFO enable
        uart.write(reg::CR, 4, 0x301);
        uart
    }

    #[test]
    fn identifies_as_an_arm_pl011_primecell() {
        let mut uart = Pl011::new();
        let ids: Vec<u32> = (0..8).map(|i| uart.read(0xFE0 + 4 * i, 4)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1]);
        uart.write(0xFE0, 4, 0);
        assert_eq!(uart.read(0xFE0, 4), 0x11, "ID registers are read-only");
    }

    #[test]
    fn reset_state() {
        let mut uart = Pl011::new();
        assert_eq!(uart.read(reg::FR, 4), FR_TXFE | FR_RXFE);
        assert_eq!(uart.read(reg::CR, 4), 0x300);
        assert_eq!(uart.read(reg::IFLS, 4), 0x12);
        assert_eq!(uart.read(reg::RIS, 4), 0);
        assert!(!uart.irq_level());
    }

    #[test]
    fn transmitted_bytes_are_collected_and_set_txis() {
        let mut uart = enabled();
        uart.write(reg::DR, 1, u32::from(b'h'));
        uart.write(reg::DR, 2, 0x0F00 | u32::from(b'i'));
        uart.write(reg::DR, 4, 0xFFFF_FF00 | u32::from(b'!'));
        assert_eq!(uart.take_output(), b"hi!");
        assert_eq!(uart.take_output(), b"");
        assert_eq!(uart.read(reg::RIS, 4) & INT_TX, INT_TX);
        assert_eq!(uart.read(reg::FR, 4) & (FR_TXFE | 1 << 5 | 1 << 3), FR_TXFE);
    }

    #[test]
    fn a_transmit_is_output_only_while_the_tx_interrupt_is_latched_or_masked() {
        let mut uart = enabled();
        assert!(uart.transmit_changes_only_output(), "TXIM masked");
        uart.write(reg::IMSC, 4, TXIM);
        assert!(!uart.transmit_changes_only_output(), "unmasked, not latched: a store raises the line");
        let level = uart.irq_level();
        uart.write(reg::DR, 4, u32::from(b'x'));
        assert!(!level && uart.irq_level());
        assert!(uart.transmit_changes_only_output(), "latched: another store keeps the level");
        uart.write(reg::ICR, 4, INT_TX);
        assert!(!uart.transmit_changes_only_output());
    }

    #[test]
    fn txis_reaches_the_line_only_when_unmasked_and_until_cleared() {
        let mut uart = enabled();
        uart.write(reg::DR, 4, u32::from(b'x'));
        assert!(!uart.irq_level(), "TXIM masked");
        assert_eq!(uart.read(reg::MIS, 4), 0);
        uart.write(reg::IMSC, 4, TXIM);
        assert!(uart.irq_level());
        assert_eq!(uart.read(reg::MIS, 4), INT_TX);
        uart.write(reg::ICR, 4, INT_TX);
        assert!(!uart.irq_level());
        assert_eq!(uart.read(reg::RIS, 4), 0);
        uart.write(reg::DR, 4, u32::from(b'y'));
        assert!(uart.irq_level(), "the next write re-asserts TXIS");
    }

    #[test]
    fn received_bytes_are_read_in_order_and_drive_rxis_and_rtis() {
        let mut uart = enabled();
        uart.write(reg::IMSC, 4, RXIM | INT_RT);
        assert!(uart.push_input(b'a'));
        assert!(uart.push_input(b'b'));
        assert_eq!(uart.read(reg::FR, 4) & FR_RXFE, 0);
        assert_eq!(uart.read(reg::RIS, 4), INT_RX | INT_RT);
        assert!(uart.irq_level());
        // RX/RT are levels: clearing them does not stick while data waits.
        uart.write(reg::ICR, 4, INT_ALL);
        assert!(uart.irq_level());
        assert_eq!(uart.read(reg::DR, 4), u32::from(b'a'));
        assert_eq!(uart.read(reg::DR, 4), u32::from(b'b'));
        assert_eq!(uart.read(reg::FR, 4) & FR_RXFE, FR_RXFE);
        assert!(!uart.irq_level());
        assert_eq!(uart.read(reg::DR, 4), 0, "empty FIFO reads as zero");
    }

    #[test]
    fn imsc_masks_each_source() {
        let mut uart = enabled();
        uart.push_input(b'z');
        uart.write(reg::DR, 4, 0);
        uart.write(reg::IMSC, 4, 0);
        assert!(!uart.irq_level());
        uart.write(reg::IMSC, 4, INT_RT);
        assert!(uart.irq_level());
        assert_eq!(uart.read(reg::MIS, 4), INT_RT);
        uart.write(reg::IMSC, 4, 0xFFFF_FFFF);
        assert_eq!(uart.read(reg::IMSC, 4), INT_ALL);
        assert_eq!(uart.read(reg::MIS, 4), INT_RX | INT_TX | INT_RT);
    }

    #[test]
    fn fifo_full_refuses_input_and_sets_rxff() {
        let mut uart = enabled();
        for i in 0..RX_FIFO_DEPTH {
            assert_eq!(uart.input_room(), RX_FIFO_DEPTH - i);
            assert!(uart.push_input(i as u8));
        }
        assert!(!uart.push_input(0xEE));
        assert_eq!(uart.input_room(), 0);
        assert_eq!(uart.read(reg::FR, 4) & FR_RXFF, FR_RXFF);
        assert_eq!(uart.read(reg::DR, 4), 0);
        assert_eq!(uart.read(reg::FR, 4) & FR_RXFF, 0);
        assert!(uart.push_input(0xAA));
        let rest: Vec<u32> = (0..RX_FIFO_DEPTH).map(|_| uart.read(reg::DR, 4)).collect();
        let mut expected: Vec<u32> = (1..RX_FIFO_DEPTH as u32).collect();
        expected.push(0xAA);
        assert_eq!(rest, expected, "the ring wraps in order");
    }

    #[test]
    fn without_fifo_enable_the_fifo_holds_one_byte() {
        let mut uart = Pl011::new();
        assert!(uart.push_input(1));
        assert!(!uart.push_input(2));
        assert_eq!(uart.read(reg::FR, 4) & FR_RXFF, FR_RXFF);
        uart.write(reg::LCR_H, 4, LCR_H_FEN);
        assert_eq!(
            uart.read(reg::FR, 4) & FR_RXFE,
            FR_RXFE,
            "toggling FEN empties the FIFO"
        );
        assert_eq!(uart.input_room(), RX_FIFO_DEPTH);
    }

    #[test]
    fn control_registers_read_back_masked() {
        let mut uart = Pl011::new();
        let cases = [
            (reg::ILPR, 0xFF),
            (reg::IBRD, IBRD_MASK),
            (reg::FBRD, FBRD_MASK),
            (reg::LCR_H, BYTE_MASK),
            (reg::CR, CR_MASK),
            (reg::IFLS, IFLS_MASK),
            (reg::DMACR, DMACR_MASK),
        ];
        for (offset, mask) in cases {
            uart.write(offset, 4, 0xFFFF_FFFF);
            assert_eq!(uart.read(offset, 4), mask, "offset {offset:#x}");
            uart.write(offset, 2, 0x1234_0001);
            assert_eq!(uart.read(offset, 4), 1, "offset {offset:#x}");
        }
        uart.write(reg::FR, 4, 0);
        assert_eq!(uart.read(reg::FR, 4), FR_TXFE | FR_RXFE, "FR is read-only");
        uart.write(reg::RIS, 4, INT_ALL);
        assert_eq!(uart.read(reg::RIS, 4), 0, "RIS is read-only");
        assert_eq!(uart.read(reg::ICR, 4), 0, "ICR is write-only");
    }

    #[test]
    fn bad_sizes_offsets_are_raz_wi() {
        let mut uart = enabled();
        uart.push_input(b'q');
        for (offset, size) in [
            (reg::DR, 8),
            (reg::DR, 3),
            (reg::DR, 0),
            (1, 1),
            (reg::FR + 2, 2),
        ] {
            assert_eq!(uart.read(offset, size), 0);
            uart.write(offset, size, u32::from(b'w'));
        }
        assert_eq!(uart.take_output(), b"", "no stray transmit");
        assert_eq!(uart.read(reg::DR, 4), u32::from(b'q'), "no stray pop");
        for offset in [
            0x008,
            0x04C,
            0x100,
            0xFDC,
            0x1000,
            0xFFFF_FFFF_FFFF_FFFC,
            u64::MAX,
        ] {
            assert_eq!(uart.read(offset, 4), 0, "offset {offset:#x}");
            uart.write(offset, 4, 0xFFFF_FFFF);
        }
        assert_eq!(
            uart.read(reg::FR, 1),
            FR_TXFE | FR_RXFE,
            "narrow reads are masked"
        );
    }

    #[test]
    fn output_buffer_is_bounded() {
        let mut uart = enabled();
        for _ in 0..OUTPUT_LIMIT + 10 {
            uart.write(reg::DR, 1, u32::from(b'.'));
        }
        assert_eq!(uart.output_dropped(), 10);
        assert_eq!(uart.take_output().len(), OUTPUT_LIMIT);
        uart.write(reg::DR, 1, u32::from(b'+'));
        assert_eq!(uart.take_output(), b"+");
    }

    /// xorshift64: deterministic pseudo-random numbers for the fuzz loop.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_accesses_never_panic_and_keep_invariants() {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        let mut uart = Pl011::new();
        for _ in 0..200_000 {
            let r = xorshift(&mut state);
            let offset = match r % 4 {
                0 => r >> 40,                // anywhere
                1 => ((r >> 8) % 0x50) & !3, // the control registers
                2 => 0xFE0 + ((r >> 8) % 8) * 4,
                _ => (r >> 8) % 0x1000,
            };
            let size = [1, 2, 4, 8, 3, 0][((r >> 32) % 6) as usize];
            match (r >> 36) % 4 {
                0 => {
                    uart.read(offset, size);
                }
                1 => uart.write(offset, size, (r >> 16) as u32),
                2 => {
                    uart.push_input(r as u8);
                }
                _ => {
                    uart.take_output();
                }
            }
            let fr = uart.read(reg::FR, 4);
            assert_eq!(fr & FR_TXFE, FR_TXFE);
            assert_eq!(fr & FR_RXFE != 0, uart.rx_len == 0);
            assert!(uart.rx_len <= uart.rx_depth());
            let mis = uart.read(reg::MIS, 4);
            assert_eq!(uart.irq_level(), mis != 0);
            assert_eq!(mis, uart.read(reg::RIS, 4) & uart.read(reg::IMSC, 4));
            assert!(uart.output.len() <= OUTPUT_LIMIT);
        }
    }
}
