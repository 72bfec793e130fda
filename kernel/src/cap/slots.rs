//! One process's slot table: the caps it holds, named by slot number.
//!
//! A [`SlotTable`] is a growable array of slots with a hard limit (`max_slots`) fixed at creation.
//! It owns its caps but not their place in the derivation tree: only
//! [`CapSpace`](super::CapSpace) changes a table, so that the table and the tree always agree.
//! Outside this module a table is read-only.
//!
//! Invariants:
//! - `free` holds exactly the empty slots below `slots.len()`, so the lowest free slot is the
//!   smallest element of `free`, or `slots.len()` when `free` is empty (if below `max_slots`).
//! - `slots.len() <= max_slots` and `live` is the number of occupied slots.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::derivation::NodeId;
use super::{CapError, Rights, Slot};

/// Slot limit of a process that was not given another one.
pub const DEFAULT_MAX_SLOTS: u32 = 4096;

/// A capability: an object, the rights its holder has over it and a badge (0: unbadged) that the
/// object reports to whoever is reached through this cap (for example, IPC servers see the
/// badge of the caller's cap).
#[derive(Debug)]
pub struct Cap<O> {
    /// The kernel object (a reference-counted handle; cloning it is how a copy shares the object).
    pub object: O,
    /// What the holder may do with the object.
    pub rights: Rights,
    /// The badge, 0 if none.
    pub badge: u64,
    /// This cap's node in the derivation tree.
    node: NodeId,
}

impl<O> Cap<O> {
    pub(super) fn new(object: O, rights: Rights, badge: u64, node: NodeId) -> Self {
        Cap { object, rights, badge, node }
    }

    pub(super) fn node(&self) -> NodeId {
        self.node
    }
}

/// The caps of one process.
#[derive(Debug)]
pub struct SlotTable<O> {
    slots: Vec<Option<Cap<O>>>,
    /// The empty slots below `slots.len()`.
    free: BTreeSet<Slot>,
    live: usize,
    max_slots: u32,
}

impl<O> SlotTable<O> {
    pub(super) fn new(max_slots: u32) -> Self {
        SlotTable { slots: Vec::new(), free: BTreeSet::new(), live: 0, max_slots }
    }

    /// The hard limit: valid slots are `0..max_slots`.
    pub fn max_slots(&self) -> u32 {
        self.max_slots
    }

    /// The number of caps in the table.
    pub fn count(&self) -> usize {
        self.live
    }

    /// The cap in `slot`, if there is one.
    pub fn get(&self, slot: Slot) -> Option<&Cap<O>> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    /// The occupied slots and their caps, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Cap<O>)> {
        // `slots.len() <= max_slots <= u32::MAX`, so every index fits a `Slot`.
        self.slots.iter().enumerate().filter_map(|(index, cap)| cap.as_ref().map(|cap| (index as Slot, cap)))
    }

    /// The lowest empty slot, `None` if the table is full. O(log n).
    pub(super) fn lowest_free(&self) -> Option<Slot> {
        match self.free.first() {
            Some(&slot) => Some(slot),
            None => Slot::try_from(self.slots.len()).ok().filter(|&len| len < self.max_slots),
        }
    }

    /// Checks that `slot` can take a new cap: `InvalidSlot` beyond the limit, `SlotInUse` if occupied.
    pub(super) fn check_vacant(&self, slot: Slot) -> Result<(), CapError> {
        if slot >= self.max_slots {
            Err(CapError::InvalidSlot)
        } else if self.get(slot).is_some() {
            Err(CapError::SlotInUse)
        } else {
            Ok(())
        }
    }

    /// Puts `cap` into `slot`, which the caller has checked with [`Self::check_vacant`].
    pub(super) fn put(&mut self, slot: Slot, cap: Cap<O>) {
        assert!(slot < self.max_slots, "slot table: put into slot {slot} beyond the limit {}", self.max_slots);
        let index = slot as usize;
        if index >= self.slots.len() {
            // The slots between the old end and `slot` become holes.
            let old_len = self.slots.len() as Slot;
            self.free.extend(old_len..slot);
            self.slots.resize_with(index + 1, || None);
        } else {
            self.free.remove(&slot);
        }
        let entry = &mut self.slots[index];
        assert!(entry.is_none(), "slot table: put into occupied slot {slot} (caller must check first)");
        *entry = Some(cap);
        self.live += 1;
    }

    /// Takes the cap out of `slot`; `None` (and no change) if the slot is empty or out of range.
    pub(super) fn take(&mut self, slot: Slot) -> Option<Cap<O>> {
        let cap = self.slots.get_mut(slot as usize)?.take()?;
        self.free.insert(slot);
        self.live -= 1;
        Some(cap)
    }

    /// Empties the table, yielding its caps in slot order.
    pub(super) fn into_caps(self) -> impl Iterator<Item = Cap<O>> {
        self.slots.into_iter().flatten()
    }
}
