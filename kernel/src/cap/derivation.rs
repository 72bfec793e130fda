//! The derivation tree: which cap was copied from which, across every slot table.
//!
//! Each live cap owns exactly one node, and each node records where its cap lives (table and slot).
//! A copy's node is a child of its source's node; an original cap's node is a root. The tree only
//! records shape: it never owns caps or objects, and [`CapSpace`](super::CapSpace) keeps it and
//! the slot tables in step.
//!
//! Nodes live in an arena and are named by a generation-checked [`NodeId`]: freeing a node bumps
//! its generation, so an id that outlived its node is caught (as a broken invariant) instead of
//! silently naming whatever node reuses the entry.
//!
//! Children form a doubly linked sibling list. The ends of a list point at the parent (`prev` of
//! the first child, `next` of the last) and the parent knows its first and last child, so the
//! tree has no per-child parent pointer to maintain. That makes every change O(1):
//! - adding a child appends it to its parent's list;
//! - removing a node splices its whole child list into its own place among its siblings, so its
//!   children are re-parented to its parent (or, for a root, become parentless roots) without
//!   touching any of them but the first and the last.
//!
//! Parentless nodes are not linked to each other, except that the children of a removed root stay
//! in one parentless chain (both ends [`Link::End`]); such a chain has no owner and is harmless.
//! Revoking a node's subtree is "remove its first child" repeated until it has none: each removal
//! is O(1) and lifts the removed node's children into the list, so the loop visits each
//! descendant once, uses no recursion and no extra memory, whatever the tree's depth.

use alloc::vec::Vec;

use super::{Slot, TableId};

/// Where a cap lives.
pub(super) type Location = (TableId, Slot);

/// Names a node of the derivation tree; stale ids are detected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct NodeId {
    index: u32,
    generation: u32,
}

/// One end of a node's place in a sibling list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Link {
    /// The end of a parentless chain (a root).
    End,
    /// The end of `parent`'s child list: as `prev`, the node is the first child; as `next`, the last.
    Parent(NodeId),
    /// A neighbouring sibling.
    Sibling(NodeId),
}

impl Link {
    fn sibling(self) -> Option<NodeId> {
        match self {
            Link::Sibling(id) => Some(id),
            Link::End | Link::Parent(_) => None,
        }
    }
}

#[derive(Debug)]
struct Node {
    location: Location,
    prev: Link,
    next: Link,
    first_child: Option<NodeId>,
    last_child: Option<NodeId>,
}

#[derive(Debug)]
enum Entry {
    Live { generation: u32, node: Node },
    Free { generation: u32, next_free: Option<u32> },
}

/// The arena of derivation nodes.
#[derive(Debug, Default)]
pub(super) struct DerivationTree {
    entries: Vec<Entry>,
    /// Head of the list of free entries (threaded through `Entry::Free::next_free`).
    free_head: Option<u32>,
    live: usize,
}

impl DerivationTree {
    pub(super) fn new() -> Self {
        DerivationTree::default()
    }

    /// A new node without a parent.
    pub(super) fn insert_root(&mut self, location: Location) -> NodeId {
        self.alloc(Node { location, prev: Link::End, next: Link::End, first_child: None, last_child: None })
    }

    /// A new node, appended as the last child of `parent`.
    pub(super) fn insert_child(&mut self, parent: NodeId, location: Location) -> NodeId {
        let last = self.node(parent).last_child;
        let prev = last.map_or(Link::Parent(parent), Link::Sibling);
        let id = self.alloc(Node { location, prev, next: Link::Parent(parent), first_child: None, last_child: None });
        match last {
            Some(last) => self.node_mut(last).next = Link::Sibling(id),
            None => self.node_mut(parent).first_child = Some(id),
        }
        self.node_mut(parent).last_child = Some(id);
        id
    }

    /// Removes a node; its children take its place among its siblings (their new parent is its
    /// parent, or none if it was a root).
    pub(super) fn remove(&mut self, id: NodeId) {
        let node = self.node(id);
        let (prev, next) = (node.prev, node.next);
        // What the neighbours before and after `id` will point at instead of `id`.
        let (forward, backward) = match (node.first_child, node.last_child) {
            (Some(first), Some(last)) => {
                self.node_mut(first).prev = prev;
                self.node_mut(last).next = next;
                (Link::Sibling(first), Link::Sibling(last))
            }
            (None, None) => (next, prev),
            _ => panic!("derivation tree: node {id:?} has only one of first/last child"),
        };
        match prev {
            Link::Sibling(before) => self.node_mut(before).next = forward,
            Link::Parent(parent) => self.node_mut(parent).first_child = forward.sibling(),
            Link::End => {}
        }
        match next {
            Link::Sibling(after) => self.node_mut(after).prev = backward,
            Link::Parent(parent) => self.node_mut(parent).last_child = backward.sibling(),
            Link::End => {}
        }
        self.free(id);
    }

