//! `BoundedVec`: a vector with a capacity fixed at compile time, for code that runs before (or
//! without) a heap — the DTB parser first of all.
//!
//! It owns an inline array of `N` slots and a length. Invariant: slots `0..len` are initialised
//! and `len <= N`; slots past `len` are never read. It never allocates and never panics on a full
//! vector: [`BoundedVec::push`] hands the value back instead, so the caller turns "too many" into
//! its own error. Only `Copy` element types are allowed, so there is nothing to drop.

use core::fmt;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};

/// A vector of at most `N` `Copy` elements stored inline.
#[derive(Clone, Copy)]
pub struct BoundedVec<T: Copy, const N: usize> {
    slots: [MaybeUninit<T>; N],
    len: usize,
}

impl<T: Copy, const N: usize> BoundedVec<T, N> {
    /// The fixed capacity, `N`.
    pub const CAPACITY: usize = N;

    /// An empty vector.
    pub const fn new() -> Self {
        Self {
            slots: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }

    /// Appends `value`, or gives it back as `Err(value)` when all `N` slots are taken.
    pub fn push(&mut self, value: T) -> Result<(), T> {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                slot.write(value);
                self.len += 1;
                Ok(())
            }
            None => Err(value),
        }
    }

    /// Removes and returns the last element, if any.
    pub fn pop(&mut self) -> Option<T> {
        let last = self.last().copied()?;
        self.len -= 1;
        Some(last)
    }

    /// Forgets every element.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The initialised elements.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: slots `0..len` are initialised (type invariant) and `len <= N`, and
        // `MaybeUninit<T>` has the same layout as `T`.
        unsafe { core::slice::from_raw_parts(self.slots.as_ptr().cast::<T>(), self.len) }
    }

    /// The initialised elements, mutably (for sorting in place, say).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; the `&mut self` borrow makes the slice unique.
        unsafe { core::slice::from_raw_parts_mut(self.slots.as_mut_ptr().cast::<T>(), self.len) }
    }

    /// Number of elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no element is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether all `N` slots are taken.
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Iterates over the elements in insertion order.
    pub fn iter(&self) -> core::slice::Iter<'_, T> {
        self.as_slice().iter()
    }
}

impl<T: Copy, const N: usize> Default for BoundedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy, const N: usize> Deref for BoundedVec<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy, const N: usize> DerefMut for BoundedVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<'v, T: Copy, const N: usize> IntoIterator for &'v BoundedVec<T, N> {
    type Item = &'v T;
    type IntoIter = core::slice::Iter<'v, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Copy + fmt::Debug, const N: usize> fmt::Debug for BoundedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Copy + PartialEq, const N: usize> PartialEq for BoundedVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + Eq, const N: usize> Eq for BoundedVec<T, N> {}

#[cfg(test)]
mod tests {
    use super::BoundedVec;

    #[test]
    fn push_until_full_then_hands_value_back() {
        let mut v: BoundedVec<u32, 3> = BoundedVec::new();
        assert!(v.is_empty());
        assert_eq!(v.push(1), Ok(()));
        assert_eq!(v.push(2), Ok(()));
        assert_eq!(v.push(3), Ok(()));
        assert!(v.is_full());
        assert_eq!(v.push(4), Err(4));
        assert_eq!(v.len(), 3);
        assert_eq!(v.as_slice(), &[1, 2, 3]);
    }

    #[test]
    fn zero_capacity_is_always_full() {
        let mut v: BoundedVec<u8, 0> = BoundedVec::new();
        assert!(v.is_full());
        assert_eq!(v.push(7), Err(7));
        assert!(v.as_slice().is_empty());
    }

    #[test]
    fn pop_and_clear_shrink() {
        let mut v: BoundedVec<u8, 4> = BoundedVec::new();
        v.push(1).unwrap();
        v.push(2).unwrap();
        assert_eq!(v.pop(), Some(2));
        assert_eq!(v.as_slice(), &[1]);
        v.clear();
        assert_eq!(v.pop(), None);
        assert!(v.is_empty());
    }

    #[test]
    fn deref_gives_slice_methods_and_sorting() {
        let mut v: BoundedVec<u16, 8> = BoundedVec::new();
        for x in [5, 3, 9, 1] {
            v.push(x).unwrap();
        }
        assert_eq!(v.first(), Some(&5));
        assert!(v.contains(&9));
        v.sort_unstable();
        assert_eq!(&*v, &[1, 3, 5, 9]);
        assert_eq!(v.iter().sum::<u16>(), 18);
        assert_eq!((&v).into_iter().count(), 4);
    }

    #[test]
    fn copies_are_independent_and_compare_by_contents() {
        let mut a: BoundedVec<u8, 4> = BoundedVec::new();
        a.push(1).unwrap();
        let mut b = a;
        b.push(2).unwrap();
        assert_eq!(a.as_slice(), &[1]);
        assert_eq!(b.as_slice(), &[1, 2]);
        assert_ne!(a, b);
        b.pop();
        assert_eq!(a, b);
        assert_eq!(format!("{b:?}"), "[1]");
    }

    #[test]
    fn new_is_usable_in_const_context() {
        const EMPTY: BoundedVec<u64, 16> = BoundedVec::new();
        assert_eq!(EMPTY.len(), 0);
    }
}
