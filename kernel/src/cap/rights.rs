//! Capability rights: what the holder of a cap may do with the object behind it.
//!
//! [`Rights`] is a set of eleven bits. It only ever shrinks along a derivation: a copy holds a subset
//! of its source's rights (the capability space refuses, rather than silently drops, a request for
//! more). Bits outside [`Rights::ALL`] never appear in a `Rights` value: [`Rights::from_bits`]
//! rejects them and every operation here is closed over the known bits.

use core::fmt;
use core::ops::{BitAnd, BitOr, Sub};

/// A set of capability rights.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(u32);

impl Rights {
    /// No rights at all.
    pub const NONE: Rights = Rights(0);
    /// Read the object's contents or state.
    pub const READ: Rights = Rights(1 << 0);
    /// Write the object's contents or state.
    pub const WRITE: Rights = Rights(1 << 1);
    /// Execute from the object (a Pmo mapped executable).
    pub const EXEC: Rights = Rights(1 << 2);
    /// Map the object into an address space.
    pub const MAP: Rights = Rights(1 << 3);
    /// Call through the object (the client side of a Connection).
    pub const CALL: Rights = Rights(1 << 4);
    /// Serve the object (the server side of a Connection).
    pub const SERVE: Rights = Rights(1 << 5);
    /// Signal the object (a Notification, an irq line).
    pub const SIGNAL: Rights = Rights(1 << 6);
    /// Wait on the object (a Notification, an Irq).
    pub const WAIT: Rights = Rights(1 << 7);
    /// Transfer or copy the cap to another process.
    pub const GRANT: Rights = Rights(1 << 8);
    /// Control operations: kill, configure, revoke.
    pub const MANAGE: Rights = Rights(1 << 9);
    /// Charge memory to the object's quota (a process's or a quota's): what a client gives a
    /// service that keeps memory for it (`bill_create`).
    pub const BILL: Rights = Rights(1 << 10);
    /// Every right.
    pub const ALL: Rights = Rights((1 << 11) - 1);

    /// Each right with the letter that stands for it in the compact form, in display order.
    const LETTERS: [(Rights, char); 11] = [
        (Rights::READ, 'r'),
        (Rights::WRITE, 'w'),
        (Rights::EXEC, 'x'),
        (Rights::MAP, 'm'),
        (Rights::CALL, 'c'),
        (Rights::SERVE, 's'),
        (Rights::SIGNAL, 'n'),
        (Rights::WAIT, 'a'),
        (Rights::GRANT, 'g'),
        (Rights::MANAGE, 'M'),
        (Rights::BILL, 'b'),
    ];

    /// The raw bits (the ABI form).
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Decodes raw bits; `None` if any bit outside [`Rights::ALL`] is set.
    pub const fn from_bits(bits: u32) -> Option<Rights> {
        if bits & !Rights::ALL.0 == 0 { Some(Rights(bits)) } else { None }
    }

    /// Whether every right in `other` is also in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether every right in `self` is also in `other`.
    pub const fn is_subset_of(self, other: Rights) -> bool {
        other.contains(self)
    }

    /// The rights in both sets.
    pub const fn intersection(self, other: Rights) -> Rights {
        Rights(self.0 & other.0)
    }

    /// The rights in either set.
    pub const fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    /// The rights in `self` but not in `other`.
    pub const fn difference(self, other: Rights) -> Rights {
        Rights(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Rights {
    type Output = Rights;
    fn bitor(self, rhs: Rights) -> Rights {
        self.union(rhs)
    }
}

impl BitAnd for Rights {
    type Output = Rights;
    fn bitand(self, rhs: Rights) -> Rights {
        self.intersection(rhs)
    }
}

impl Sub for Rights {
    type Output = Rights;
    fn sub(self, rhs: Rights) -> Rights {
        self.difference(rhs)
    }
}

/// The compact form: one position per right in the order
/// READ WRITE EXEC MAP CALL SERVE SIGNAL WAIT GRANT MANAGE, written `rwxmcsnagM` when held and `-`
/// when not. For example `READ | WRITE | MAP | GRANT` is `rw-m----g-`.
impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (right, letter) in Rights::LETTERS {
            let c = if self.contains(right) { letter } else { '-' };
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rights({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_right_is_one_distinct_bit_and_all_is_their_union() {
        let mut union = Rights::NONE;
        for (right, _) in Rights::LETTERS {
            assert_eq!(right.bits().count_ones(), 1, "{right:?}");
            assert!(!union.contains(right), "{right:?} repeated");
            union = union | right;
        }
        assert_eq!(union, Rights::ALL);
    }

    #[test]
    fn set_operations() {
        let rw = Rights::READ | Rights::WRITE;
        assert!(rw.contains(Rights::READ));
        assert!(!rw.contains(Rights::READ | Rights::EXEC));
        assert!(rw.contains(Rights::NONE));
        assert!(Rights::READ.is_subset_of(rw));
        assert!(!rw.is_subset_of(Rights::READ));
        assert!(Rights::NONE.is_subset_of(Rights::NONE));
        assert_eq!(rw.intersection(Rights::WRITE | Rights::MAP), Rights::WRITE);
        assert_eq!(rw & Rights::MAP, Rights::NONE);
        assert!((rw & Rights::MAP).is_empty());
        assert_eq!(Rights::ALL - Rights::GRANT - Rights::MANAGE - Rights::BILL, Rights::from_bits(0xff).unwrap());
    }

    #[test]
    fn from_bits_rejects_unknown_bits() {
        assert_eq!(Rights::from_bits(0), Some(Rights::NONE));
        assert_eq!(Rights::from_bits(Rights::ALL.bits()), Some(Rights::ALL));
        assert_eq!(Rights::from_bits(1 << 11), None);
        assert_eq!(Rights::from_bits(u32::MAX), None);
        assert_eq!(Rights::from_bits(0x3).map(Rights::bits), Some(0x3));
    }

    #[test]
    fn compact_display() {
        use std::string::ToString;
        assert_eq!(Rights::NONE.to_string(), "-----------");
        assert_eq!(Rights::ALL.to_string(), "rwxmcsnagMb");
        assert_eq!((Rights::READ | Rights::WRITE | Rights::MAP | Rights::GRANT).to_string(), "rw-m----g--");
        assert_eq!(format!("{:?}", Rights::CALL | Rights::MANAGE), "Rights(----c----M-)");
    }
}
