//! Quotas (the kernel half of cgroups): what they limit and how `quota_stat` reports it.
//!
//! A quota limits three resources of the processes in it and of every quota below it:
//! memory in bytes (frames of user memory and page tables, and the kernel's records of
//! processes, threads and memory objects), processes, and threads. A charge must fit under the
//! limit of the quota and of each of its ancestors. [`NO_LIMIT`] means no limit.

/// The memory (bytes) charged to the quota: a full [`crate::PAGE_SIZE`] per frame, plus a
/// kernel record's size for each process, thread and memory object.
pub const MEMORY: u64 = 0;
/// Running processes.
pub const PROCESSES: u64 = 1;
/// Live threads.
pub const THREADS: u64 = 2;
/// One past the highest resource number.
pub const RESOURCES: u64 = 3;

/// A limit that never refuses (cgroup v2's `max`).
pub const NO_LIMIT: u64 = u64::MAX;

/// Deepest quota tree the kernel keeps: the root is depth 0. Deeper `quota_create` fails with
/// `Limit` (every charge walks the tree up to the root).
pub const MAX_DEPTH: u32 = 32;

/// What `quota_stat(quota, resource)` returns in x1..x5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaStat {
    /// Charged now (this quota and every quota below it).
    pub usage: u64,
    /// The limit ([`NO_LIMIT`] for none).
    pub limit: u64,
    /// The highest usage ever charged.
    pub peak: u64,
    /// Charges refused because this quota's own limit was reached (cgroup v2's `max` event).
    pub refused: u64,
    /// Processes of this quota or below killed because a demand fault could not be given memory
    /// (`oom_kill`); 0 for the count resources.
    pub oom_kills: u64,
}

impl QuotaStat {
    /// The registers x1..x5.
    pub fn to_words(self) -> [u64; 5] {
        [self.usage, self.limit, self.peak, self.refused, self.oom_kills]
    }

    pub fn from_words(w: &[u64]) -> Self {
        let at = |i: usize| w.get(i).copied().unwrap_or(0);
        Self { usage: at(0), limit: at(1), peak: at(2), refused: at(3), oom_kills: at(4) }
    }
}
