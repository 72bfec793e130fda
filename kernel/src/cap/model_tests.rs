//! Randomized test: thousands of random operations over a few small tables, each checked against
//! a deliberately naive reference model (maps and linear scans, parent pointers by cap uid).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::vec::Vec;

use super::tests::{Snapshot, Space, snapshot};
use super::*;

#[derive(Clone)]
struct ModelCap {
    uid: u64,
    object: u32,
    rights: Rights,
    badge: u64,
    parent: Option<u64>,
}

struct ModelTable {
    max_slots: u32,
    caps: BTreeMap<Slot, ModelCap>,
}

#[derive(Default)]
struct Model {
    tables: BTreeMap<TableId, ModelTable>,
    next_uid: u64,
}

impl Model {
    fn table(&self, t: TableId) -> Result<&ModelTable, CapError> {
        self.tables.get(&t).ok_or(CapError::NoSuchTable)
    }

    fn cap(&self, t: TableId, s: Slot) -> Result<&ModelCap, CapError> {
        self.table(t)?.caps.get(&s).ok_or(CapError::InvalidSlot)
    }

    fn lowest_free(&self, t: TableId) -> Option<Slot> {
        let table = &self.tables[&t];
        (0..table.max_slots).find(|s| !table.caps.contains_key(s))
    }

    fn uid(&mut self) -> u64 {
        self.next_uid += 1;
        self.next_uid
    }

    fn location(&self, uid: u64) -> (TableId, Slot) {
        for (&t, table) in &self.tables {
            for (&s, cap) in &table.caps {
                if cap.uid == uid {
                    return (t, s);
                }
            }
        }
        panic!("model: no cap {uid}");
    }

    /// Removes one cap; its children adopt its parent.
    fn remove(&mut self, t: TableId, s: Slot) -> ModelCap {
        let cap = self.tables.get_mut(&t).unwrap().caps.remove(&s).unwrap();
        for table in self.tables.values_mut() {
            for other in table.caps.values_mut() {
                if other.parent == Some(cap.uid) {
                    other.parent = cap.parent;
                }
            }
        }
        cap
    }

    fn create_table(&mut self, t: TableId, max_slots: u32) -> Result<(), CapError> {
        if self.tables.contains_key(&t) {
            return Err(CapError::AlreadyExists);
        }
        self.tables.insert(t, ModelTable { max_slots, caps: BTreeMap::new() });
        Ok(())
    }

    fn destroy_table(&mut self, t: TableId) -> Result<Vec<u32>, CapError> {
        let slots: Vec<Slot> = self.table(t)?.caps.keys().copied().collect();
        let objects = slots.into_iter().map(|s| self.remove(t, s).object).collect();
        self.tables.remove(&t);
        Ok(objects)
    }

    fn insert_at(&mut self, t: TableId, s: Slot, object: u32, rights: Rights, badge: u64) -> Result<(), CapError> {
        let table = self.table(t)?;
        if s >= table.max_slots {
            return Err(CapError::InvalidSlot);
        }
        if table.caps.contains_key(&s) {
            return Err(CapError::SlotInUse);
        }
        let uid = self.uid();
        self.tables.get_mut(&t).unwrap().caps.insert(s, ModelCap { uid, object, rights, badge, parent: None });
        Ok(())
    }

    fn insert(&mut self, t: TableId, object: u32, rights: Rights, badge: u64) -> Result<Slot, CapError> {
        self.table(t)?;
        let s = self.lowest_free(t).ok_or(CapError::TableFull)?;
        self.insert_at(t, s, object, rights, badge)?;
        Ok(s)
    }

    fn copy(
        &mut self,
        src: (TableId, Slot),
        dest: TableId,
        rights: Rights,
        badge: Option<u64>,
    ) -> Result<Slot, CapError> {
        let source = self.cap(src.0, src.1)?.clone();
        self.table(dest)?;
        if rights.bits() & !source.rights.bits() != 0 {
            return Err(CapError::RightsEscalation);
        }
        if dest != src.0 && source.rights.bits() & Rights::GRANT.bits() == 0 {
            return Err(CapError::NoGrantRight);
        }
        if badge.is_some() && source.badge != 0 {
            return Err(CapError::AlreadyBadged);
        }
        let s = self.lowest_free(dest).ok_or(CapError::TableFull)?;
        let uid = self.uid();
        let cap = ModelCap {
            uid,
            object: source.object,
            rights,
            badge: badge.unwrap_or(source.badge),
            parent: Some(source.uid),
        };
        self.tables.get_mut(&dest).unwrap().caps.insert(s, cap);
        Ok(s)
    }

