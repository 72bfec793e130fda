//! [`IdMap`]: a table of kernel objects by [`Id`] whose lookups cost a few instructions.
//!
//! The hot paths (every system call, IPC, guest exit) look threads up by id several times; a
//! `BTreeMap` of a hundred threads spends ~150 instructions on each lookup scanning its nodes.
//! Object ids come from one counter (`Kernel::new_id`), so they are distinct and close together:
//! the id itself, masked, is a good slot number. Open addressing with linear probing, at most
//! half full, and backward-shift deletion (no tombstones, so a lookup stops at the first empty
//! slot). Values are boxed: growing moves 16-byte slots, not objects. The table halves when it
//! falls to an eighth full, so a spike of objects (a fuzzer, a burst of processes) gives its
//! memory back once they are gone.
//!
//! Unlike a `BTreeMap`, iteration is in slot order, not id order: nothing may rely on the order.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// An object id (`object::Id`), as the plain integer: capability tables (`cap`), below the
/// objects, use this map too.
type Id = u64;

pub struct IdMap<V> {
    slots: Vec<Option<(Id, Box<V>)>>,
    len: usize,
}

/// Slots of the first table; it doubles when it would be more than half full.
const FIRST_CAPACITY: usize = 16;

impl<V: core::fmt::Debug> core::fmt::Debug for IdMap<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> IdMap<V> {
    pub const fn new() -> Self {
        Self { slots: Vec::new(), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The slot holding `id`, if any.
    fn find(&self, id: Id) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = id as usize & mask;
        loop {
            match &self.slots[i] {
                None => return None,
                Some((k, _)) if *k == id => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    pub fn get(&self, id: &Id) -> Option<&V> {
        self.find(*id).and_then(|i| self.slots[i].as_ref()).map(|(_, v)| &**v)
    }

    pub fn get_mut(&mut self, id: &Id) -> Option<&mut V> {
        let i = self.find(*id)?;
        self.slots[i].as_mut().map(|(_, v)| &mut **v)
    }

    pub fn contains_key(&self, id: &Id) -> bool {
        self.find(*id).is_some()
    }

    /// Inserts `value` under `id`; the value it replaces, if any.
    pub fn insert(&mut self, id: Id, value: V) -> Option<V> {
        if let Some(i) = self.find(id) {
            let (_, old) = self.slots[i].as_mut()?;
            return Some(core::mem::replace(&mut **old, value));
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(id, Box::new(value));
        self.len += 1;
        None
    }

    /// Puts an id known to be absent into the first free slot of its probe sequence.
    fn place(&mut self, id: Id, value: Box<V>) {
        let mask = self.mask();
        let mut i = id as usize & mask;
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i] = Some((id, value));
    }

    fn grow(&mut self) {
        self.rehash((self.slots.len() * 2).max(FIRST_CAPACITY));
    }

    /// Moves every entry into a new table of `capacity` slots (a power of two above `len`).
    fn rehash(&mut self, capacity: usize) {
        let old = core::mem::take(&mut self.slots);
        self.slots.resize_with(capacity, || None);
        for (id, value) in old.into_iter().flatten() {
            self.place(id, value);
        }
    }

    pub fn remove(&mut self, id: &Id) -> Option<V> {
        let mut hole = self.find(*id)?;
        let (_, value) = self.slots[hole].take()?;
        self.len -= 1;
        // Backward shift: move each later entry of the cluster whose home slot is not cyclically
        // in (hole, j] into the hole, so no lookup stops early at the new empty slot.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some((k, _)) = &self.slots[j] else { break };
            let home = *k as usize & mask;
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        if self.slots.len() > FIRST_CAPACITY && self.len * 8 <= self.slots.len() {
            self.rehash(self.slots.len() / 2);
        }
        Some(*value)
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Id, &mut V) -> bool) {
        let gone: Vec<Id> = self.iter_mut().filter_map(|(id, v)| (!keep(id, v)).then_some(*id)).collect();
        for id in gone {
            self.remove(&id);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Id, &V)> {
        self.slots.iter().flatten().map(|(id, v)| (id, &**v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Id, &mut V)> {
        self.slots.iter_mut().flatten().map(|(id, v)| (&*id, &mut **v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Id> {
        self.iter().map(|(id, _)| id)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.iter_mut().map(|(_, v)| v)
    }
}

impl<V> core::ops::Index<&Id> for IdMap<V> {
    type Output = V;

    /// Panics if `id` is absent, as `BTreeMap`'s index does: for ids the caller knows are there.
    fn index(&self, id: &Id) -> &V {
        self.get(id).expect("IdMap: no entry for this id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// splitmix64, for a reproducible stream of operations.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn a_table_emptied_after_a_spike_shrinks_and_keeps_what_is_left() {
        let mut map = IdMap::new();
        for id in 1..=1_000u64 {
            map.insert(id * 3, id);
        }
        let peak = map.slots.len();
        assert!(peak >= 2_000, "{peak} slots for 1,000 entries");
        for id in 1..=997u64 {
            assert_eq!(map.remove(&(id * 3)), Some(id));
        }
        assert!(map.slots.len() <= 32, "{} slots left for {} entries", map.slots.len(), map.len());
        for id in 998..=1_000u64 {
            assert_eq!(map.get(&(id * 3)), Some(&id));
        }
        assert_eq!(map.len(), 3);
        map.retain(|_, _| false);
        assert!(map.is_empty() && map.slots.len() == FIRST_CAPACITY);
    }

    #[test]
    fn behaves_as_a_btreemap_under_random_inserts_removes_and_retains() {
        for seed in 0..20u64 {
            let mut rng = seed;
            let mut map = IdMap::new();
            let mut model = BTreeMap::new();
            // Ids from a counter with gaps (other kinds of objects take ids in between) and
            // now and then far-off ones, so clusters wrap and collide.
            let mut counter = 1u64;
            let mut live: Vec<u64> = Vec::new();
            for step in 0..5_000u64 {
                match next(&mut rng) % 10 {
                    0..=4 => {
                        counter += 1 + next(&mut rng) % 3;
                        let id = if next(&mut rng) % 16 == 0 { counter * 1024 } else { counter };
                        assert_eq!(map.insert(id, step), model.insert(id, step), "insert {id}");
                        if !live.contains(&id) {
                            live.push(id);
                        }
                    }
                    5..=7 if !live.is_empty() => {
                        let id = live.swap_remove((next(&mut rng) % live.len() as u64) as usize);
                        assert_eq!(map.remove(&id), model.remove(&id), "remove {id}");
                    }
                    8 => {
                        let id = next(&mut rng) % (counter + 2);
                        assert_eq!(map.remove(&id), model.remove(&id), "remove of a maybe-absent {id}");
                        live.retain(|&x| x != id);
                    }
                    _ => {
                        let m = 2 + next(&mut rng) % 5;
                        map.retain(|_, v| *v % m != 0);
                        model.retain(|_, v| *v % m != 0);
                        live.retain(|id| model.contains_key(id));
                    }
                }
                assert_eq!(map.len(), model.len());
                for (id, v) in &model {
                    assert_eq!(map.get(id), Some(v), "seed {seed} step {step}: lookup of {id}");
                }
                for id in [0, counter + 1, u64::MAX] {
                    assert_eq!(map.get(&id).is_some(), model.contains_key(&id));
                }
            }
            let mut seen: Vec<(u64, u64)> = map.iter().map(|(k, v)| (*k, *v)).collect();
            seen.sort_unstable();
            assert_eq!(seen, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn get_mut_index_and_values_reach_the_stored_values() {
        let mut map = IdMap::new();
        assert!(map.is_empty() && map.get(&1).is_none());
        for id in 1..=100u64 {
            map.insert(id * 7, id);
        }
        *map.get_mut(&70).unwrap() += 1000;
        assert_eq!(map[&70], 1010);
        assert!(map.contains_key(&700) && !map.contains_key(&701));
        assert_eq!(map.values().sum::<u64>(), (1..=100).sum::<u64>() + 1000);
        for v in map.values_mut() {
            *v = 0;
        }
        assert!(map.values().all(|&v| v == 0));
        assert_eq!(map.keys().count(), 100);
    }
}
