//! The `ICH_LR<n>_EL2` list-register format, the buffer through which the arch layer exchanges
//! list-register values with the model ([`LrFile`]), and the model's own record of what it put
//! in each list register ([`LrBook`]).
//!
//! This module never touches a system register: the arch layer copies values between
//! [`LrFile`] and the hardware, following the protocol in the [`super`] module docs.
//!
//! Invariants:
//! - an [`LrFile`] has between 1 and [`MAX_LIST_REGS`] list registers, and only indices below
//!   its count are ever live or dirty;
//! - in an [`LrBook`], bit `n` of `live` set means list register `n` holds interrupt
//!   `intid[n]` and `written[n]` is the value the hardware held at the last guest entry (or
//!   read back at the last exit).

use super::Kicks;

/// Most list registers a CPU can have (ICH_VTR_EL2.ListRegs is 4 bits).
pub const MAX_LIST_REGS: usize = 16;

const STATE_SHIFT: u32 = 62;
const HW_BIT: u64 = 1 << 61;
const GROUP_BIT: u64 = 1 << 60;
const PRIORITY_SHIFT: u32 = 48;
const EOI_BIT: u64 = 1 << 41;
const PINTID_SHIFT: u32 = 32;
const PINTID_MASK: u64 = 0x1FFF;

/// The State field of a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    /// 0b00: the list register holds nothing.
    Invalid,
    /// 0b01: pending, not yet acknowledged by the guest.
    Pending,
    /// 0b10: acknowledged, not yet deactivated.
    Active,
    /// 0b11: active, and pending again (edge-triggered interrupts only, in this model).
    PendingActive,
}

impl LrState {
    /// The state with the given pending and active bits.
    pub const fn new(pending: bool, active: bool) -> LrState {
        match (pending, active) {
            (false, false) => LrState::Invalid,
            (true, false) => LrState::Pending,
            (false, true) => LrState::Active,
            (true, true) => LrState::PendingActive,
        }
    }

    /// The State field of a raw `ICH_LR<n>_EL2` value.
    pub const fn of(raw: u64) -> LrState {
        match raw >> STATE_SHIFT {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }

    /// The state includes pending.
    pub const fn is_pending(self) -> bool {
        matches!(self, LrState::Pending | LrState::PendingActive)
    }

    /// The state includes active.
    pub const fn is_active(self) -> bool {
        matches!(self, LrState::Active | LrState::PendingActive)
    }

    const fn bits(self) -> u64 {
        match self {
            LrState::Invalid => 0,
            LrState::Pending => 1,
            LrState::Active => 2,
            LrState::PendingActive => 3,
        }
    }
}

/// One `ICH_LR<n>_EL2` value, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListReg {
    /// vINTID \[31:0\]: the INTID the guest sees.
    pub vintid: u32,
    /// pINTID \[44:32\]: the physical INTID to deactivate with it (only when `hw`).
    pub pintid: u16,
    /// EOI bit 41 (only when not `hw`): a maintenance interrupt when the guest deactivates it.
    pub eoi_maintenance: bool,
    /// Priority \[55:48\].
    pub priority: u8,
    /// Group bit 60: true = Group 1.
    pub group1: bool,
    /// HW bit 61: backed by a physical interrupt.
    pub hw: bool,
    /// State \[63:62\].
    pub state: LrState,
}

impl ListReg {
    /// The `ICH_LR<n>_EL2` value. `pintid` is encoded only with `hw`, `eoi_maintenance` only
    /// without (they share bits in the architecture).
    pub const fn encode(&self) -> u64 {
        let mut raw = self.vintid as u64 | (self.priority as u64) << PRIORITY_SHIFT | self.state.bits() << STATE_SHIFT;
        if self.group1 {
            raw |= GROUP_BIT;
        }
        if self.hw {
            raw |= HW_BIT | (self.pintid as u64 & PINTID_MASK) << PINTID_SHIFT;
        } else if self.eoi_maintenance {
            raw |= EOI_BIT;
        }
        raw
    }