    fn move_cap(&mut self, src: (TableId, Slot), dest: TableId) -> Result<Slot, CapError> {
        let source = self.cap(src.0, src.1)?;
        self.table(dest)?;
        if dest != src.0 && source.rights.bits() & Rights::GRANT.bits() == 0 {
            return Err(CapError::NoGrantRight);
        }
        let s = self.lowest_free(dest).ok_or(CapError::TableFull)?;
        let cap = self.tables.get_mut(&src.0).unwrap().caps.remove(&src.1).unwrap();
        self.tables.get_mut(&dest).unwrap().caps.insert(s, cap);
        Ok(s)
    }

    fn delete(&mut self, t: TableId, s: Slot) -> Result<u32, CapError> {
        self.cap(t, s)?;
        Ok(self.remove(t, s).object)
    }

    fn revoke(&mut self, t: TableId, s: Slot) -> Result<Vec<u32>, CapError> {
        let root = self.cap(t, s)?.uid;
        let mut doomed = vec![root];
        let mut i = 0;
        while i < doomed.len() {
            for table in self.tables.values() {
                for cap in table.caps.values() {
                    if cap.parent == Some(doomed[i]) {
                        doomed.push(cap.uid);
                    }
                }
            }
            i += 1;
        }
        let mut objects = Vec::new();
        for &uid in &doomed[1..] {
            let (t, s) = self.location(uid);
            objects.push(self.tables.get_mut(&t).unwrap().caps.remove(&s).unwrap().object);
        }
        Ok(objects)
    }

    fn lookup(&self, t: TableId, s: Slot, need: Rights) -> Result<(u32, u64), CapError> {
        let cap = self.cap(t, s)?;
        if need.bits() & !cap.rights.bits() != 0 {
            return Err(CapError::MissingRights);
        }
        Ok((cap.object, cap.badge))
    }

    fn snapshot(&self) -> Snapshot {
        let limits = self.tables.iter().map(|(&t, table)| (t, table.max_slots)).collect();
        let mut caps = BTreeMap::new();
        for (&t, table) in &self.tables {
            for (&s, cap) in &table.caps {
                let parent = cap.parent.map(|uid| self.location(uid));
                caps.insert((t, s), (cap.object, cap.rights, cap.badge, parent));
            }
        }
        (limits, caps)
    }

    /// How many caps hold each object.
    fn references(&self) -> BTreeMap<u32, usize> {
        let mut counts = BTreeMap::new();
        for cap in self.tables.values().flat_map(|t| t.caps.values()) {
            *counts.entry(cap.object).or_insert(0) += 1;
        }
        counts
    }
}

/// Knuth's MMIX linear congruential generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }

    fn rights(&mut self) -> Rights {
        Rights::from_bits(self.next() & Rights::ALL.bits()).unwrap()
    }
}

const TABLES: [TableId; 4] = [0, 1, 2, 3];
const MISSING_TABLE: TableId = 7;

fn values(objects: Vec<Rc<u32>>) -> Vec<u32> {
    let mut v: Vec<u32> = objects.iter().map(|o| **o).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort();
    v
}

/// Mostly a live cap (so operations get past decoding), sometimes any slot of any table.
fn pick_source(rng: &mut Lcg, model: &Model) -> (TableId, Slot) {
    let live: Vec<(TableId, Slot)> =
        model.tables.iter().flat_map(|(&t, table)| table.caps.keys().map(move |&s| (t, s))).collect();
    if !live.is_empty() && rng.chance(85) {
        live[rng.below(live.len() as u32) as usize]
    } else {
        (pick_table(rng), rng.below(22))
    }
}

fn pick_table(rng: &mut Lcg) -> TableId {
    if rng.chance(3) { MISSING_TABLE } else { TABLES[rng.below(4) as usize] }
}

