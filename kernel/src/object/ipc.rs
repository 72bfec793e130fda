//! The IPC objects: connections (synchronous calls) and notifications (signal words). What the
//! kernel does with them is in `ipc/`.

use super::Id;
use alloc::collections::VecDeque;

/// A synchronous IPC endpoint. Its owner is the process that created it: when the owner exits
/// the connection dies and every call on it fails with `PeerDied`.
pub struct Connection {
    pub owner: Id,
    pub dead: bool,
    /// Server threads blocked in recv.
    pub servers: VecDeque<Id>,
    /// Client threads whose call waits for a server.
    pub pending: VecDeque<Id>,
    pub refs: u32,
}

impl Connection {
    pub fn new(owner: Id) -> Self {
        Self { owner, dead: false, servers: VecDeque::new(), pending: VecDeque::new(), refs: 0 }
    }
}

/// An asynchronous signal word.
pub struct Notification {
    pub bits: u64,
    pub waiters: VecDeque<Id>,
    pub refs: u32,
}

impl Notification {
    pub fn new() -> Self {
        Self { bits: 0, waiters: VecDeque::new(), refs: 0 }
    }
}

impl Default for Notification {
    fn default() -> Self {
        Self::new()
    }
}