    /// Decodes an `ICH_LR<n>_EL2` value (any 64-bit value decodes; RES0 bits are ignored).
    pub const fn decode(raw: u64) -> ListReg {
        let hw = raw & HW_BIT != 0;
        ListReg {
            vintid: raw as u32,
            pintid: if hw { ((raw >> PINTID_SHIFT) & PINTID_MASK) as u16 } else { 0 },
            eoi_maintenance: !hw && raw & EOI_BIT != 0,
            priority: (raw >> PRIORITY_SHIFT) as u8,
            group1: raw & GROUP_BIT != 0,
            hw,
            state: LrState::of(raw),
        }
    }
}

/// Bit `n` of `mask`, for each set bit, lowest first.
pub(super) fn bits(mask: u16) -> impl Iterator<Item = usize> {
    super::bits64(u64::from(mask))
}

/// The list registers of one vCPU as exchanged with the arch layer. The kernel keeps one per
/// vCPU for the vCPU's whole life and passes it to every `flush` and `sync` of that vCPU; the
/// protocol is in the [`super`] module docs.
#[derive(Clone, Debug)]
pub struct LrFile {
    count: usize,
    values: [u64; MAX_LIST_REGS],
    live: u16,
    dirty: u16,
    /// List registers that may hold a nonzero value in the hardware: those live at the last
    /// write. Zero after [`LrFile::hardware_cleared`] (a vCPU load: every put zeroes them all).
    hardware: u16,
    /// Set by `flush`: more interrupts are deliverable than fit in the list registers, so the
    /// arch layer sets ICH_HCR_EL2.UIE to make the guest exit when they drain.
    pub underflow: bool,
}

impl LrFile {
    /// A file for a CPU with `count` list registers (ICH_VTR_EL2.ListRegs + 1, so 1 to
    /// [`MAX_LIST_REGS`]; other values are clamped into that range), all invalid.
    pub fn new(count: usize) -> LrFile {
        LrFile { count: count.clamp(1, MAX_LIST_REGS), values: [0; MAX_LIST_REGS], live: 0, dirty: 0, hardware: 0, underflow: false }
    }

    /// Number of hardware list registers.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The value of list register `n` (0, i.e. invalid, for `n >= count`).
    pub fn value(&self, n: usize) -> u64 {
        if n < self.count { self.values[n] } else { 0 }
    }

    /// All `count` values, for writing to `ICH_LR<n>_EL2` before an entry.
    pub fn values(&self) -> &[u64] {
        &self.values[..self.count]
    }

    /// All `count` values, for reading `ICH_LR<n>_EL2` back after an exit. Only the state of
    /// list registers the model put something in ([`LrFile::live`]) is looked at.
    pub fn values_mut(&mut self) -> &mut [u64] {
        &mut self.values[..self.count]
    }

    /// Bit `n`: list register `n` may hold a valid interrupt, so it must be written before an
    /// entry and read back after the exit.
    pub fn live(&self) -> u16 {
        self.live
    }

    /// Some list register may hold a valid interrupt: the hardware list registers must be
    /// written before the entry and read back after the exit.
    pub fn in_use(&self) -> bool {
        self.live != 0
    }

    /// The last `flush` changed some list register (perhaps emptied it), so the hardware list
    /// registers must be written before the entry even if none is [`in_use`](Self::in_use).
    pub fn was_in_use(&self) -> bool {
        self.dirty != 0
    }

    /// Records the value read from `ICH_LR<n>_EL2` after a guest exit (ignored for
    /// `n >= count`); the same as writing `values_mut()[n]`.
    pub fn store_from_hardware(&mut self, n: usize, value: u64) {
        if n < self.count {
            self.values[n] = value;
        }
    }

    /// The hardware list registers are all zero (the vCPU is being loaded on a CPU).
    pub fn hardware_cleared(&mut self) {
        self.hardware = 0;
    }

    /// Before an entry, after `flush`: the list registers to write (the live ones, and those
    /// that were live at the last write and must now be cleared), with every non-live value in
    /// the file zeroed. A released list register still holds its last value; written back as
    /// is, an invalid entry with the EOI bit set would raise an EOI maintenance interrupt
    /// forever.
    pub fn to_write(&mut self) -> u16 {
        let live = self.live;
        for (i, value) in self.values[..self.count].iter_mut().enumerate() {
            if live & (1 << i) == 0 {
                *value = 0;
            }
        }
        let mask = live | self.hardware;
        self.hardware = live;
        mask
    }

    /// The list registers the last `flush` changed (bit `n` = list register `n`), and clears
    /// the set. When the physical CPU's list registers still hold this vCPU's values from its
    /// last run, writing just these is enough.
    pub fn take_dirty(&mut self) -> u16 {
        core::mem::take(&mut self.dirty)
    }

