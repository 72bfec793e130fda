//! [`Kicks`]: the set of vCPUs an operation on the vGIC wants the kernel to wake or to force
//! out of the guest, so that their next `flush` sees the change.

use core::ops::{BitOr, BitOrAssign};

use super::MAX_VCPUS;

/// A set of vCPU indices below [`MAX_VCPUS`]. A vCPU is in it when something became
/// deliverable to it, or when an interrupt held in its list registers changed: the kernel wakes
/// it if it waits in WFI, or IPIs its physical CPU if it is running a guest, so that it exits,
/// `sync`s and `flush`es. A kick may be spurious (harmless); a needed one is never missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kicks(u8);

// A `Kicks` is one byte.
const _: () = assert!(MAX_VCPUS <= 8);

impl Kicks {
    /// No vCPU.
    pub const NONE: Kicks = Kicks(0);

    /// The set whose bit `i` says whether vCPU `i` is in it.
    pub const fn from_bits(bits: u8) -> Kicks {
        Kicks(bits)
    }

    /// Bit `i` says whether vCPU `i` is in the set.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// No vCPU is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// vCPU `vcpu` is in the set.
    pub const fn contains(self, vcpu: usize) -> bool {
        vcpu < MAX_VCPUS && self.0 & (1 << vcpu) != 0
    }

    /// The vCPUs in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_VCPUS).filter(move |&v| self.contains(v))
    }

    /// Adds `vcpu` (ignored if `vcpu >= MAX_VCPUS`).
    pub(super) fn add(&mut self, vcpu: usize) {
        if vcpu < MAX_VCPUS {
            self.0 |= 1 << vcpu;
        }
    }
}

impl BitOr for Kicks {
    type Output = Kicks;
    fn bitor(self, rhs: Kicks) -> Kicks {
        Kicks(self.0 | rhs.0)
    }
}

impl BitOrAssign for Kicks {
    fn bitor_assign(&mut self, rhs: Kicks) {
        self.0 |= rhs.0;
    }
}