    /// The node's first child.
    pub(super) fn first_child(&self, id: NodeId) -> Option<NodeId> {
        self.node(id).first_child
    }

    /// Where the node's cap lives.
    pub(super) fn location(&self, id: NodeId) -> Location {
        self.node(id).location
    }

    /// Records that the node's cap moved.
    pub(super) fn set_location(&mut self, id: NodeId, location: Location) {
        self.node_mut(id).location = location;
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        self.live += 1;
        match self.free_head {
            Some(index) => {
                let entry = &mut self.entries[index as usize];
                let Entry::Free { generation, next_free } = *entry else {
                    panic!("derivation tree: free list names live entry {index}");
                };
                self.free_head = next_free;
                *entry = Entry::Live { generation, node };
                NodeId { index, generation }
            }
            None => {
                let index = u32::try_from(self.entries.len())
                    .expect("derivation tree: more than u32::MAX live caps (memory would run out first)");
                self.entries.push(Entry::Live { generation: 0, node });
                NodeId { index, generation: 0 }
            }
        }
    }

    fn free(&mut self, id: NodeId) {
        self.node(id);
        self.entries[id.index as usize] =
            Entry::Free { generation: id.generation.wrapping_add(1), next_free: self.free_head };
        self.free_head = Some(id.index);
        self.live -= 1;
    }

    fn node(&self, id: NodeId) -> &Node {
        match self.entries.get(id.index as usize) {
            Some(Entry::Live { generation, node }) if *generation == id.generation => node,
            _ => panic!("derivation tree: stale node id {id:?} (a cap or link outlived its node)"),
        }
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        match self.entries.get_mut(id.index as usize) {
            Some(Entry::Live { generation, node }) if *generation == id.generation => node,
            _ => panic!("derivation tree: stale node id {id:?} (a cap or link outlived its node)"),
        }
    }
}

/// Inspection for tests: parents, and a full check of the link invariants.
#[cfg(test)]
impl DerivationTree {
    /// The number of live nodes (equal to the number of caps in all tables).
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// The node's parent. O(number of earlier siblings).
    pub(super) fn parent(&self, id: NodeId) -> Option<NodeId> {
        let mut cur = id;
        loop {
            match self.node(cur).prev {
                Link::Parent(parent) => return Some(parent),
                Link::Sibling(before) => cur = before,
                Link::End => return None,
            }
        }
    }

    /// Every live node and its location.
    pub(super) fn live_nodes(&self) -> impl Iterator<Item = (NodeId, Location)> {
        self.entries.iter().enumerate().filter_map(|(index, entry)| match entry {
            Entry::Live { generation, node } => {
                Some((NodeId { index: index as u32, generation: *generation }, node.location))
            }
            Entry::Free { .. } => None,
        })
    }

    /// Panics unless every link is mirrored by its neighbour, the free list covers exactly the
    /// free entries, and there is no cycle.
    pub(super) fn check(&self) {
        let ids: Vec<NodeId> = self.live_nodes().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), self.live, "live count");
        for &id in &ids {
            let node = self.node(id);
            match node.prev {
                Link::Sibling(before) => assert_eq!(self.node(before).next, Link::Sibling(id)),
                Link::Parent(parent) => assert_eq!(self.node(parent).first_child, Some(id)),
                Link::End => {}
            }
            match node.next {
                Link::Sibling(after) => assert_eq!(self.node(after).prev, Link::Sibling(id)),
                Link::Parent(parent) => assert_eq!(self.node(parent).last_child, Some(id)),
                Link::End => {}
            }
            match (node.first_child, node.last_child) {
                (Some(first), Some(last)) => {
                    assert_eq!(self.node(first).prev, Link::Parent(id));
                    assert_eq!(self.node(last).next, Link::Parent(id));
                }
                (None, None) => {}
                other => panic!("first/last child disagree: {other:?}"),
            }
            let mut ancestor = self.parent(id);
            for _ in 0..=ids.len() {
                match ancestor {
                    Some(a) => ancestor = self.parent(a),
                    None => break,
                }
            }
            assert_eq!(ancestor, None, "cycle above {id:?}");
        }
        let mut free = 0;
        let mut cur = self.free_head;
        while let Some(index) = cur {
            let Entry::Free { next_free, .. } = self.entries[index as usize] else { panic!("live entry on free list") };
            free += 1;
            assert!(free <= self.entries.len(), "free list cycle");
            cur = next_free;
        }
        assert_eq!(free + self.live, self.entries.len(), "free list misses entries");
    }
}
