//! Scenario tests of `CapSpace` over `Rc<u32>` objects, so reference counts show exactly when an
//! object is dropped.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::vec::Vec;

use super::*;

pub(super) type Space = CapSpace<Rc<u32>>;

/// Table limits and, per occupied slot, (object, rights, badge, parent location).
pub(super) type Snapshot =
    (BTreeMap<TableId, u32>, BTreeMap<(TableId, Slot), (u32, Rights, u64, Option<(TableId, Slot)>)>);

pub(super) fn snapshot(space: &Space) -> Snapshot {
    let limits = space.tables.iter().map(|(&t, slots)| (t, slots.max_slots())).collect();
    let mut caps = BTreeMap::new();
    for &table in space.tables.keys() {
        for (slot, cap) in space.iter(table).unwrap() {
            caps.insert((table, slot), (*cap.object, cap.rights, cap.badge, space.parent_of(table, slot)));
        }
    }
    (limits, caps)
}

const A: TableId = 1;
const B: TableId = 2;
const C: TableId = 3;
const RW: Rights = Rights::READ.union(Rights::WRITE);
const RWG: Rights = RW.union(Rights::GRANT);

fn obj(n: u32) -> Rc<u32> {
    Rc::new(n)
}

fn space_with(tables: &[TableId], max_slots: u32) -> Space {
    let mut space = Space::new();
    for &t in tables {
        space.create_table(t, max_slots).unwrap();
    }
    space
}

#[test]
fn insert_get_delete_drops_object_with_last_cap() {
    let mut s = space_with(&[A], 8);
    let o = obj(7);
    assert_eq!(s.insert_original(A, o.clone(), RW, 0), Ok(0));
    let cap = s.get(A, 0).unwrap();
    assert_eq!((*cap.object, cap.rights, cap.badge), (7, RW, 0));
    assert_eq!(Rc::strong_count(&o), 2);

    assert_eq!(s.copy((A, 0), A, Rights::READ, None), Ok(1));
    assert_eq!(Rc::strong_count(&o), 3);
    assert_eq!(s.count(A), Ok(2));

    drop(s.delete(A, 0).unwrap());
    assert_eq!(Rc::strong_count(&o), 2, "the copy still holds the object");
    assert_eq!(s.get(A, 0).map(|_| ()), Err(CapError::InvalidSlot));
    assert_eq!(s.delete(A, 0).map(|_| ()), Err(CapError::InvalidSlot));
    let last = s.delete(A, 1).unwrap();
    assert_eq!(*last, 7);
    drop(last);
    assert_eq!(Rc::strong_count(&o), 1);
    assert_eq!(s.count(A), Ok(0));
    s.check_invariants();
}

#[test]
fn lowest_free_slot_is_reused() {
    let mut s = space_with(&[A], 16);
    for n in 0..5 {
        assert_eq!(s.insert_original(A, obj(n), RW, 0), Ok(n));
    }
    s.delete(A, 3).unwrap();
    s.delete(A, 1).unwrap();
    assert_eq!(s.insert_original(A, obj(10), RW, 0), Ok(1));
    assert_eq!(s.copy((A, 0), A, RW, None), Ok(3));
    assert_eq!(s.insert_original(A, obj(11), RW, 0), Ok(5));
    let slots: Vec<Slot> = s.iter(A).unwrap().map(|(slot, _)| slot).collect();
    assert_eq!(slots, [0, 1, 2, 3, 4, 5]);
    s.check_invariants();
}

#[test]
fn insert_at_chosen_slot() {
    let mut s = space_with(&[A], 8);
    assert_eq!(s.insert_original_at(A, 5, obj(5), RW, 0), Ok(()));
    assert_eq!(s.insert_original_at(A, 5, obj(6), RW, 0), Err(CapError::SlotInUse));
    assert_eq!(s.insert_original_at(A, 8, obj(8), RW, 0), Err(CapError::InvalidSlot));
    assert_eq!(s.insert_original_at(A, u32::MAX, obj(8), RW, 0), Err(CapError::InvalidSlot));
    assert_eq!(s.get(A, u32::MAX).map(|_| ()), Err(CapError::InvalidSlot));
    // The holes below slot 5 fill first, then the slots above it.
    let filled: Vec<Slot> = (0..7).map(|n| s.insert_original(A, obj(n), RW, 0).unwrap()).collect();
    assert_eq!(filled, [0, 1, 2, 3, 4, 6, 7]);
    assert_eq!(s.insert_original(A, obj(9), RW, 0), Err(CapError::TableFull));
    assert_eq!(*s.get(A, 5).unwrap().object, 5);
    s.check_invariants();
}

