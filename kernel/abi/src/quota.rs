//! Quotas (the kernel half of cgroups): what they limit and how `quota_stat` reports it.
//!
//! A quota limits the resources of the processes in it and of every quota below it: memory in
//! bytes (frames of user memory and page tables, and the kernel's records of processes and
//! threads), processes, threads, and CPU time. A charge must fit under the
//! limit of the quota and of each of its ancestors. [`NO_LIMIT`] means no limit.

/// The memory (bytes) charged to the quota: a full [`crate::PAGE_SIZE`] per frame, plus a
/// kernel record's size for each process and thread.
pub const MEMORY: u64 = 0;
/// Running processes.
pub const PROCESSES: u64 = 1;
/// Live threads.
pub const THREADS: u64 = 2;
/// One past the highest counted resource number (memory, processes, threads).
pub const RESOURCES: u64 = 3;
/// CPU bandwidth (cgroup v2's `cpu.max`): `quota_set(q, CPU, quota_ns, period_ns)`, quota
/// [`NO_LIMIT`] for none; `quota_stat(q, CPU)` returns a [`CpuStat`].
pub const CPU: u64 = 3;
/// CPU weight (cgroup v2's `cpu.weight`, 1 to 10,000, default 100): `quota_set(q, CPU_WEIGHT, w)`.
pub const CPU_WEIGHT: u64 = 4;
/// Default `cpu.max` period: 100 ms.
pub const DEFAULT_CPU_PERIOD_NS: u64 = 100_000_000;
/// `cpu.max` periods the kernel accepts: 1 ms to 1 s (cgroup v2's bounds).
pub const CPU_PERIOD_NS: core::ops::RangeInclusive<u64> = 1_000_000..=1_000_000_000;
/// Default and bounds of `cpu.weight`.
pub const DEFAULT_CPU_WEIGHT: u64 = 100;
pub const CPU_WEIGHTS: core::ops::RangeInclusive<u64> = 1..=10_000;

/// A limit that never refuses (cgroup v2's `max`).
pub const NO_LIMIT: u64 = u64::MAX;

/// Deepest quota tree the kernel keeps: the root is depth 0. Deeper `quota_create` fails with
/// `Limit` (every charge walks the tree up to the root).
pub const MAX_DEPTH: u32 = 32;

/// What `quota_stat(quota, resource)` returns in x1..x7.
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
    /// How much more can be charged here before this quota's limit or an ancestor's refuses it
    /// (the least headroom on the way to the root; [`NO_LIMIT`] when nothing limits it).
    pub room: u64,
    /// The quota's number: the same for every capability to it, never reused while the system
    /// runs; `process_info` reports a process's (how `ps` names a process's group).
    pub id: u64,
}

impl QuotaStat {
    /// The registers x1..x7.
    pub fn to_words(self) -> [u64; 7] {
        [self.usage, self.limit, self.peak, self.refused, self.oom_kills, self.room, self.id]
    }

    pub fn from_words(w: &[u64]) -> Self {
        let at = |i: usize| w.get(i).copied().unwrap_or(0);
        Self { usage: at(0), limit: at(1), peak: at(2), refused: at(3), oom_kills: at(4), room: at(5), id: at(6) }
    }
}

/// What `quota_stat(quota, CPU)` returns in x1..x7 (cgroup v2's `cpu.stat`, `cpu.max`,
/// `cpu.weight`), times in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// CPU time used by threads of this quota and every quota below it, and by the services that
    /// served their calls (the handler runs on the caller's time).
    pub usage_ns: u64,
    /// Run time allowed per period ([`NO_LIMIT`]: no limit).
    pub quota_ns: u64,
    pub period_ns: u64,
    /// Periods that have begun since the limit was set, and those in which it was used up.
    pub nr_periods: u64,
    pub nr_throttled: u64,
    /// Time its threads spent waiting for the next period.
    pub throttled_ns: u64,
    pub weight: u64,
}

impl CpuStat {
    pub fn to_words(self) -> [u64; 7] {
        [self.usage_ns, self.quota_ns, self.period_ns, self.nr_periods, self.nr_throttled, self.throttled_ns, self.weight]
    }

    pub fn from_words(w: &[u64]) -> Self {
        let at = |i: usize| w.get(i).copied().unwrap_or(0);
        Self { usage_ns: at(0), quota_ns: at(1), period_ns: at(2), nr_periods: at(3), nr_throttled: at(4), throttled_ns: at(5), weight: at(6) }
    }
}
