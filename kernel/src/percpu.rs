//! Per-CPU state that other CPUs may read: liveness, affinity and event counters.
//!
//! CPU indices are Keel's own: 0 is the boot CPU, the others follow in DTB order. Every field is
//! atomic, so any CPU may read any other's counters without a lock.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Most CPUs Keel drives.
pub const MAX_CPUS: usize = 64;

/// One CPU's shared state.
pub struct PerCpu {
    online: AtomicBool,
    stopped: AtomicBool,
    mpidr: AtomicU64,
    ticks: AtomicU64,
    ipis: AtomicU64,
}

impl PerCpu {
    const fn new() -> Self {
        Self {
            online: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            mpidr: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
        }
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub fn mpidr(&self) -> u64 {
        self.mpidr.load(Ordering::Relaxed)
    }

    /// Timer ticks this CPU has taken.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// IPIs (SGIs) this CPU has received.
    pub fn ipis(&self) -> u64 {
        self.ipis.load(Ordering::Relaxed)
    }

    pub fn count_tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_ipi(&self) {
        self.ipis.fetch_add(1, Ordering::Relaxed);
    }
}

static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];
/// CPUs online and not stopped.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// The state of CPU `index` (panics on an index >= MAX_CPUS: indices come from the kernel only).
pub fn get(index: usize) -> &'static PerCpu {
    &CPUS[index]
}

/// Records that CPU `index` with affinity `mpidr` is up.
pub fn mark_online(index: usize, mpidr: u64) {
    let cpu = &CPUS[index];
    cpu.mpidr.store(mpidr, Ordering::Relaxed);
    cpu.online.store(true, Ordering::Release);
    RUNNING.fetch_add(1, Ordering::AcqRel);
}

/// Records that CPU `index` has stopped for good; returns how many CPUs are still running.
pub fn mark_stopped(index: usize) -> usize {
    let cpu = &CPUS[index];
    if cpu.stopped.swap(true, Ordering::AcqRel) {
        return RUNNING.load(Ordering::Acquire);
    }
    RUNNING.fetch_sub(1, Ordering::AcqRel).saturating_sub(1)
}

/// Number of CPUs that came online.
pub fn online_count() -> usize {
    CPUS.iter().filter(|c| c.is_online()).count()
}

/// The online CPUs with their indices.
pub fn online() -> impl Iterator<Item = (usize, &'static PerCpu)> {
    CPUS.iter().enumerate().filter(|(_, c)| c.is_online())
}
