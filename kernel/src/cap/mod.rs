//! Capabilities: every process's slot table and the global derivation tree, kept in step.
//!
//! A capability ([`Cap`]) is an object, the [`Rights`] its holder has over it and a badge. Each
//! process holds its caps in a [`SlotTable`] and names them by [`Slot`]. [`CapSpace`] (one per
//! kernel) owns every slot table, keyed by [`TableId`], and the derivation tree that records which
//! cap was copied from which, so that [`CapSpace::revoke`] can delete every copy derived from a cap
//! wherever it lives.
//!
//! The module is generic over the object type `O`: the kernel uses `ObjRef` (a kind and an id;
//! the kernel counts each object's references and frees it at zero); host tests use `Rc<u32>`.
//! Operations that delete caps hand the objects back to the caller, who drops its references.
//!
//! It checks only what is intrinsic to caps (slots, rights monotonicity, GRANT for crossing
//! tables, badges); which right an operation on an object needs is the syscall layer's business
//! ([`CapSpace::lookup`] is its per-call check). It never panics on bad input.
//!
//! Invariants:
//! - Every operation decodes first and then mutates: an operation that returns an error has
//!   changed nothing (no table, slot, node or reference count).
//! - Each cap in a table has exactly one live node in the derivation tree, whose location is that
//!   table and slot; there are no other nodes.
//! - A copy's rights are a subset of its source's; a copy made into another table came from a cap
//!   holding [`Rights::GRANT`]; a badge, once non-zero, is inherited by every copy unchanged.
//! - No operation recurses: revoke and destroy_table walk the tree in loops, so an arbitrarily
//!   deep derivation chain costs heap and time (O(affected caps)), never kernel stack. Every other
//!   operation is a table lookup (a probe of an `IdMap`), O(log n) in the free-slot set, plus
//!   O(1) tree work.
#![forbid(unsafe_code)]

mod derivation;
mod rights;
mod slots;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use crate::idmap::IdMap;
use derivation::DerivationTree;
pub use rights::Rights;
pub use slots::{Cap, DEFAULT_MAX_SLOTS, SlotTable};

/// Names a cap within one slot table.
pub type Slot = u32;

/// Names a slot table (the owning process's id).
pub type TableId = u64;

/// Why a capability operation was refused. The operation changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapError {
    /// No slot table with that id.
    NoSuchTable,
    /// A slot table with that id already exists.
    AlreadyExists,
    /// The slot is beyond the table's limit or holds no cap.
    InvalidSlot,
    /// The slot already holds a cap.
    SlotInUse,
    /// The table has no free slot.
    TableFull,
    /// A copy asked for rights its source does not hold.
    RightsEscalation,
    /// Copying or moving to another table needs the source to hold GRANT.
    NoGrantRight,
    /// A badged cap cannot be given another badge.
    AlreadyBadged,
    /// The cap lacks a right the operation needs.
    MissingRights,
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CapError::NoSuchTable => "no such slot table",
            CapError::AlreadyExists => "slot table already exists",
            CapError::InvalidSlot => "slot out of range or empty",
            CapError::SlotInUse => "slot already in use",
            CapError::TableFull => "slot table full",
            CapError::RightsEscalation => "copy would add rights",
            CapError::NoGrantRight => "cap lacks GRANT for another table",
            CapError::AlreadyBadged => "cap is already badged",
            CapError::MissingRights => "cap lacks the rights needed",
        })
    }
}

/// Every slot table and the derivation tree linking their caps.
#[derive(Debug)]
pub struct CapSpace<O> {
    tables: IdMap<SlotTable<O>>,
    tree: DerivationTree,
}

impl<O: Clone> Default for CapSpace<O> {
    fn default() -> Self {
        CapSpace::new()
    }
}

impl<O: Clone> CapSpace<O> {
    /// An empty space: no tables, no caps.
    pub fn new() -> Self {
        CapSpace { tables: IdMap::new(), tree: DerivationTree::new() }
    }

    /// Creates an empty slot table whose slots are `0..max_slots`.
    ///
    /// Errors: `AlreadyExists`.
    pub fn create_table(&mut self, table: TableId, max_slots: u32) -> Result<(), CapError> {
        if self.tables.contains_key(&table) {
            return Err(CapError::AlreadyExists);
        }
        self.tables.insert(table, SlotTable::new(max_slots));
        Ok(())
    }

    /// Removes a whole table (process exit). Every cap in it is deleted as by [`Self::delete`]:
    /// caps derived from them in other tables stay, re-parented to the nearest surviving
    /// ancestor (or made roots), as seL4 does. Returns the objects that were in the table so the
    /// caller can drop them outside its lock.
    ///
    /// Errors: `NoSuchTable`.
    pub fn destroy_table(&mut self, table: TableId) -> Result<Vec<O>, CapError> {
        let slots = self.tables.remove(&table).ok_or(CapError::NoSuchTable)?;
        let mut objects = Vec::with_capacity(slots.count());
        for cap in slots.into_caps() {
            self.tree.remove(cap.node());
            objects.push(cap.object);
        }
        Ok(objects)
    }

