//! Pid namespaces: what the process manager shows each caller of the processes and their
//! numbers.
//!
//! The root namespace numbers processes by their kernel pids (everything outside a namespace
//! sees what it always saw). A program started with SPAWN's [`NEW_PID_NS`] flag is pid 1 of a new
//! namespace below its spawner's; everything it and its descendants start are numbered 2, 3, ...
//! there, and also in every namespace above (each with its own numbers: the parent sees them
//! with its own). A caller sees, by PS, and names, by KILL and MOVE, only the processes of its
//! namespace and those below, with its namespace's numbers. When a namespace's pid 1 ends, every
//! process left in the namespace (and below) is killed, as Linux does.
//!
//! [`NEW_PID_NS`]: keel_rt::proto::procmgr::SPAWN_NEW_PID_NS

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use keel_rt::Error;

/// A namespace's number; [`ROOT`] is the machine's.
pub type NsId = u32;
pub const ROOT: NsId = 0;
/// Deepest nesting (the root is depth 0).
pub const MAX_DEPTH: usize = 32;

struct Space {
    parent: NsId,
    depth: usize,
    /// The next number to give.
    next: u64,
    /// Kernel pid → this namespace's pid, for every process in it or below.
    local: BTreeMap<u64, u64>,
    /// Its pid 1 (kernel pid).
    init: u64,
    /// Its pid 1 ended: it takes no new processes and goes with its last member.
    dying: bool,
}

/// Every namespace.
pub struct PidNamespaces {
    spaces: BTreeMap<NsId, Space>,
    next_id: NsId,
    /// Kernel pid → the namespace it was started in (absent: the root).
    of: BTreeMap<u64, NsId>,
}

impl Default for PidNamespaces {
    fn default() -> Self {
        Self::new()
    }
}

impl PidNamespaces {
    pub const fn new() -> Self {
        PidNamespaces { spaces: BTreeMap::new(), next_id: 1, of: BTreeMap::new() }
    }

    /// The namespace process `pid` (kernel pid) was started in.
    pub fn ns_of(&self, pid: u64) -> NsId {
        self.of.get(&pid).copied().unwrap_or(ROOT)
    }

    /// The namespaces from `ns` up to, not including, the root.
    fn chain(&self, mut ns: NsId) -> Vec<NsId> {
        let mut v = Vec::new();
        while let Some(s) = self.spaces.get(&ns) {
            v.push(ns);
            ns = s.parent;
        }
        v
    }

    /// Puts new process `pid` in namespace `ns`, or with `new` as pid 1 of a new namespace
    /// below `ns`; the namespace it is in. `Limit` past [`MAX_DEPTH`]; `BadState` when `ns` is
    /// going (its pid 1 ended).
    pub fn enter(&mut self, ns: NsId, new: bool, pid: u64) -> Result<NsId, Error> {
        if self.spaces.get(&ns).is_some_and(|s| s.dying) {
            return Err(Error::BadState);
        }
        let inner = if new {
            let depth = self.spaces.get(&ns).map_or(0, |s| s.depth) + 1;
            if depth > MAX_DEPTH {
                return Err(Error::Limit);
            }
            let id = self.next_id;
            self.next_id += 1;
            self.spaces.insert(id, Space { parent: ns, depth, next: 1, local: BTreeMap::new(), init: pid, dying: false });
            id
        } else {
            ns
        };
        for level in self.chain(inner) {
            if let Some(s) = self.spaces.get_mut(&level) {
                s.local.insert(pid, s.next);
                s.next += 1;
            }
        }
        if inner != ROOT {
            self.of.insert(pid, inner);
        }
        Ok(inner)
    }

    /// Process `pid` as a caller in `viewer` numbers it; None if it is not in `viewer` or below.
    pub fn local(&self, viewer: NsId, pid: u64) -> Option<u64> {
        if viewer == ROOT {
            return Some(pid);
        }
        self.spaces.get(&viewer)?.local.get(&pid).copied()
    }