#[test]
fn table_limit_gives_table_full() {
    let mut s = space_with(&[A, B], 3);
    for n in 0..3 {
        s.insert_original(A, obj(n), RWG, 0).unwrap();
    }
    assert_eq!(s.insert_original(A, obj(3), RW, 0), Err(CapError::TableFull));
    assert_eq!(s.copy((A, 0), A, RW, None), Err(CapError::TableFull));
    for _ in 0..3 {
        s.copy((A, 0), B, RW, None).unwrap();
    }
    assert_eq!(s.copy((A, 0), B, RW, None), Err(CapError::TableFull));
    assert_eq!(s.move_cap((A, 0), B), Err(CapError::TableFull));
    assert_eq!(s.move_cap((A, 0), A), Err(CapError::TableFull), "no free slot to move to");

    s.create_table(C, 0).unwrap();
    assert_eq!(s.insert_original(C, obj(9), RW, 0), Err(CapError::TableFull));
    assert_eq!(s.insert_original_at(C, 0, obj(9), RW, 0), Err(CapError::InvalidSlot));

    let mut d = space_with(&[A], DEFAULT_MAX_SLOTS);
    for n in 0..DEFAULT_MAX_SLOTS {
        assert_eq!(d.insert_original(A, obj(n), RW, 0), Ok(n));
    }
    assert_eq!(d.insert_original(A, obj(0), RW, 0), Err(CapError::TableFull));
}

#[test]
fn tables_must_exist_and_be_unique() {
    let mut s = space_with(&[A], 4);
    assert_eq!(s.create_table(A, 9), Err(CapError::AlreadyExists));
    assert_eq!(s.table(A).unwrap().max_slots(), 4);
    assert!(s.has_table(A) && !s.has_table(B));
    s.insert_original(A, obj(0), RWG, 0).unwrap();
    assert_eq!(s.insert_original(B, obj(1), RW, 0), Err(CapError::NoSuchTable));
    assert_eq!(s.insert_original_at(B, 0, obj(1), RW, 0), Err(CapError::NoSuchTable));
    assert_eq!(s.get(B, 0).map(|_| ()), Err(CapError::NoSuchTable));
    assert_eq!(s.lookup(B, 0, Rights::NONE).map(|_| ()), Err(CapError::NoSuchTable));
    assert_eq!(s.copy((B, 0), A, RW, None), Err(CapError::NoSuchTable));
    assert_eq!(s.copy((A, 0), B, RW, None), Err(CapError::NoSuchTable));
    assert_eq!(s.move_cap((A, 0), B), Err(CapError::NoSuchTable));
    assert_eq!(s.delete(B, 0).map(|_| ()), Err(CapError::NoSuchTable));
    assert_eq!(s.revoke(B, 0).map(|_| ()), Err(CapError::NoSuchTable));
    assert_eq!(s.count(B), Err(CapError::NoSuchTable));
    assert!(s.iter(B).is_err());
    assert_eq!(s.destroy_table(B).map(|_| ()), Err(CapError::NoSuchTable));
}

#[test]
fn copy_reduces_rights_and_refuses_escalation() {
    let mut s = space_with(&[A], 8);
    s.insert_original(A, obj(0), RWG, 0).unwrap();
    let r = s.copy((A, 0), A, Rights::READ, None).unwrap();
    assert_eq!(s.get(A, r).unwrap().rights, Rights::READ);
    assert_eq!(s.copy((A, r), A, RW, None), Err(CapError::RightsEscalation));
    assert_eq!(s.copy((A, 0), A, Rights::READ | Rights::MANAGE, None), Err(CapError::RightsEscalation));
    let none = s.copy((A, r), A, Rights::NONE, None).unwrap();
    assert_eq!(s.get(A, none).unwrap().rights, Rights::NONE);
    assert_eq!(s.copy((A, none), A, Rights::NONE, None).map(|_| ()), Ok(()));
    s.check_invariants();
}

