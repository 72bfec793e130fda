//! The cgroup file system's inode numbers: a table between inode numbers and what they name (a
//! group by its resmgr path, or one control file of a group).
//!
//! resmgr names groups by path only, so the numbers are ours: a node keeps its number for as
//! long as the table remembers it, and the table forgets a node once resmgr is seen not to have
//! it any more (a removed group, with its files and every group below it). A number is never
//! handed out twice, so an inode of a removed group stays unknown (ENOENT) even after a group
//! of the same name is made again.
//!
//! Invariants: the root group `/` is [`ROOT`] and is never forgotten; `by_node` and `by_ino`
//! hold the same pairs.

use crate::node::Ino;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// The root group's inode.
pub const ROOT: Ino = 1;

/// What an inode of the cgroup file system names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    /// A group, by its canonical resmgr path (`/`, `/jobs`, `/jobs/a`).
    Group(String),
    /// A control file: its group's path and its name (`/jobs`, `pids.max`).
    File(String, String),
}

impl Node {
    /// The group this node is or belongs to.
    pub fn group(&self) -> &str {
        match self {
            Node::Group(g) | Node::File(g, _) => g,
        }
    }

    /// The group holding this node (`None` for the root group).
    fn parent(&self) -> Option<&str> {
        match self {
            Node::Group(g) if g == "/" => None,
            Node::Group(g) => Some(parent_of(g)),
            Node::File(g, _) => Some(g),
        }
    }
}