    /// The kernel pid of the process `viewer` numbers `local`.
    pub fn global(&self, viewer: NsId, local: u64) -> Option<u64> {
        if viewer == ROOT {
            return Some(local);
        }
        self.spaces.get(&viewer)?.local.iter().find(|&(_, &l)| l == local).map(|(&g, _)| g)
    }

    /// Process `pid` ended: the processes to kill because it was pid 1 of their namespace (every
    /// one left in it and below), kernel pids.
    pub fn leave(&mut self, pid: u64) -> Vec<u64> {
        let ns = self.of.remove(&pid).unwrap_or(ROOT);
        let mut kill = Vec::new();
        for level in self.chain(ns) {
            let Some(s) = self.spaces.get_mut(&level) else { continue };
            s.local.remove(&pid);
            if s.init == pid {
                s.dying = true;
                kill.extend(s.local.keys().copied());
            }
        }
        // A dying namespace goes with its last member (the ones below it went first).
        let gone: Vec<NsId> = self.spaces.iter().filter(|(_, s)| s.dying && s.local.is_empty()).map(|(&id, _)| id).collect();
        for id in gone {
            self.spaces.remove(&id);
        }
        kill.sort_unstable();
        kill.dedup();
        kill
    }

    /// Namespaces alive (besides the root).
    pub fn len(&self) -> usize {
        self.spaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spaces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_namespace_numbers_from_1_and_its_parent_keeps_its_own_numbers() {
        let mut n = PidNamespaces::new();
        let a = n.enter(ROOT, true, 100).unwrap();
        assert_eq!(n.local(a, 100), Some(1), "the first is pid 1");
        n.enter(a, false, 105).unwrap();
        let b = n.enter(a, true, 110).unwrap();
        n.enter(b, false, 111).unwrap();
        // In a: 100 → 1, 105 → 2, 110 → 3, 111 → 4; in b: 110 → 1, 111 → 2; the root: kernel pids.
        assert_eq!([n.local(a, 105), n.local(a, 110), n.local(a, 111)], [Some(2), Some(3), Some(4)]);
        assert_eq!([n.local(b, 110), n.local(b, 111)], [Some(1), Some(2)]);
        assert_eq!(n.local(ROOT, 111), Some(111));
        assert_eq!(n.local(b, 105), None, "b sees nothing above it");
        assert_eq!(n.local(a, 7), None, "nor a what is outside it");
        assert_eq!(n.global(a, 4), Some(111));
        assert_eq!(n.global(b, 1), Some(110));
        assert_eq!(n.global(b, 3), None);
        assert_eq!(n.ns_of(111), b);
        assert_eq!(n.ns_of(42), ROOT);
    }

    #[test]
    fn when_pid_1_ends_everything_left_in_its_namespace_is_killed_and_it_goes() {
        let mut n = PidNamespaces::new();
        let a = n.enter(ROOT, true, 100).unwrap();
        n.enter(a, false, 101).unwrap();
        let b = n.enter(a, true, 102).unwrap();
        n.enter(b, false, 103).unwrap();
        assert!(n.leave(101).is_empty(), "an ordinary member");
        assert_eq!(n.leave(100), [102, 103], "a's pid 1: the rest of a, b included");
        assert_eq!(n.enter(a, false, 104), Err(Error::BadState), "a takes no one new");
        assert_eq!(n.leave(102), [103], "b's pid 1 too");
        assert_eq!(n.len(), 2);
        assert!(n.leave(103).is_empty());
        assert!(n.is_empty(), "both went with their last member");
        assert!(n.leave(999).is_empty(), "a pid it never knew");
    }

    #[test]
    fn nesting_stops_at_the_depth_limit() {
        let mut n = PidNamespaces::new();
        let mut ns = ROOT;
        for pid in 0..MAX_DEPTH as u64 {
            ns = n.enter(ns, true, 1000 + pid).unwrap();
        }
        assert_eq!(n.enter(ns, true, 5000), Err(Error::Limit));
        assert_eq!(n.enter(ns, false, 5000).map(|_| n.local(ns, 5000)), Ok(Some(2)));
    }
}