#[test]
fn crossing_tables_needs_grant() {
    let mut s = space_with(&[A, B, C], 8);
    s.insert_original(A, obj(0), RW, 0).unwrap();
    assert_eq!(s.copy((A, 0), B, Rights::READ, None), Err(CapError::NoGrantRight));
    assert_eq!(s.move_cap((A, 0), B), Err(CapError::NoGrantRight));
    assert_eq!(s.copy((A, 0), A, Rights::READ, None), Ok(1), "copies within a table need no GRANT");
    assert_eq!(s.move_cap((A, 1), A), Ok(2), "moves within a table need no GRANT");

    s.insert_original(A, obj(1), RWG, 0).unwrap();
    let g = 1;
    assert_eq!(s.get(A, g).map(|c| *c.object), Ok(1));
    // The copy keeps GRANT only if asked for.
    assert_eq!(s.copy((A, g), B, RW, None), Ok(0));
    assert_eq!(s.copy((B, 0), C, Rights::READ, None), Err(CapError::NoGrantRight));
    assert_eq!(s.copy((A, g), B, RWG, None), Ok(1));
    assert_eq!(s.copy((B, 1), C, Rights::READ, None), Ok(0));
    assert_eq!(s.move_cap((B, 1), C), Ok(1));
    s.check_invariants();
}

#[test]
fn badge_rules() {
    let mut s = space_with(&[A], 16);
    s.insert_original(A, obj(0), RW, 0).unwrap();
    let badged = s.copy((A, 0), A, RW, Some(5)).unwrap();
    assert_eq!(s.get(A, badged).unwrap().badge, 5);
    let inherited = s.copy((A, badged), A, Rights::READ, None).unwrap();
    assert_eq!(s.get(A, inherited).unwrap().badge, 5);
    assert_eq!(s.copy((A, badged), A, RW, Some(6)), Err(CapError::AlreadyBadged));
    assert_eq!(s.copy((A, badged), A, RW, Some(5)), Err(CapError::AlreadyBadged));
    assert_eq!(s.copy((A, inherited), A, Rights::READ, Some(0)), Err(CapError::AlreadyBadged));
    let zero = s.copy((A, 0), A, RW, Some(0)).unwrap();
    assert_eq!(s.get(A, zero).unwrap().badge, 0);
    let rebadged_later = s.copy((A, zero), A, RW, Some(9)).unwrap();
    assert_eq!(s.get(A, rebadged_later).unwrap().badge, 9);

    let original = s.insert_original(A, obj(1), RW, 3).unwrap();
    assert_eq!(s.get(A, original).unwrap().badge, 3);
    assert_eq!(s.copy((A, original), A, RW, Some(4)), Err(CapError::AlreadyBadged));
    // Rights are checked before the badge.
    assert_eq!(s.copy((A, original), A, Rights::ALL, Some(4)), Err(CapError::RightsEscalation));
    s.check_invariants();
}

#[test]
fn lookup_checks_rights() {
    let mut s = space_with(&[A], 4);
    s.insert_original(A, obj(4), RW, 2).unwrap();
    let cap = s.lookup(A, 0, Rights::READ).unwrap();
    assert_eq!((*cap.object, cap.badge), (4, 2));
    assert!(s.lookup(A, 0, RW).is_ok());
    assert!(s.lookup(A, 0, Rights::NONE).is_ok());
    assert_eq!(s.lookup(A, 0, Rights::READ | Rights::MAP).map(|_| ()), Err(CapError::MissingRights));
    assert_eq!(s.lookup(A, 1, Rights::NONE).map(|_| ()), Err(CapError::InvalidSlot));
}

#[test]
fn revoke_reaches_other_tables_but_spares_the_cap_and_its_siblings() {
    let mut s = space_with(&[A, B, C], 8);
    let o = obj(1);
    s.insert_original(A, o.clone(), Rights::ALL, 0).unwrap(); // A0
    let b = s.copy((A, 0), B, Rights::ALL, None).unwrap(); // B0, child of A0
    let sibling = s.copy((A, 0), C, RWG, None).unwrap(); // C0, child of A0
    let c = s.copy((B, b), C, RWG, None).unwrap(); // C1, child of B0
    let grandchild = s.copy((C, c), A, RW, None).unwrap(); // A1, child of C1
    assert_eq!((b, sibling, c, grandchild), (0, 0, 1, 1));
    assert_eq!(Rc::strong_count(&o), 6);

    let gone = s.revoke(B, b).unwrap();
    assert_eq!(gone.len(), 2);
    drop(gone);
    assert_eq!(Rc::strong_count(&o), 4);
    assert!(s.get(B, b).is_ok(), "the revoked cap itself stays");
    assert!(s.get(C, sibling).is_ok(), "its sibling stays");
    assert!(s.get(A, 0).is_ok(), "its parent stays");
    assert_eq!(s.get(C, c).map(|_| ()), Err(CapError::InvalidSlot));
    assert_eq!(s.get(A, grandchild).map(|_| ()), Err(CapError::InvalidSlot));
    s.check_invariants();

    assert!(s.revoke(B, b).unwrap().is_empty(), "nothing left to revoke");
    assert_eq!(s.revoke(A, 0).unwrap().len(), 2);
    assert_eq!(Rc::strong_count(&o), 2);
    assert_eq!((s.count(A), s.count(B), s.count(C)), (Ok(1), Ok(0), Ok(0)));
    s.check_invariants();
}