    /// Whether a table with this id exists.
    pub fn has_table(&self, table: TableId) -> bool {
        self.tables.contains_key(&table)
    }

    /// A table, read-only.
    ///
    /// Errors: `NoSuchTable`.
    pub fn table(&self, table: TableId) -> Result<&SlotTable<O>, CapError> {
        self.tables.get(&table).ok_or(CapError::NoSuchTable)
    }

    /// A new original cap (no parent) for a freshly created object, in the lowest free slot.
    ///
    /// Errors: `NoSuchTable`, `TableFull`.
    pub fn insert_original(&mut self, table: TableId, object: O, rights: Rights, badge: u64) -> Result<Slot, CapError> {
        let slot = self.table(table)?.lowest_free().ok_or(CapError::TableFull)?;
        self.put_original(table, slot, object, rights, badge);
        Ok(slot)
    }

    /// A new original cap (no parent) in a chosen slot (for example, the well-known slots a
    /// parent fills when it spawns a process).
    ///
    /// Errors, in this order: `NoSuchTable`; `InvalidSlot` if `slot >= max_slots`; `SlotInUse`.
    pub fn insert_original_at(
        &mut self,
        table: TableId,
        slot: Slot,
        object: O,
        rights: Rights,
        badge: u64,
    ) -> Result<(), CapError> {
        self.table(table)?.check_vacant(slot)?;
        self.put_original(table, slot, object, rights, badge);
        Ok(())
    }

    /// The cap in a slot.
    ///
    /// Errors: `NoSuchTable`; `InvalidSlot` if the slot is out of range or empty.
    pub fn get(&self, table: TableId, slot: Slot) -> Result<&Cap<O>, CapError> {
        self.table(table)?.get(slot).ok_or(CapError::InvalidSlot)
    }

    /// The cap in a slot, provided it holds every right in `need`: the check the syscall layer
    /// makes on each call. A map lookup and an array index; no allocation.
    ///
    /// Errors: `NoSuchTable`, `InvalidSlot`, `MissingRights`.
    pub fn lookup(&self, table: TableId, slot: Slot, need: Rights) -> Result<&Cap<O>, CapError> {
        let cap = self.get(table, slot)?;
        if cap.rights.contains(need) { Ok(cap) } else { Err(CapError::MissingRights) }
    }

    /// Copies the cap at `src` into the lowest free slot of `dest_table` with exactly `rights`,
    /// which must be a subset of the source's rights. The copy shares the object (a clone of `O`)
    /// and becomes a child of the source in the derivation tree. `badge`: `None` keeps the
    /// source's badge; `Some(b)` sets `b`, allowed only if the source is unbadged (badge 0).
    ///
    /// Errors, in this order: `NoSuchTable` (source), `InvalidSlot` (source), `NoSuchTable`
    /// (destination), `RightsEscalation`, `NoGrantRight` (another table and the source lacks
    /// GRANT), `AlreadyBadged`, `TableFull`.
    pub fn copy(
        &mut self,
        src: (TableId, Slot),
        dest_table: TableId,
        rights: Rights,
        badge: Option<u64>,
    ) -> Result<Slot, CapError> {
        let source = self.get(src.0, src.1)?;
        let dest = self.table(dest_table)?;
        if !rights.is_subset_of(source.rights) {
            return Err(CapError::RightsEscalation);
        }
        if dest_table != src.0 && !source.rights.contains(Rights::GRANT) {
            return Err(CapError::NoGrantRight);
        }
        let badge = match badge {
            None => source.badge,
            Some(badge) if source.badge == 0 => badge,
            Some(_) => return Err(CapError::AlreadyBadged),
        };
        let slot = dest.lowest_free().ok_or(CapError::TableFull)?;
        let object = source.object.clone();
        let parent = source.node();

        let node = self.tree.insert_child(parent, (dest_table, slot));
        self.decoded_table_mut(dest_table).put(slot, Cap::new(object, rights, badge, node));
        Ok(slot)
    }