    /// The model puts `value` in list register `n` (ignored for `n >= count`).
    pub(super) fn put(&mut self, n: usize, value: u64) {
        if n < self.count {
            self.values[n] = value;
            self.dirty |= 1 << n;
        }
    }

    /// A `flush` starts: nothing changed by it yet.
    pub(super) fn begin_flush(&mut self) {
        self.dirty = 0;
    }

    pub(super) fn set_live(&mut self, live: u16) {
        self.live = live;
    }
}

/// The model's record of one vCPU's list registers: what it put where, and the value the
/// hardware held at the last entry (or exit), against which `sync` detects what the guest did.
#[derive(Clone, Debug)]
pub(super) struct LrBook {
    /// INTID held by each live list register.
    pub intid: [u32; MAX_LIST_REGS],
    /// Value of each live list register as the hardware last held it.
    pub written: [u64; MAX_LIST_REGS],
    /// Bit `n`: list register `n` holds an interrupt.
    pub live: u16,
    /// Something that may change this vCPU's list registers happened since the last `flush`.
    pub needs_flush: bool,
}

impl LrBook {
    pub const fn new() -> LrBook {
        LrBook { intid: [0; MAX_LIST_REGS], written: [0; MAX_LIST_REGS], live: 0, needs_flush: true }
    }
}

/// What `sync` found when it read the list registers back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    deactivated: [u32; MAX_LIST_REGS],
    deactivated_count: usize,
    kicks: Kicks,
}

impl SyncReport {
    /// Level-sensitive interrupts the guest deactivated since the last entry (e.g. PPI 27,
    /// the virtual timer: the kernel may unmask the physical timer again).
    pub fn deactivated_level(&self) -> &[u32] {
        &self.deactivated[..self.deactivated_count]
    }

    /// Whether the guest deactivated level-sensitive interrupt `intid`.
    pub fn deactivated(&self, intid: u32) -> bool {
        self.deactivated_level().contains(&intid)
    }

    /// Other vCPUs that now have something deliverable (an SPI routed to them was held in this
    /// vCPU's list registers until now).
    pub fn kicks(&self) -> Kicks {
        self.kicks
    }

    pub(super) fn note_deactivated(&mut self, intid: u32) {
        if self.deactivated_count < MAX_LIST_REGS {
            self.deactivated[self.deactivated_count] = intid;
            self.deactivated_count += 1;
        }
    }

    pub(super) fn note_kick(&mut self, vcpu: usize) {
        self.kicks.add(vcpu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let lr = ListReg {
            vintid: 33,
            pintid: 0,
            eoi_maintenance: true,
            priority: 0xA0,
            group1: true,
            hw: false,
            state: LrState::Pending,
        };
        let raw = lr.encode();
        assert_eq!(raw, 1 << 62 | 1 << 60 | 0xA0 << 48 | 1 << 41 | 33);
        assert_eq!(ListReg::decode(raw), lr);

        let hw = ListReg { pintid: 0x1ABC, hw: true, eoi_maintenance: false, state: LrState::PendingActive, ..lr };
        let raw = hw.encode();
        assert_eq!(raw >> 62, 3);
        assert_eq!(raw & HW_BIT, HW_BIT);
        assert_eq!(ListReg::decode(raw), hw);
    }

    #[test]
    fn state_field() {
        for (p, a) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = LrState::new(p, a);
            assert_eq!((s.is_pending(), s.is_active()), (p, a));
            assert_eq!(LrState::of(s.bits() << 62), s);
        }
    }

    #[test]
    fn lr_file_bounds() {
        assert_eq!(LrFile::new(0).count(), 1);
        assert_eq!(LrFile::new(17).count(), MAX_LIST_REGS);
        let mut f = LrFile::new(4);
        assert_eq!(f.values().len(), 4);
        f.put(5, 7);
        f.store_from_hardware(9, 7);
        assert_eq!(f.value(5), 0);
        assert_eq!(f.take_dirty(), 0);
        f.put(3, 7);
        assert!(f.was_in_use());
        assert_eq!(f.take_dirty(), 1 << 3);
        assert_eq!(f.take_dirty(), 0);
        assert!(!f.was_in_use());
    }
}