/// The path of group `name` inside `group`.
pub fn child_path(group: &str, name: &str) -> String {
    let mut p = String::from(group.trim_end_matches('/'));
    p.push('/');
    p.push_str(name);
    p
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Whether `path` is `group` or below it.
fn within(path: &str, group: &str) -> bool {
    path == group
        || (group == "/" && path.starts_with('/'))
        || path
            .strip_prefix(group)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// One remembered node: what it is and when it was first seen (its timestamps).
struct Entry {
    node: Node,
    seen: u64,
}

/// The table.
pub struct Inodes {
    by_node: BTreeMap<Node, Ino>,
    by_ino: BTreeMap<Ino, Entry>,
    next: Ino,
}

impl Inodes {
    /// A table holding the root group only, seen at `now`.
    pub fn new(now: u64) -> Self {
        let root = Node::Group(String::from("/"));
        let mut t = Inodes {
            by_node: BTreeMap::new(),
            by_ino: BTreeMap::new(),
            next: ROOT + 1,
        };
        t.by_node.insert(root.clone(), ROOT);
        t.by_ino.insert(
            ROOT,
            Entry {
                node: root,
                seen: now,
            },
        );
        t
    }

    /// What `ino` names, if the table knows it.
    pub fn node(&self, ino: Ino) -> Option<&Node> {
        self.by_ino.get(&ino).map(|e| &e.node)
    }

    /// When `ino` was first seen (seconds since the epoch).
    pub fn seen(&self, ino: Ino) -> u64 {
        self.by_ino.get(&ino).map_or(0, |e| e.seen)
    }

    /// The inode of `node`, numbered now (first seen at `now`) if it had none.
    pub fn ino(&mut self, node: Node, now: u64) -> Ino {
        if let Some(&ino) = self.by_node.get(&node) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_node.insert(node.clone(), ino);
        self.by_ino.insert(ino, Entry { node, seen: now });
        ino
    }

    /// Forgets the group `path`, its files and every group below it (never the root itself:
    /// `/` forgets everything but the root).
    pub fn forget_group(&mut self, path: &str) {
        self.forget(|n| within(n.group(), path));
    }

    /// Forgets the children of `group` that `listed` does not hold (what resmgr no longer
    /// has), with everything below them.
    pub fn keep_children(&mut self, group: &str, listed: &[Node]) {
        let gone: Vec<Node> = self
            .by_node
            .keys()
            .filter(|n| n.parent() == Some(group) && !listed.contains(n))
            .cloned()
            .collect();
        for n in gone {
            match n {
                Node::Group(g) => self.forget_group(&g),
                file => self.forget(|x| *x == file),
            }
        }
    }

    /// Forgets the child `name` of `group` (a file or a group, with everything below it).
    pub fn forget_child(&mut self, group: &str, name: &str) {
        let file = Node::File(String::from(group), String::from(name));
        self.forget(|x| *x == file);
        self.forget_group(&child_path(group, name));
    }

    fn forget(&mut self, mut doomed: impl FnMut(&Node) -> bool) {
        let gone: Vec<Node> = self
            .by_node
            .keys()
            .filter(|n| *n != &Node::Group(String::from("/")) && doomed(n))
            .cloned()
            .collect();
        for n in gone {
            if let Some(ino) = self.by_node.remove(&n) {
                self.by_ino.remove(&ino);
            }
        }
    }

    /// Nodes remembered (the root included).
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(p: &str) -> Node {
        Node::Group(p.into())
    }
    fn file(g: &str, f: &str) -> Node {
        Node::File(g.into(), f.into())
    }

    #[test]
    fn a_node_keeps_its_number_and_numbers_are_never_reused() {
        let mut t = Inodes::new(0);
        assert_eq!(t.ino(group("/"), 5), ROOT);
        let jobs = t.ino(group("/jobs"), 5);
        let max = t.ino(file("/jobs", "pids.max"), 6);
        assert_eq!(
            t.ino(group("/jobs"), 9),
            jobs,
            "the same path, the same inode"
        );
        assert_eq!(t.seen(jobs), 5, "first seen keeps its time");
        assert_ne!(jobs, max);
        t.forget_group("/jobs");
        assert_eq!(t.node(jobs), None, "a removed group's inode is unknown");
        assert_eq!(t.node(max), None, "and so are its files'");
        let again = t.ino(group("/jobs"), 10);
        assert!(
            again != jobs && again != max,
            "a group made again gets a new number"
        );
    }

    #[test]
    fn forgetting_a_group_takes_what_is_below_it_and_nothing_beside_it() {
        let mut t = Inodes::new(0);
        let a = t.ino(group("/a"), 0);
        let ab = t.ino(group("/a/b"), 0);
        let abf = t.ino(file("/a/b", "memory.max"), 0);
        let ab2 = t.ino(group("/ab"), 0);
        let ab2f = t.ino(file("/ab", "memory.max"), 0);
        let rootf = t.ino(file("/", "memory.current"), 0);
        t.forget_group("/a");
        for gone in [a, ab, abf] {
            assert_eq!(t.node(gone), None);
        }
        for kept in [ab2, ab2f, rootf, ROOT] {
            assert!(t.node(kept).is_some(), "/ab is not below /a");
        }
        t.forget_group("/");
        assert_eq!(t.len(), 1, "only the root is left");
        assert_eq!(t.node(ROOT), Some(&group("/")));
    }

    #[test]
    fn children_missing_from_a_listing_are_forgotten() {
        let mut t = Inodes::new(0);
        let a = t.ino(group("/a"), 0);
        let af = t.ino(file("/a", "pids.max"), 0);
        let b = t.ino(group("/b"), 0);
        let bc = t.ino(group("/b/c"), 0);
        let bcf = t.ino(file("/b/c", "pids.max"), 0);
        let cur = t.ino(file("/", "pids.current"), 0);
        t.keep_children("/", &[group("/a"), file("/", "pids.current")]);
        for kept in [a, af, cur] {
            assert!(t.node(kept).is_some());
        }
        for gone in [b, bc, bcf] {
            assert_eq!(
                t.node(gone),
                None,
                "/b left the listing with what is below it"
            );
        }
        t.forget_child("/a", "pids.max");
        assert_eq!(t.node(af), None);
        assert!(t.node(a).is_some());
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(child_path("/", "jobs"), "/jobs");
        assert_eq!(child_path("/jobs", "a"), "/jobs/a");
        assert_eq!(group("/jobs/a").parent(), Some("/jobs"));
        assert_eq!(group("/jobs").parent(), Some("/"));
        assert_eq!(group("/").parent(), None);
        assert_eq!(file("/jobs", "pids.max").parent(), Some("/jobs"));
    }
}