#[test]
fn delete_reparents_children_so_revoke_still_reaches_them() {
    let mut s = space_with(&[A, B, C], 8);
    s.insert_original(A, obj(1), Rights::ALL, 0).unwrap(); // A0
    let mid = s.copy((A, 0), B, Rights::ALL, None).unwrap(); // B0
    let leaf1 = s.copy((B, mid), C, RW, None).unwrap(); // C0
    let leaf2 = s.copy((B, mid), C, RW, None).unwrap(); // C1
    let deep = s.copy((C, leaf2), C, Rights::READ, None).unwrap(); // C2
    s.delete(B, mid).unwrap();
    assert_eq!(s.parent_of(C, leaf1), Some((A, 0)));
    assert_eq!(s.parent_of(C, leaf2), Some((A, 0)));
    assert_eq!(s.parent_of(C, deep), Some((C, leaf2)));
    s.check_invariants();
    assert_eq!(s.revoke(A, 0).unwrap().len(), 3);
    assert_eq!(s.count(C), Ok(0));
    s.check_invariants();

    // Deleting an original makes its children roots, independent of each other.
    let x = s.copy((A, 0), B, Rights::ALL, None).unwrap();
    let y = s.copy((A, 0), C, Rights::ALL, None).unwrap();
    let under_x = s.copy((B, x), B, Rights::ALL, None).unwrap();
    s.delete(A, 0).unwrap();
    assert_eq!((s.parent_of(B, x), s.parent_of(C, y)), (None, None));
    assert_eq!(s.parent_of(B, under_x), Some((B, x)));
    assert_eq!(s.revoke(B, x).unwrap().len(), 1);
    assert!(s.get(C, y).is_ok());
    s.check_invariants();
}

#[test]
fn destroy_table_deletes_its_caps_and_keeps_copies_elsewhere() {
    let mut s = space_with(&[A, B, C], 8);
    let (o1, o2) = (obj(1), obj(2));
    s.insert_original(A, o1.clone(), Rights::ALL, 0).unwrap(); // A0
    s.copy((A, 0), A, Rights::ALL, None).unwrap(); // A1, child of A0
    s.insert_original(A, o2.clone(), Rights::ALL, 0).unwrap(); // A2
    let b0 = s.copy((A, 0), B, Rights::ALL, None).unwrap(); // child of A0
    let b1 = s.copy((A, 1), B, Rights::ALL, None).unwrap(); // child of A1
    let c0 = s.copy((B, b0), C, Rights::ALL, None).unwrap(); // child of B0
    let back = s.copy((B, b1), A, Rights::ALL, None).unwrap(); // A3, child of B1, dies with A

    let gone = s.destroy_table(A).unwrap();
    let mut values: Vec<u32> = gone.iter().map(|o| **o).collect();
    values.sort();
    assert_eq!(values, [1, 1, 1, 2]);
    assert_eq!(back, 3);
    drop(gone);
    assert_eq!(Rc::strong_count(&o1), 4, "B0, B1, C0 and ours");
    assert_eq!(Rc::strong_count(&o2), 1);
    assert!(!s.has_table(A));
    assert_eq!((s.parent_of(B, b0), s.parent_of(B, b1)), (None, None));
    assert_eq!(s.parent_of(C, c0), Some((B, b0)));
    assert_eq!(s.destroy_table(A).map(|_| ()), Err(CapError::NoSuchTable));
    s.check_invariants();

    // The id can be reused; destroying a table with derived copies spares its parents.
    s.create_table(A, 4).unwrap();
    s.copy((B, b0), A, RW, None).unwrap();
    assert_eq!(s.destroy_table(A).unwrap().len(), 1);
    assert_eq!(s.revoke(B, b0).unwrap().len(), 1, "only C0 remains under B0");
    s.check_invariants();
    drop(s);
    assert_eq!(Rc::strong_count(&o1), 1, "dropping the space drops every object");
}

