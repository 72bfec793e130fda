//! The register layout of an IPC message.
//!
//! A message is a label and four data words, plus up to [`MAX_CAPS`] capabilities:
//!
//! | reg | call / reply (in)            | recv / call result (out)              |
//! |-----|------------------------------|---------------------------------------|
//! | x0  | connection slot              | status (0 or negative error)          |
//! | x1  | label                        | label                                 |
//! | x2..x5 | data words                | data words                            |
//! | x6  | —                            | badge of the caller's capability (recv) |
//! | x7  | caps to send ([`CapList`])   | slots of the received caps ([`CapList`]) |
//!
//! Bulk data travels through a shared memory object set up by the user-space protocol.

use crate::Slot;

/// Data words in a message (besides the label).
pub const DATA_WORDS: usize = 4;
/// Capabilities one message may carry.
pub const MAX_CAPS: usize = 4;
/// A [`CapList`] entry meaning "none".
pub const CAP_NONE: u16 = 0xFFFF;

/// A message's label and data words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub label: u64,
    pub data: [u64; DATA_WORDS],
}

impl Message {
    pub const fn new(label: u64, data: [u64; DATA_WORDS]) -> Self {
        Self { label, data }
    }
}

/// Up to four capability slots packed into one register, 16 bits each; [`CAP_NONE`] marks unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapList(pub u64);

impl CapList {
    pub const EMPTY: CapList = CapList(u64::MAX);

    /// Packs up to [`MAX_CAPS`] slots; None if there are more, or a slot does not fit in 16 bits.
    pub fn from_slots(slots: &[Slot]) -> Option<Self> {
        if slots.len() > MAX_CAPS {
            return None;
        }
        let mut v = u64::MAX;
        for (i, &s) in slots.iter().enumerate() {
            if s >= u32::from(CAP_NONE) {
                return None;
            }
            v &= !(0xFFFF << (16 * i));
            v |= u64::from(s) << (16 * i);
        }
        Some(Self(v))
    }

    /// The slots in order, skipping empty entries.
    pub fn slots(self) -> impl Iterator<Item = Slot> {
        (0..MAX_CAPS).filter_map(move |i| {
            let s = ((self.0 >> (16 * i)) & 0xFFFF) as u16;
            (s != CAP_NONE).then_some(Slot::from(s))
        })
    }

    pub fn len(self) -> usize {
        self.slots().count()
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_lists_pack_and_unpack_in_order() {
        let l = CapList::from_slots(&[3, 0, 4095]).unwrap();
        assert_eq!(l.slots().collect::<Vec<_>>(), vec![3, 0, 4095]);
        assert_eq!(l.len(), 3);
        assert!(CapList::EMPTY.is_empty());
        assert_eq!(CapList::from_slots(&[]).unwrap(), CapList::EMPTY);
    }

    #[test]
    fn too_many_or_too_large_slots_are_refused() {
        assert_eq!(CapList::from_slots(&[1, 2, 3, 4, 5]), None);
        assert_eq!(CapList::from_slots(&[0xFFFF]), None);
        assert_eq!(CapList::from_slots(&[0x1_0000]), None);
    }
}
