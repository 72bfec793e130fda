//! Time during which every online CPU was idle at once.
//!
//! Under icount with `sleep=off` (how `make bench` runs QEMU) the counter counts executed
//! instructions, except when every CPU waits in WFI: QEMU then moves the clock straight to the
//! next timer deadline. Such a jump is not work, and how many a benchmark crosses depends on how
//! long the host takes over a disk request. [`AllIdle`] adds up those stretches (each CPU says
//! when it starts and stops waiting), so a benchmark can subtract them from its elapsed counter
//! and report the instructions executed (`mem_info` page IDLE).
//!
//! A CPU is marked busy again as soon as another CPU sends it a wake-up IPI ([`AllIdle::wake`]),
//! not only when its WFI returns: so a CPU that blocks right after waking another does not see
//! "everyone idle" for the instant before the other runs. The common steps are one atomic
//! operation each; the counter is read and the small lock taken only when a stretch begins or
//! ends. Never the kernel lock (a CPU calls this around its WFI, outside it).

#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

/// The accounting; see the module documentation.
pub struct AllIdle {
    /// CPUs waiting now (bit i for CPU i).
    idle: AtomicU64,
    stretch: spin::Mutex<Stretch>,
}

struct Stretch {
    /// A stretch is in progress, begun at `since`.
    open: bool,
    since: u64,
    /// Counter ticks of finished stretches.
    total: u64,
    /// How many stretches began.
    count: u64,
}

/// The kernel's instance.
pub static ALL_IDLE: AllIdle = AllIdle::new();

impl AllIdle {
    pub const fn new() -> Self {
        Self { idle: AtomicU64::new(0), stretch: spin::Mutex::new(Stretch { open: false, since: 0, total: 0, count: 0 }) }
    }

    /// CPU `cpu` starts waiting; `online` is the set of online CPUs. The last of them to start
    /// waiting begins a stretch at `now()`.
    pub fn enter(&self, cpu: usize, online: u64, now: impl FnOnce() -> u64) {
        let all = self.idle.fetch_or(1 << cpu, Ordering::AcqRel) | 1 << cpu;
        if online != 0 && all & online == online {
            let now = now();
            let mut s = self.stretch.lock();
            // Still everyone (a wake-up may have come between): begin.
            if !s.open && self.idle.load(Ordering::Acquire) & online == online {
                s.open = true;
                s.since = now;
                s.count += 1;
            }
        }
    }

    /// CPU `cpu` stops waiting (its WFI returned); the first to do so ends the stretch at
    /// `now()`.
    pub fn leave(&self, cpu: usize, online: u64, now: impl FnOnce() -> u64) {
        let was = self.idle.fetch_and(!(1 << cpu), Ordering::AcqRel);
        if was & (1 << cpu) != 0 && online != 0 && was & online == online {
            let now = now();
            let mut s = self.stretch.lock();
            if s.open {
                s.total += now.saturating_sub(s.since);
                s.open = false;
            }
        }
    }

    /// Another CPU woke `cpu` (an IPI): it counts as busy from now on.
    pub fn wake(&self, cpu: usize) {
        self.idle.fetch_and(!(1 << cpu), Ordering::AcqRel);
    }

    /// (ticks every online CPU spent idle at once up to `now`, the stretch in progress included;
    /// stretches begun).
    pub fn total(&self, now: u64) -> (u64, u64) {
        let s = self.stretch.lock();
        let current = if s.open { now.saturating_sub(s.since) } else { 0 };
        (s.total + current, s.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stretches_with_every_online_cpu_waiting_count() {
        let a = AllIdle::new();
        let online = 0b111;
        a.enter(0, online, || 10);
        a.enter(1, online, || 20);
        assert_eq!(a.total(25), (0, 0), "cpu 2 still runs");
        a.enter(2, online, || 30);
        assert_eq!(a.total(35), (5, 1), "the stretch in progress");
        a.leave(1, online, || 50);
        assert_eq!(a.total(60), (20, 1));
        // Two wake: the stretch ended at the first.
        a.leave(0, online, || 55);
        a.enter(1, online, || 70);
        a.enter(0, online, || 80);
        a.leave(2, online, || 100);
        assert_eq!(a.total(1000), (40, 2));
        // An offline CPU does not keep a stretch from starting.
        let b = AllIdle::new();
        b.enter(3, 0b1000, || 5);
        b.leave(3, 0b1000, || 9);
        assert_eq!(b.total(9), (4, 1));
    }

    #[test]
    fn a_cpu_woken_by_an_ipi_is_busy_before_its_wait_returns() {
        let a = AllIdle::new();
        let online = 0b11;
        a.enter(1, online, || 10);
        // CPU 0 wakes CPU 1, then blocks itself before CPU 1 has run: not everyone idle.
        a.wake(1);
        a.enter(0, online, || panic!("no stretch begins, so the counter is not read"));
        a.leave(1, online, || panic!("no stretch to end"));
        assert_eq!(a.total(100), (0, 0));
    }
}