    /// Moves the cap at `src` into the lowest free slot of `dest_table` (for a move within one
    /// table: the lowest slot free before the move, never `src` itself). The cap keeps its
    /// rights, badge and place in the derivation tree (used by IPC cap transfer with move
    /// semantics).
    ///
    /// Errors, in this order: `NoSuchTable` (source), `InvalidSlot` (source), `NoSuchTable`
    /// (destination), `NoGrantRight` (another table and the cap lacks GRANT), `TableFull`.
    pub fn move_cap(&mut self, src: (TableId, Slot), dest_table: TableId) -> Result<Slot, CapError> {
        let source = self.get(src.0, src.1)?;
        let dest = self.table(dest_table)?;
        if dest_table != src.0 && !source.rights.contains(Rights::GRANT) {
            return Err(CapError::NoGrantRight);
        }
        let slot = dest.lowest_free().ok_or(CapError::TableFull)?;

        let cap = self.decoded_table_mut(src.0).take(src.1).expect("cap space: decoded source slot is empty");
        self.tree.set_location(cap.node(), (dest_table, slot));
        self.decoded_table_mut(dest_table).put(slot, cap);
        Ok(slot)
    }

    /// Deletes one cap and returns its object (for the caller to drop outside its lock).
    ///
    /// Caps derived from it are not deleted: they are re-parented to its parent (or become
    /// roots if it was an original), so revoking an ancestor still reaches them.
    ///
    /// Errors: `NoSuchTable`, `InvalidSlot`.
    pub fn delete(&mut self, table: TableId, slot: Slot) -> Result<O, CapError> {
        let cap = self.tables.get_mut(&table).ok_or(CapError::NoSuchTable)?.take(slot).ok_or(CapError::InvalidSlot)?;
        self.tree.remove(cap.node());
        Ok(cap.object)
    }

    /// Deletes every cap derived (transitively) from the cap at `(table, slot)`, in any table,
    /// but not the cap itself. Checks no rights (the syscall layer decides who may revoke).
    /// Returns the deleted caps' objects. O(number deleted), no recursion.
    ///
    /// Errors: `NoSuchTable`, `InvalidSlot`.
    pub fn revoke(&mut self, table: TableId, slot: Slot) -> Result<Vec<O>, CapError> {
        let root = self.get(table, slot)?.node();
        let mut objects = Vec::new();
        // Removing the first child lifts its children into root's list, so this reaches every
        // descendant exactly once (see `derivation`).
        while let Some(child) = self.tree.first_child(root) {
            let (child_table, child_slot) = self.tree.location(child);
            let cap = self
                .tables
                .get_mut(&child_table)
                .and_then(|t| t.take(child_slot))
                .expect("cap space: a derivation node's location holds no cap");
            assert_eq!(cap.node(), child, "cap space: a derivation node's location holds another cap");
            self.tree.remove(child);
            objects.push(cap.object);
        }
        Ok(objects)
    }

    /// (slot tables, caps in all of them), for the object census.
    pub fn totals(&self) -> (usize, usize) {
        (self.tables.len(), self.tables.values().map(|t| t.count()).sum())
    }

    /// The number of caps in a table.
    ///
    /// Errors: `NoSuchTable`.
    pub fn count(&self, table: TableId) -> Result<usize, CapError> {
        Ok(self.table(table)?.count())
    }

    /// The caps of a table in slot order.
    ///
    /// Errors: `NoSuchTable`.
    pub fn iter(&self, table: TableId) -> Result<impl Iterator<Item = (Slot, &Cap<O>)>, CapError> {
        Ok(self.table(table)?.iter())
    }

    fn put_original(&mut self, table: TableId, slot: Slot, object: O, rights: Rights, badge: u64) {
        let node = self.tree.insert_root((table, slot));
        self.decoded_table_mut(table).put(slot, Cap::new(object, rights, badge, node));
    }

    /// A table that decoding has already found.
    fn decoded_table_mut(&mut self, table: TableId) -> &mut SlotTable<O> {
        self.tables.get_mut(&table).expect("cap space: a decoded table vanished")
    }
}

/// Inspection for tests.
#[cfg(test)]
impl<O: Clone> CapSpace<O> {
    /// Where the parent of the cap at `(table, slot)` lives, if it has one.
    pub(crate) fn parent_of(&self, table: TableId, slot: Slot) -> Option<(TableId, Slot)> {
        let node = self.get(table, slot).ok()?.node();
        self.tree.parent(node).map(|parent| self.tree.location(parent))
    }

    /// Panics unless tables and tree agree and the tree's links are consistent.
    pub(crate) fn check_invariants(&self) {
        self.tree.check();
        let mut caps = 0;
        for (&table, slots) in self.tables.iter() {
            assert_eq!(slots.iter().count(), slots.count(), "table {table} live count");
            for (slot, cap) in slots.iter() {
                assert_eq!(self.tree.location(cap.node()), (table, slot), "node location of {table}:{slot}");
                caps += 1;
            }
        }
        assert_eq!(caps, self.tree.len(), "nodes without caps");
        for (node, (table, slot)) in self.tree.live_nodes() {
            assert_eq!(self.get(table, slot).map(Cap::node), Ok(node), "cap of node at {table}:{slot}");
        }
    }
}