fn run(seed: u64, ops: usize) {
    let mut rng = Lcg(seed);
    let mut space = Space::new();
    let mut model = Model::default();
    let mut objects: Vec<Rc<u32>> = Vec::new();
    for t in TABLES {
        let max = 6 + rng.below(15);
        space.create_table(t, max).unwrap();
        model.create_table(t, max).unwrap();
    }
    for step in 0..ops {
        let what = rng.below(100);
        let desc;
        match what {
            0..=11 => {
                let (t, rights) = (pick_table(&mut rng), rng.rights());
                let badge = if rng.chance(20) { u64::from(rng.below(5)) } else { 0 };
                let n = objects.len() as u32;
                objects.push(Rc::new(n));
                desc = format!("insert_original({t}, {n}, {rights}, {badge})");
                let got = space.insert_original(t, objects[n as usize].clone(), rights, badge);
                assert_eq!(got, model.insert(t, n, rights, badge), "{desc}");
            }
            12..=15 => {
                let (t, s, rights) = (pick_table(&mut rng), rng.below(22), rng.rights());
                let n = objects.len() as u32;
                objects.push(Rc::new(n));
                desc = format!("insert_original_at({t}, {s}, {n}, {rights})");
                let got = space.insert_original_at(t, s, objects[n as usize].clone(), rights, 0);
                assert_eq!(got, model.insert_at(t, s, n, rights, 0), "{desc}");
            }
            16..=51 => {
                let src = pick_source(&mut rng, &model);
                let dest = if rng.chance(50) { src.0 } else { pick_table(&mut rng) };
                let rights = match model.cap(src.0, src.1) {
                    Ok(cap) if rng.chance(90) => cap.rights & (rng.rights() | Rights::GRANT),
                    _ => rng.rights(),
                };
                let badge = match rng.below(20) {
                    0..=14 => None,
                    15 => Some(0),
                    _ => Some(u64::from(rng.below(1000)) + 1),
                };
                desc = format!("copy({src:?}, {dest}, {rights}, {badge:?})");
                let got = space.copy(src, dest, rights, badge);
                assert_eq!(got, model.copy(src, dest, rights, badge), "{desc}");
            }
            52..=59 => {
                let src = pick_source(&mut rng, &model);
                let dest = if rng.chance(30) { src.0 } else { pick_table(&mut rng) };
                desc = format!("move_cap({src:?}, {dest})");
                assert_eq!(space.move_cap(src, dest), model.move_cap(src, dest), "{desc}");
            }
            60..=75 => {
                let (t, s) = pick_source(&mut rng, &model);
                desc = format!("delete({t}, {s})");
                let got = space.delete(t, s).map(|o| *o);
                assert_eq!(got, model.delete(t, s), "{desc}");
            }
            76..=83 => {
                let (t, s) = pick_source(&mut rng, &model);
                desc = format!("revoke({t}, {s})");
                let got = space.revoke(t, s).map(values);
                assert_eq!(got, model.revoke(t, s).map(sorted), "{desc}");
            }
            84..=89 => {
                let ((t, s), need) = (pick_source(&mut rng, &model), rng.rights() & rng.rights());
                desc = format!("lookup({t}, {s}, {need})");
                let got = space.lookup(t, s, need).map(|c| (*c.object, c.badge));
                assert_eq!(got, model.lookup(t, s, need), "{desc}");
            }
            90..=91 => {
                let t = pick_table(&mut rng);
                desc = format!("destroy_table({t})");
                let got = space.destroy_table(t).map(values);
                assert_eq!(got, model.destroy_table(t).map(sorted), "{desc}");
            }
            _ => {
                let (t, max) = (pick_table(&mut rng), rng.below(21));
                desc = format!("create_table({t}, {max})");
                assert_eq!(space.create_table(t, max), model.create_table(t, max), "{desc}");
            }
        }
        let context = format!("seed {seed} step {step}: {desc}");
        space.check_invariants();
        assert_eq!(snapshot(&space), model.snapshot(), "{context}");
        for t in TABLES.into_iter().chain([MISSING_TABLE]) {
            assert_eq!(space.count(t), model.table(t).map(|table| table.caps.len()), "{context}");
        }
        let references = model.references();
        for (n, object) in objects.iter().enumerate() {
            let expected = 1 + references.get(&(n as u32)).copied().unwrap_or(0);
            assert_eq!(Rc::strong_count(object), expected, "{context}: object {n}");
        }
    }
}

#[test]
fn random_operations_match_reference_model() {
    for seed in 1..=8 {
        run(seed, 3000);
    }
}