#[test]
fn move_keeps_place_in_tree() {
    let mut s = space_with(&[A, B, C], 8);
    s.insert_original(A, obj(1), Rights::ALL, 7).unwrap(); // A0
    let b = s.copy((A, 0), B, RWG, None).unwrap(); // B0
    let c = s.move_cap((B, b), C).unwrap();
    assert_eq!(c, 0);
    assert_eq!(s.get(B, b).map(|_| ()), Err(CapError::InvalidSlot));
    let moved = s.get(C, c).unwrap();
    assert_eq!((moved.rights, moved.badge), (RWG, 7));
    assert_eq!(s.parent_of(C, c), Some((A, 0)));
    let grandchild = s.copy((C, c), B, RW, None).unwrap(); // B0 again
    assert_eq!(s.parent_of(B, grandchild), Some((C, c)));
    // Move the root within its table: to the lowest slot free before the move.
    assert_eq!(s.move_cap((A, 0), A), Ok(1));
    assert_eq!(s.parent_of(C, c), Some((A, 1)));
    s.check_invariants();
    assert_eq!(s.revoke(A, 1).unwrap().len(), 2);
    assert_eq!((s.count(B), s.count(C)), (Ok(0), Ok(0)));
    s.check_invariants();
}

#[test]
fn errors_leave_state_unchanged() {
    let mut s = space_with(&[A, B], 4);
    s.create_table(C, 1).unwrap();
    let objects: Vec<Rc<u32>> = (0..3).map(obj).collect();
    s.insert_original(A, objects[0].clone(), RW, 0).unwrap(); // A0: no GRANT
    s.insert_original(A, objects[1].clone(), RWG, 4).unwrap(); // A1: badged
    s.copy((A, 1), B, Rights::READ, None).unwrap(); // B0
    s.insert_original(C, objects[2].clone(), RWG, 0).unwrap(); // C0: C is full
    let before = snapshot(&s);
    let counts = |objects: &[Rc<u32>]| objects.iter().map(Rc::strong_count).collect::<Vec<_>>();
    let counts_before = counts(&objects);

    type Op = fn(&mut Space) -> Result<(), CapError>;
    let failing: &[(Op, CapError)] = &[
        (|s| s.create_table(A, 1), CapError::AlreadyExists),
        (|s| s.destroy_table(9).map(drop), CapError::NoSuchTable),
        (|s| s.insert_original(9, obj(9), RW, 0).map(drop), CapError::NoSuchTable),
        (|s| s.insert_original(C, obj(9), RW, 0).map(drop), CapError::TableFull),
        (|s| s.insert_original_at(A, 0, obj(9), RW, 0), CapError::SlotInUse),
        (|s| s.insert_original_at(A, 4, obj(9), RW, 0), CapError::InvalidSlot),
        (|s| s.copy((A, 3), A, RW, None).map(drop), CapError::InvalidSlot),
        (|s| s.copy((A, 0), 9, RW, None).map(drop), CapError::NoSuchTable),
        (|s| s.copy((A, 0), A, RWG, None).map(drop), CapError::RightsEscalation),
        (|s| s.copy((A, 0), B, RW, None).map(drop), CapError::NoGrantRight),
        (|s| s.copy((A, 1), B, RW, Some(1)).map(drop), CapError::AlreadyBadged),
        (|s| s.copy((A, 1), C, RW, None).map(drop), CapError::TableFull),
        (|s| s.move_cap((A, 0), B).map(drop), CapError::NoGrantRight),
        (|s| s.move_cap((A, 1), C).map(drop), CapError::TableFull),
        (|s| s.move_cap((B, 1), A).map(drop), CapError::InvalidSlot),
        (|s| s.delete(B, 1).map(drop), CapError::InvalidSlot),
        (|s| s.delete(A, u32::MAX).map(drop), CapError::InvalidSlot),
        (|s| s.revoke(B, 3).map(drop), CapError::InvalidSlot),
        (|s| s.revoke(9, 0).map(drop), CapError::NoSuchTable),
        (|s| s.lookup(A, 0, Rights::GRANT).map(drop), CapError::MissingRights),
    ];
    for (i, (op, expected)) in failing.iter().enumerate() {
        assert_eq!(op(&mut s), Err(*expected), "op {i}");
        assert_eq!(snapshot(&s), before, "op {i} changed the caps");
        assert_eq!(counts(&objects), counts_before, "op {i} changed a reference count");
        s.check_invariants();
    }
}

