//! `Segments`: the loadable segments of one executable, held inline so that parsing an ELF file
//! needs no heap (the kernel loads `init` this way).
//!
//! Invariant: `len <= MAX_SEGMENTS`, and slots `0..len` are the segments in program-header order.
//! Only the ELF parser adds to it; everyone else sees a read-only `&[Segment]` through `Deref`.

use core::fmt;
use core::ops::Deref;

use super::{MAX_SEGMENTS, Segment};

/// Up to [`MAX_SEGMENTS`] segments, stored inline; dereferences to `&[Segment]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    slots: [Segment; MAX_SEGMENTS],
    len: usize,
}

impl Segments {
    pub(super) const fn new() -> Self {
        Self {
            slots: [Segment::EMPTY; MAX_SEGMENTS],
            len: 0,
        }
    }

    /// Appends `segment`, or gives it back when all slots are taken.
    pub(super) fn push(&mut self, segment: Segment) -> Result<(), Segment> {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                *slot = segment;
                self.len += 1;
                Ok(())
            }
            None => Err(segment),
        }
    }
}

impl Deref for Segments {
    type Target = [Segment];

    fn deref(&self) -> &[Segment] {
        self.slots.get(..self.len).unwrap_or(&[])
    }
}

impl fmt::Debug for Segments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