#[test]
fn stale_node_of_reused_slot_does_not_confuse_revoke() {
    let mut s = space_with(&[A, B], 8);
    s.insert_original(A, obj(0), Rights::ALL, 0).unwrap(); // A0
    let child = s.copy((A, 0), A, Rights::ALL, None).unwrap(); // A1
    let old_node = s.get(A, child).unwrap().node();
    s.delete(A, child).unwrap();
    // Same slot, and (through the arena's free list) the same node entry, new generation.
    assert_eq!(s.insert_original(A, obj(1), RW, 0), Ok(child));
    assert_ne!(s.get(A, child).unwrap().node(), old_node);
    assert!(s.revoke(A, 0).unwrap().is_empty());
    assert_eq!(*s.get(A, child).unwrap().object, 1);
    assert_eq!(s.parent_of(A, child), None);

    // A reused entry that now belongs to another parent's child list.
    s.insert_original(B, obj(2), Rights::ALL, 0).unwrap(); // B0
    let x = s.copy((A, 0), B, Rights::ALL, None).unwrap(); // B1 under A0
    s.delete(B, x).unwrap();
    let y = s.copy((B, 0), B, Rights::ALL, None).unwrap(); // B1 again, under B0
    assert_eq!(x, y);
    assert!(s.revoke(A, 0).unwrap().is_empty());
    assert_eq!(s.revoke(B, 0).unwrap().len(), 1);
    s.check_invariants();
}

#[test]
#[should_panic(expected = "stale node id")]
fn stale_node_id_is_detected() {
    let mut s = space_with(&[A], 8);
    s.insert_original(A, obj(0), RW, 0).unwrap();
    let node = s.get(A, 0).unwrap().node();
    s.delete(A, 0).unwrap();
    s.insert_original(A, obj(1), RW, 0).unwrap();
    s.tree.first_child(node);
}

/// Runs `f` on a thread with a 64 KiB stack, as tight as a kernel stack.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(64 * 1024).spawn(f).unwrap().join().unwrap();
}

const CHAIN: u32 = 100_000;

/// A chain: slot 0 is the original, slot n+1 is copied from slot n.
fn chain(o: &Rc<u32>) -> Space {
    let mut s = space_with(&[A], CHAIN + 1);
    s.insert_original(A, o.clone(), Rights::ALL, 0).unwrap();
    for n in 0..CHAIN {
        assert_eq!(s.copy((A, n), A, Rights::ALL, None), Ok(n + 1));
    }
    s
}

#[test]
fn long_chain_revokes_without_deep_stack() {
    on_small_stack(|| {
        let o = obj(1);
        let mut s = chain(&o);
        let gone = s.revoke(A, 0).unwrap();
        assert_eq!(gone.len(), CHAIN as usize);
        drop(gone);
        assert_eq!(Rc::strong_count(&o), 2);
        assert_eq!(s.count(A), Ok(1));
    });
}

#[test]
fn long_chain_delete_destroy_and_drop_without_deep_stack() {
    on_small_stack(|| {
        let o = obj(1);
        let mut s = chain(&o);
        // Remove every other link from the top: the rest re-parent, one at a time.
        for n in (0..CHAIN).step_by(2) {
            s.delete(A, n).unwrap();
        }
        assert_eq!(s.parent_of(A, 3), Some((A, 1)));
        assert_eq!(s.revoke(A, CHAIN - 1).unwrap().len(), 1);
        assert_eq!(s.destroy_table(A).unwrap().len(), (CHAIN / 2) as usize);
        assert_eq!(Rc::strong_count(&o), 1);

        let mut s = chain(&o);
        s.create_table(B, 1).unwrap();
        s.copy((A, CHAIN), B, Rights::ALL, None).unwrap();
        assert_eq!(s.destroy_table(A).unwrap().len(), CHAIN as usize + 1);
        assert_eq!(s.parent_of(B, 0), None);
        drop(s);
        let s = chain(&o);
        drop(s);
        assert_eq!(Rc::strong_count(&o), 1);
    });
}

#[test]
fn wide_tree_revokes() {
    let o = obj(1);
    let mut s = space_with(&[A], CHAIN + 1);
    s.insert_original(A, o.clone(), Rights::ALL, 0).unwrap();
    for _ in 0..CHAIN {
        s.copy((A, 0), A, Rights::READ, None).unwrap();
    }
    assert_eq!(s.revoke(A, 0).unwrap().len(), CHAIN as usize);
    assert_eq!(Rc::strong_count(&o), 2);
}
