//! Run queues: the arch-neutral scheduling policy, i.e. which runnable thread each CPU runs next.
//!
//! [`Scheduler`] owns one run queue per CPU: 64 FIFO lists, one per priority (0 lowest, 63
//! highest), and a bitmap of the non-empty ones, so the highest waiting priority is one
//! `leading_zeros` away. Threads of equal priority take turns in time slices counted in timer
//! ticks. Each thread has an affinity ([`CpuSet`]) and is queued only on a CPU in it; an idle CPU
//! steals from the busiest one, and [`Scheduler::balance`] evens out the loads. Threads are opaque
//! ids (the kernel's thread id); the scheduler learns their priority and affinity when they are
//! enqueued or passed as the running thread to [`Scheduler::pick_next`].
//!
//! It never touches a thread, a CPU or an interrupt controller: the kernel calls it under its
//! scheduler lock and acts on the answers (context switches, IPIs). The contract:
//! - a thread that becomes runnable (created, woken) is [`Scheduler::enqueue`]d, with the CPU it
//!   last ran on or its waker's CPU as the hint; the kernel IPIs the chosen CPU when told to;
//! - when the running thread blocks, exits, yields or is to be preempted, the kernel calls
//!   `pick_next(cpu, current)` with `current = Some((thread, params))` if the thread is still
//!   runnable, `None` if not, and switches to the answer (`None` = idle). Until that call the
//!   thread still counts as running there and cannot be enqueued ([`SchedError::AlreadyRunning`]);
//! - each timer tick while a thread runs goes to [`Scheduler::tick`]; an idle CPU calls
//!   `pick_next(cpu, None)` when woken (tick or IPI), which steals work if any is waiting;
//! - moves returned by [`Scheduler::balance`] and [`Scheduler::set_online`] are IPIs to send.
//!
//! It allocates only when a per-priority queue or the thread table outgrows its high-water mark:
//! `enqueue` and `pick_next` are O(1) apart from that, with no scan over all threads (removing a queued
//! thread scans its one FIFO; stealing and balancing scan queues of other CPUs).
//!
//! Invariants (checked after every step of the randomized test):
//! - a thread is queued at most once, on one CPU, in the FIFO of its priority, and that CPU is in
//!   its affinity;
//! - bit `p` of a CPU's bitmap is set iff its priority-`p` FIFO is non-empty; `len` is their sum;
//! - a thread that runs on a CPU (the last one `pick_next` returned there) runs on no other CPU
//!   and is not queued;
//! - a thread is queued on an offline CPU only if no online CPU is in its affinity (it waits
//!   there until one comes online);
//! - the thread table holds exactly the queued threads; a running thread is known only by its
//!   CPU's run queue (so a hand-off between a client and a server touches no table).

#![forbid(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Debug;
use core::hash::{Hash, Hasher};

/// Number of priorities: 0 is the lowest, `PRIORITIES - 1` the highest.
pub const PRIORITIES: usize = 64;

/// Ticks in a time slice. A thread is charged a whole tick for the tick interval it starts in,
/// so with 10 ms ticks a slice of 3 lasts 20 to 30 ms.
pub const DEFAULT_TIMESLICE_TICKS: u32 = 3;

/// Most CPUs a scheduler serves (a [`CpuSet`] is one `u64`).
pub const MAX_CPUS: usize = 64;

/// A set of CPU indices below [`MAX_CPUS`], e.g. a thread's affinity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(u64);

impl CpuSet {
    /// No CPU.
    pub const EMPTY: CpuSet = CpuSet(0);

    /// CPUs `0..ncpus`.
    pub const fn all(ncpus: usize) -> Self {
        if ncpus >= MAX_CPUS { CpuSet(u64::MAX) } else { CpuSet((1 << ncpus) - 1) }
    }

    /// Only `cpu` (empty if `cpu >= MAX_CPUS`).
    pub const fn single(cpu: usize) -> Self {
        if cpu < MAX_CPUS { CpuSet(1 << cpu) } else { CpuSet(0) }
    }

    /// The set whose bit `i` says whether CPU `i` is in it.
    pub const fn from_bits(bits: u64) -> Self {
        CpuSet(bits)
    }

    /// Bit `i` says whether CPU `i` is in the set.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// This set plus `cpu` (unchanged if `cpu >= MAX_CPUS`).
    pub const fn with(self, cpu: usize) -> Self {
        CpuSet(self.0 | Self::single(cpu).0)
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.0 & (1 << cpu) != 0
    }

    /// Whether the set has no CPU.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// How a thread is scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    /// 0 (lowest) to `PRIORITIES - 1` (highest).
    pub priority: u8,
    /// The CPUs the thread may run on.
    pub affinity: CpuSet,
}

/// Where [`Scheduler::enqueue`] put a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// The CPU whose queue the thread joined.
    pub cpu: usize,
    /// The thread outranks what `cpu` runs now (an idle CPU is outranked by any thread): `cpu`
    /// should reschedule, by IPI if it is not the caller's CPU.
    pub preempt: bool,
}

/// Why the scheduler refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// No online CPU is in the thread's affinity.
    EmptyAffinity,
    /// The thread is already queued.
    AlreadyQueued,
    /// The thread is what a CPU runs now (the last thread `pick_next` returned there); it can be
    /// enqueued once that CPU has called `pick_next` without it as `current`.
    AlreadyRunning,
    /// The thread is not queued.
    NotQueued,
    /// The priority is not below [`PRIORITIES`].
    BadPriority,
    /// The CPU index is not below the scheduler's CPU count.
    BadCpu,
}

/// What the scheduler knows of a queued thread.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The CPU it is queued on.
    cpu: u8,
    priority: u8,
    affinity: CpuSet,
}

/// The bit of `cpu` in a CPU mask (`cpu < MAX_CPUS`).
const fn bit(cpu: usize) -> u64 {
    1 << cpu
}

/// The set bits of a mask, lowest first.
struct Ascending(u64);

impl Iterator for Ascending {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

/// The set bits of a mask, highest first.
struct Descending(u64);

impl Iterator for Descending {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = 63 - self.0.leading_zeros() as usize;
        self.0 &= !bit(i);
        Some(i)
    }
}

/// One CPU's run queue and what the CPU runs.
struct RunQueue<T> {
    /// One FIFO per priority.
    levels: [VecDeque<T>; PRIORITIES],
    /// Bit `p` is set iff `levels[p]` is non-empty.
    nonempty: u64,
    /// Threads queued in all levels.
    len: usize,
    /// The thread `pick_next` (or `hand_off`) last made run here, `None` when idle.
    running: Option<T>,
    /// The priority and affinity of `running`.
    running_params: SchedParams,
    /// Ticks charged to `running` in its current slice.
    slice_used: u32,
}

impl<T: Copy + Eq> RunQueue<T> {
    fn new() -> Self {
        Self { levels: core::array::from_fn(|_| VecDeque::new()), nonempty: 0, len: 0, running: None, running_params: SchedParams { priority: 0, affinity: CpuSet::EMPTY }, slice_used: 0 }
    }

    /// The highest priority with a queued thread.
    fn top(&self) -> Option<u8> {
        if self.nonempty == 0 { None } else { Some(63 - self.nonempty.leading_zeros() as u8) }
    }

    /// Queued threads plus the running one: what balancing evens out.
    fn load(&self) -> usize {
        self.len + usize::from(self.running.is_some())
    }

    fn push_back(&mut self, t: T, priority: u8) {
        self.levels[usize::from(priority)].push_back(t);
        self.nonempty |= bit(usize::from(priority));
        self.len += 1;
    }

    /// Takes the thread at `index` of the `priority` FIFO (which the caller found there).
    fn take(&mut self, priority: u8, index: usize) -> T {
        let level = &mut self.levels[usize::from(priority)];
        // The head in the common case (the next thread of a FIFO): pop_front is far shorter
        // than VecDeque's general remove.
        let t = if index == 0 { level.pop_front() } else { level.remove(index) };
        let t = t.expect("sched invariant: a thread found in a run queue is still there");
        if level.is_empty() {
            self.nonempty &= !bit(usize::from(priority));
        }
        self.len -= 1;
        t
    }
}

/// The scheduling policy of all CPUs; see the module documentation.
pub struct Scheduler<T> {
    queues: Vec<RunQueue<T>>,
    /// CPUs `0..ncpus`.
    present: u64,
    /// CPUs that receive threads.
    online: u64,
    /// Every queued thread.
    threads: ThreadTable<T>,
    timeslice: u32,
}

impl<T: Copy + Eq + Hash + Debug> Scheduler<T> {
    /// A scheduler for CPUs `0..ncpus`, all online, with [`DEFAULT_TIMESLICE_TICKS`].
    ///
    /// # Panics
    /// If `ncpus` is 0 or above [`MAX_CPUS`] (a boot-time configuration bug).
    pub fn new(ncpus: usize) -> Self {
        Self::with_timeslice(ncpus, DEFAULT_TIMESLICE_TICKS)
    }

    /// A scheduler whose time slices are `ticks` long (at least 1).
    ///
    /// # Panics
    /// If `ncpus` is 0 or above [`MAX_CPUS`].
    pub fn with_timeslice(ncpus: usize, ticks: u32) -> Self {
        assert!((1..=MAX_CPUS).contains(&ncpus), "sched: {ncpus} cpus; a scheduler serves 1 to {MAX_CPUS}");
        let present = CpuSet::all(ncpus).bits();
        Self {
            queues: (0..ncpus).map(|_| RunQueue::new()).collect(),
            present,
            online: present,
            threads: ThreadTable::new(),
            timeslice: ticks.max(1),
        }
    }

    /// Makes `t` runnable: queues it on `hint` if its affinity allows it and `hint` is online,
    /// else on the least loaded online CPU in its affinity (queued plus running threads; the
    /// lowest index on a tie). Says which CPU, and whether that CPU should reschedule now.
    ///
    /// # Errors
    /// [`SchedError::BadPriority`], [`SchedError::BadCpu`] (`hint`), [`SchedError::AlreadyQueued`],
    /// [`SchedError::AlreadyRunning`], [`SchedError::EmptyAffinity`], checked in that order; a
    /// refused thread's state is unchanged.
    pub fn enqueue(&mut self, t: T, params: SchedParams, hint: usize) -> Result<Enqueued, SchedError> {
        if usize::from(params.priority) >= PRIORITIES {
            return Err(SchedError::BadPriority);
        }
        if hint >= self.queues.len() {
            return Err(SchedError::BadCpu);
        }
        if self.threads.get(t).is_some() {
            return Err(SchedError::AlreadyQueued);
        }
        if self.running_cpu(t).is_some() {
            return Err(SchedError::AlreadyRunning);
        }
        let cpu = self.place(params.affinity, Some(hint)).ok_or(SchedError::EmptyAffinity)?;
        self.queue_on(t, params, cpu);
        let q = &self.queues[cpu];
        let preempt = q.running.is_none() || params.priority > q.running_params.priority;
        Ok(Enqueued { cpu, preempt })
    }

    /// Takes a queued thread out of its queue (it blocked or was killed while ready).
    ///
    /// # Errors
    /// [`SchedError::NotQueued`] if `t` is not queued (a running thread leaves its CPU through
    /// `pick_next`).
    pub fn remove(&mut self, t: T) -> Result<(), SchedError> {
        match self.threads.get(t) {
            Some(e) => {
                let q = &mut self.queues[usize::from(e.cpu)];
                let index = q.levels[usize::from(e.priority)]
                    .iter()
                    .position(|&x| x == t)
                    .expect("sched invariant: a queued thread is in the FIFO its entry names");
                q.take(e.priority, index);
                self.threads.remove(t);
                Ok(())
            }
            None => Err(SchedError::NotQueued),
        }
    }

    /// Chooses what `cpu` runs next; `None` means idle.
    ///
    /// `current` is the thread `cpu` runs now if it is still runnable, with its parameters (which
    /// may have changed since it was enqueued). It keeps the CPU if no higher priority is queued
    /// here and its slice is not used up; otherwise it joins the tail of its priority's FIFO here
    /// and competes with the others. If its affinity no longer allows `cpu`, or `cpu` is offline,
    /// it is queued on the least loaded online CPU in its affinity (which learns of it at its next
    /// reschedule: to IPI that CPU at once, pass `None` here and `enqueue` it), or, with no online
    /// CPU in its affinity, on a CPU in it to wait until one comes online. A thread this CPU ran
    /// before that is not `current` stops running (blocked or exited).
    ///
    /// The highest-priority queued thread (the oldest of that priority) is chosen. An empty queue
    /// steals from the CPU with the most queued threads that has one `cpu` may run: its
    /// highest-priority such thread. An offline CPU is given nothing and steals nothing.
    ///
    /// # Panics
    /// If `cpu` is not below the CPU count, if `current` is queued (the kernel enqueued a thread
    /// it still runs) or has a priority not below [`PRIORITIES`] (the kernel validates priorities
    /// where it sets them).
    pub fn pick_next(&mut self, cpu: usize, current: Option<(T, SchedParams)>) -> Option<T> {
        self.expect_cpu(cpu, "pick_next");
        let prev = self.queues[cpu].running.take();
        // The thread that ran here continues its slice if it is `current` (and keeps the CPU);
        // otherwise it blocked or exited, and a new slice begins.
        let continues = prev.is_some() && prev == current.map(|(t, _)| t);
        if !continues {
            self.queues[cpu].slice_used = 0;
        }
        if let Some((t, params)) = current
            && self.keeps_cpu(cpu, t, params)
        {
            return Some(t);
        }
        self.pick_queued(cpu)
    }

    /// The thread running on `cpu` stopped (it blocked or exited) before the kernel picked a
    /// successor: it no longer counts as running, so it may be enqueued (woken) at once.
    ///
    /// The slice in progress is not reset: `pick_next` starts a new one for a new thread, and a
    /// `hand_off` carries it on, so a client and server calling each other share one slice and
    /// are preempted like any other thread (resetting it here let such a pair starve others).
    pub fn stop_running(&mut self, cpu: usize) {
        self.expect_cpu(cpu, "stop_running");
        self.queues[cpu].running = None;
    }

    /// A direct hand-off (IPC call or reply): `to`, neither queued nor running, runs on `cpu` now
    /// in place of what ran there, which stops running. The slice in progress carries on: the
    /// time is donated, not renewed.
    ///
    /// # Panics
    /// In debug builds, if `to` is queued or running (the kernel hands off only to blocked
    /// threads).
    pub fn hand_off(&mut self, cpu: usize, to: T, params: SchedParams) {
        self.expect_cpu(cpu, "hand_off");
        let q = &mut self.queues[cpu];
        q.running = None;
        // Checked in debug builds (every host test): the kernel hands off only to a thread it
        // has just taken from a blocked state, and this probe is on every IPC call and reply.
        debug_assert!(
            self.threads.get(to).is_none() && self.running_cpu(to).is_none(),
            "sched invariant: a hand-off target is blocked, but {to:?} is queued or running"
        );
        let q = &mut self.queues[cpu];
        q.running = Some(to);
        q.running_params = params;
    }

    /// Charges a tick to `running` on `cpu`. True when `cpu` should reschedule: a higher priority
    /// is queued here, or the slice is used up and an equal priority is queued here. Also true
    /// when `running` is not what the scheduler last gave `cpu`, or `cpu` is offline, so that
    /// `pick_next` learns the facts.
    ///
    /// # Panics
    /// If `cpu` is not below the CPU count.
    pub fn tick(&mut self, cpu: usize, running: T) -> bool {
        self.expect_cpu(cpu, "tick");
        if self.queues[cpu].running != Some(running) || self.online & bit(cpu) == 0 {
            return true;
        }
        let q = &mut self.queues[cpu];
        let priority = q.running_params.priority;
        q.slice_used = q.slice_used.saturating_add(1);
        match q.top() {
            None => false,
            Some(top) => top > priority || (top == priority && q.slice_used >= self.timeslice),
        }
    }

    /// Moves queued threads from more to less loaded online CPUs (load: queued plus running
    /// threads) while two loads differ by more than one and some thread on the busier CPU may run
    /// on the other. Each move takes the busier CPU's highest-priority such thread (the oldest of
    /// that priority) to the tail of its FIFO on the other. Returns the moves as
    /// `(thread, from, to)`, for the kernel to IPI each `to`.
    pub fn balance(&mut self) -> Vec<(T, usize, usize)> {
        let mut moves = Vec::new();
        // Each move lowers the sum of squared loads, so this ends.
        while let Some((t, from, to)) = self.one_balancing_move() {
            moves.push((t, from, to));
        }
        moves
    }

    /// Takes `cpu` online or offline. Going offline, each thread queued on it moves to the least
    /// loaded online CPU in its affinity; threads with none stay, and wait. Coming online, it
    /// takes every thread waiting on an offline CPU that it may run. Returns the moves as
    /// `(thread, from, to)`. The thread an offlined CPU runs is moved by its next `pick_next`.
    ///
    /// # Panics
    /// If `cpu` is not below the CPU count.
    pub fn set_online(&mut self, cpu: usize, online: bool) -> Vec<(T, usize, usize)> {
        self.expect_cpu(cpu, "set_online");
        let mut moves = Vec::new();
        if online == self.is_online(cpu) {
            return moves;
        }
        if online {
            self.online |= bit(cpu);
            for from in Ascending(self.present & !self.online) {
                while let Some((priority, index)) = self.find_movable(from, cpu) {
                    let t = self.migrate(from, priority, index, cpu);
                    moves.push((t, from, cpu));
                }
            }
        } else {
            self.online &= !bit(cpu);
            for priority in Descending(self.queues[cpu].nonempty) {
                let priority = priority as u8;
                let mut index = 0;
                while index < self.queues[cpu].levels[usize::from(priority)].len() {
                    let t = self.queues[cpu].levels[usize::from(priority)][index];
                    match self.place(self.entry(t).affinity, None) {
                        Some(to) => {
                            self.migrate(cpu, priority, index, to);
                            moves.push((t, cpu, to));
                        }
                        None => index += 1,
                    }
                }
            }
        }
        moves
    }

    /// Threads queued on `cpu` (0 for a CPU that does not exist).
    pub fn queued_len(&self, cpu: usize) -> usize {
        self.queues.get(cpu).map_or(0, |q| q.len)
    }

    /// Whether `t` is queued.
    pub fn is_queued(&self, t: T) -> bool {
        self.threads.get(t).is_some()
    }

    /// The CPU `t` is queued on or runs on (as last returned by `pick_next` there), if either.
    pub fn cpu_of(&self, t: T) -> Option<usize> {
        self.threads.get(t).map(|e| usize::from(e.cpu)).or_else(|| self.running_cpu(t))
    }

    /// What `cpu` runs: the thread `pick_next` last returned there (`None`: idle).
    pub fn running(&self, cpu: usize) -> Option<T> {
        self.queues.get(cpu).and_then(|q| q.running)
    }

    /// Whether `cpu` exists and is online.
    pub fn is_online(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.online & bit(cpu) != 0
    }

    /// Ticks in a time slice.
    pub fn timeslice(&self) -> u32 {
        self.timeslice
    }

    fn expect_cpu(&self, cpu: usize, op: &str) {
        let n = self.queues.len();
        assert!(cpu < n, "sched: {op} on cpu {cpu}, but the scheduler serves {n} cpus");
    }

    /// The entry of a thread the caller knows to be queued.
    fn entry(&self, t: T) -> Entry {
        match self.threads.get(t) {
            Some(e) => e,
            None => panic!("sched invariant: every queued thread has an entry; {t:?} has none"),
        }
    }

    /// The CPU `t` runs on, if any: a scan of the CPUs' running slots.
    fn running_cpu(&self, t: T) -> Option<usize> {
        self.queues.iter().position(|q| q.running == Some(t))
    }

    /// The CPU to queue a thread with `affinity` on: `hint` if allowed and online, else the
    /// least loaded online CPU allowed; `None` if no online CPU is allowed.
    fn place(&self, affinity: CpuSet, hint: Option<usize>) -> Option<usize> {
        let allowed = affinity.bits() & self.online;
        if let Some(h) = hint
            && allowed & bit(h) != 0
        {
            return Some(h);
        }
        Ascending(allowed).min_by_key(|&c| self.queues[c].load())
    }

    /// Queues `t` (not queued, not running) at the tail of its priority on `cpu`.
    fn queue_on(&mut self, t: T, params: SchedParams, cpu: usize) {
        self.queues[cpu].push_back(t, params.priority);
        let entry = Entry { cpu: cpu as u8, priority: params.priority, affinity: params.affinity };
        self.threads.insert(t, entry);
    }

    /// Decides whether `current` keeps `cpu` (true) or was queued (false).
    fn keeps_cpu(&mut self, cpu: usize, t: T, params: SchedParams) -> bool {
        assert!(
            usize::from(params.priority) < PRIORITIES,
            "sched: current {t:?} on cpu {cpu} has priority {}, not below {PRIORITIES}",
            params.priority
        );
        if let Some(e) = self.threads.get(t) {
            panic!(
                "sched invariant: a thread is never both running and queued; current {t:?} on cpu {cpu} is queued on cpu {}",
                e.cpu
            );
        }
        if let Some(other) = self.running_cpu(t).filter(|&c| c != cpu) {
            // The kernel moved it here from another CPU without a `pick_next` there.
            let other = &mut self.queues[other];
            other.running = None;
            other.slice_used = 0;
        }
        if params.affinity.bits() & self.online & bit(cpu) == 0
            && let Some(to) = self.relocation_target(cpu, params.affinity)
        {
            self.queue_on(t, params, to);
            return false;
        }
        let q = &self.queues[cpu];
        let outranked = q.top().is_some_and(|top| top > params.priority);
        if q.slice_used < self.timeslice && !outranked {
            let q = &mut self.queues[cpu];
            q.running = Some(t);
            q.running_params = params;
            true
        } else {
            self.queue_on(t, params, cpu);
            false
        }
    }

    /// Where a runnable thread that may not stay on `cpu` goes: the least loaded online CPU in
    /// its affinity; else a CPU in its affinity (preferably `cpu`) to wait on; `None` (it stays on
    /// `cpu`) only if its affinity names no CPU of this scheduler and `cpu` is online.
    fn relocation_target(&self, cpu: usize, affinity: CpuSet) -> Option<usize> {
        if let Some(to) = self.place(affinity, None) {
            return Some(to);
        }
        let existing = affinity.bits() & self.present;
        if existing == 0 {
            return if self.is_online(cpu) { None } else { Some(cpu) };
        }
        Some(if existing & bit(cpu) != 0 { cpu } else { existing.trailing_zeros() as usize })
    }

    /// Takes the next thread for `cpu` from its queue, or steals one, and makes it run there.
    fn pick_queued(&mut self, cpu: usize) -> Option<T> {
        self.queues[cpu].slice_used = 0;
        if !self.is_online(cpu) {
            return None;
        }
        let picked = match self.queues[cpu].top() {
            Some(priority) => Some(self.queues[cpu].take(priority, 0)),
            None => self.steal(cpu),
        }?;
        let e = self.threads.remove(picked).expect("sched invariant: every queued thread has an entry");
        let q = &mut self.queues[cpu];
        q.running = Some(picked);
        q.running_params = SchedParams { priority: e.priority, affinity: e.affinity };
        Some(picked)
    }

    /// Takes, from the CPU with the most queued threads that has one `cpu` may run, its
    /// highest-priority such thread.
    fn steal(&mut self, cpu: usize) -> Option<T> {
        // Victims in order of queue length (longest first, the lowest index among equals),
        // chosen one at a time: an idle CPU comes here at every wake-up, and usually every
        // other queue is empty.
        let mut left: u64 = Ascending(self.present & !bit(cpu)).filter(|&c| self.queues[c].len > 0).fold(0, |m, c| m | bit(c));
        while left != 0 {
            let victim = Ascending(left).max_by_key(|&c| (self.queues[c].len, core::cmp::Reverse(c)))?;
            left &= !bit(victim);
            if let Some((priority, index)) = self.find_movable(victim, cpu) {
                return Some(self.queues[victim].take(priority, index));
            }
        }
        None
    }

    /// The highest-priority thread queued on `from` (the oldest of that priority) that may run
    /// on `to`, as (priority, index in its FIFO).
    fn find_movable(&self, from: usize, to: usize) -> Option<(u8, usize)> {
        let q = &self.queues[from];
        Descending(q.nonempty).find_map(|priority| {
            q.levels[priority]
                .iter()
                .position(|&t| self.entry(t).affinity.contains(to))
                .map(|index| (priority as u8, index))
        })
    }

    /// Moves the thread at `index` of the `priority` FIFO of `from` to the tail of `to`.
    fn migrate(&mut self, from: usize, priority: u8, index: usize, to: usize) -> T {
        let t = self.queues[from].take(priority, index);
        self.queues[to].push_back(t, priority);
        self.threads.get_mut(t).expect("sched invariant: every queued thread has an entry").cpu = to as u8;
        t
    }

    /// One move of [`Scheduler::balance`], if any is possible.
    fn one_balancing_move(&mut self) -> Option<(T, usize, usize)> {
        // (load, cpu) packed small: this runs at every tick of CPU 0.
        let mut order = [(0u32, 0u8); MAX_CPUS];
        let mut n = 0;
        for c in Ascending(self.online) {
            order[n] = (u32::try_from(self.queues[c].load()).unwrap_or(u32::MAX), c as u8);
            n += 1;
        }
        // Busiest first; the lowest index first among equals.
        let order = &mut order[..n];
        order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(from_load, from) in order.iter() {
            let from = usize::from(from);
            if self.queues[from].len == 0 {
                continue;
            }
            for &(to_load, to) in order.iter().rev() {
                let to = usize::from(to);
                if from_load <= to_load + 1 {
                    break;
                }
                if let Some((priority, index)) = self.find_movable(from, to) {
                    return Some((self.migrate(from, priority, index, to), from, to));
                }
            }
        }
        None
    }
}

/// A hasher for thread ids: FxHash-style multiply-rotate, whose high bits index the table.
struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(Self::K);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// Fewest slots of a [`ThreadTable`] (a power of two).
const TABLE_MIN_SLOTS: usize = 16;

/// The entries of queued and running threads: an open-addressing hash table with linear probing
/// and backward-shift deletion (no tombstones). It keeps at least half its slots empty, so every
/// probe ends at an empty slot, and it grows but never shrinks, so a steady number of threads
/// costs no allocation.
struct ThreadTable<T> {
    slots: Vec<Option<(T, Entry)>>,
    len: usize,
    /// `64 - log2(slots.len())`: a hash's top bits are its home slot.
    shift: u32,
}

impl<T: Copy + Eq + Hash> ThreadTable<T> {
    fn new() -> Self {
        Self { slots: vec![None; TABLE_MIN_SLOTS], len: 0, shift: 64 - TABLE_MIN_SLOTS.trailing_zeros() }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, t: T) -> usize {
        let mut h = IdHasher(0);
        t.hash(&mut h);
        (h.finish() >> self.shift) as usize
    }

    /// `Ok(slot)` holding `t`, or `Err(slot)`: the empty slot that ends its probe sequence.
    fn find(&self, t: T) -> Result<usize, usize> {
        let mut i = self.home(t);
        loop {
            match &self.slots[i] {
                None => return Err(i),
                Some((k, _)) if *k == t => return Ok(i),
                Some(_) => i = (i + 1) & self.mask(),
            }
        }
    }

    fn get(&self, t: T) -> Option<Entry> {
        self.find(t).ok().and_then(|i| self.slots[i].map(|(_, e)| e))
    }

    fn get_mut(&mut self, t: T) -> Option<&mut Entry> {
        let i = self.find(t).ok()?;
        self.slots[i].as_mut().map(|(_, e)| e)
    }

    /// Inserts or replaces the entry of `t`.
    fn insert(&mut self, t: T, entry: Entry) {
        match self.find(t) {
            Ok(i) => self.slots[i] = Some((t, entry)),
            Err(i) if (self.len + 1) * 2 <= self.slots.len() => {
                self.slots[i] = Some((t, entry));
                self.len += 1;
            }
            Err(_) => {
                self.grow();
                let Err(i) = self.find(t) else { unreachable!("a key absent before growing is absent after") };
                self.slots[i] = Some((t, entry));
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, t: T) -> Option<Entry> {
        let mut hole = self.find(t).ok()?;
        let removed = self.slots[hole].take().map(|(_, e)| e);
        self.len -= 1;
        // Shift back each later entry of the cluster whose home is not between the hole and it.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some((k, _)) = self.slots[j] else { break };
            let home = self.home(k);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        removed
    }

    fn grow(&mut self) {
        let bigger = vec![None; self.slots.len() * 2];
        let old = core::mem::replace(&mut self.slots, bigger);
        self.shift -= 1;
        for (k, e) in old.into_iter().flatten() {
            let Err(i) = self.find(k) else { unreachable!("keys are unique") };
            self.slots[i] = Some((k, e));
        }
    }
}

#[cfg(test)]
impl<T: Copy + Eq + Hash + Debug> Scheduler<T> {
    /// Panics unless every invariant of the module documentation holds.
    fn check_invariants(&self) {
        let mut queued = 0;
        for (cpu, q) in self.queues.iter().enumerate() {
            let mut len = 0;
            for (priority, level) in q.levels.iter().enumerate() {
                assert_eq!(q.nonempty & bit(priority) != 0, !level.is_empty(), "cpu {cpu} bitmap bit {priority}");
                for &t in level {
                    let e = self.threads.get(t).unwrap_or_else(|| panic!("queued {t:?} has no entry"));
                    assert_eq!(usize::from(e.cpu), cpu, "{t:?} queued on cpu {cpu}");
                    assert_eq!(usize::from(e.priority), priority, "{t:?} queued at {priority}");
                    if self.present & e.affinity.bits() != 0 {
                        assert!(e.affinity.contains(cpu), "{t:?} queued on cpu {cpu} outside its affinity");
                    }
                    if !self.is_online(cpu) {
                        assert_eq!(e.affinity.bits() & self.online, 0, "{t:?} waits on offline cpu {cpu}");
                    }
                }
                len += level.len();
            }
            assert_eq!(q.len, len, "cpu {cpu} len");
            queued += len;
            if let Some(t) = q.running {
                assert!(self.threads.get(t).is_none(), "running {t:?} on cpu {cpu} is queued too");
                assert_eq!(self.running_cpu(t), Some(cpu), "{t:?} runs on cpu {cpu} and on another");
            }
        }
        let occupied: Vec<(T, Entry)> = self.threads.slots.iter().flatten().copied().collect();
        assert_eq!(occupied.len(), self.threads.len);
        assert_eq!(self.threads.len, queued, "the table holds exactly the queued threads");
        // Every entry is where it says, and entries and places are equally many: no thread is in
        // two places.
        for (t, e) in occupied {
            assert!(self.threads.find(t).is_ok(), "{t:?} is not reachable from its home slot");
            let q = &self.queues[usize::from(e.cpu)];
            assert!(q.levels[usize::from(e.priority)].contains(&t), "{t:?} not where it says");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn prio(priority: u8) -> SchedParams {
        SchedParams { priority, affinity: CpuSet::all(MAX_CPUS) }
    }

    fn pinned(priority: u8, cpu: usize) -> SchedParams {
        SchedParams { priority, affinity: CpuSet::single(cpu) }
    }

    #[test]
    fn cpu_set_basics() {
        assert_eq!(CpuSet::all(3).bits(), 0b111);
        assert_eq!(CpuSet::all(64).bits(), u64::MAX);
        assert!(CpuSet::single(5).contains(5) && !CpuSet::single(5).contains(4));
        assert!(CpuSet::single(64).is_empty() && !CpuSet::all(64).contains(64));
        assert_eq!(CpuSet::EMPTY.with(1).with(3), CpuSet::from_bits(0b1010));
    }

    #[test]
    fn picks_highest_priority_first_and_fifo_within_one() {
        let mut s = Scheduler::new(1);
        for (t, p) in [(1u64, 3), (2, 10), (3, 0), (4, 10), (5, 63)] {
            s.enqueue(t, prio(p), 0).unwrap();
        }
        let order: Vec<u64> = (0..5).map(|_| s.pick_next(0, None).unwrap()).collect();
        assert_eq!(order, [5, 2, 4, 1, 3]);
        assert_eq!(s.pick_next(0, None), None);
        s.check_invariants();
    }

    #[test]
    fn round_robin_rotates_equal_priorities_on_slice_expiry() {
        let mut s = Scheduler::new(1);
        for t in [1u64, 2, 3] {
            s.enqueue(t, prio(7), 0).unwrap();
        }
        let mut running = s.pick_next(0, None).unwrap();
        let mut order = vec![running];
        for _ in 0..6 {
            for _ in 1..s.timeslice() {
                assert!(!s.tick(0, running), "preempted before its slice ended");
            }
            assert!(s.tick(0, running), "not preempted when its slice ended");
            running = s.pick_next(0, Some((running, prio(7)))).unwrap();
            order.push(running);
            s.check_invariants();
        }
        assert_eq!(order, [1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn current_keeps_cpu_until_its_slice_is_used() {
        let mut s = Scheduler::with_timeslice(1, 3);
        s.enqueue(1u64, prio(5), 0).unwrap();
        assert_eq!(s.pick_next(0, None), Some(1));
        s.enqueue(2, prio(5), 0).unwrap();
        assert!(!s.tick(0, 1));
        // A reschedule with slice left (say, after a wake-up) keeps the current thread.
        assert_eq!(s.pick_next(0, Some((1, prio(5)))), Some(1));
        assert!(!s.tick(0, 1));
        assert!(s.tick(0, 1));
        assert_eq!(s.pick_next(0, Some((1, prio(5)))), Some(2));
        assert!(s.is_queued(1));

        // With only lower priorities queued, the slice ends but the thread runs on, afresh.
        let mut s = Scheduler::with_timeslice(1, 2);
        s.enqueue(1u64, prio(5), 0).unwrap();
        s.enqueue(2, prio(4), 0).unwrap();
        assert_eq!(s.pick_next(0, None), Some(1));
        for _ in 0..5 {
            assert!(!s.tick(0, 1));
        }
        assert_eq!(s.pick_next(0, Some((1, prio(5)))), Some(1));
        assert!(!s.tick(0, 1));
        s.check_invariants();
    }

    #[test]
    fn higher_priority_enqueue_requests_preemption() {
        let mut s = Scheduler::new(2);
        s.enqueue(1u64, prio(5), 0).unwrap();
        assert_eq!(s.pick_next(0, None), Some(1));
        assert_eq!(s.enqueue(2, prio(5), 0), Ok(Enqueued { cpu: 0, preempt: false }));
        assert_eq!(s.enqueue(3, prio(1), 0), Ok(Enqueued { cpu: 0, preempt: false }));
        assert!(!s.tick(0, 1));
        assert_eq!(s.enqueue(4, prio(9), 0), Ok(Enqueued { cpu: 0, preempt: true }));
        assert!(s.tick(0, 1), "a higher priority is queued");
        // An idle CPU is outranked by anything.
        assert_eq!(s.enqueue(5, prio(0), 1), Ok(Enqueued { cpu: 1, preempt: true }));
        assert_eq!(s.pick_next(0, Some((1, prio(5)))), Some(4));
        // The preempted thread went to the tail of its priority, behind 2.
        assert_eq!(s.pick_next(0, None), Some(2));
        assert_eq!(s.pick_next(0, None), Some(1));
        s.check_invariants();
    }

    #[test]
    fn pinned_thread_never_runs_elsewhere() {
        let mut s = Scheduler::new(4);
        assert_eq!(s.enqueue(100u64, pinned(63, 2), 0).unwrap().cpu, 2);
        for t in 0..12u64 {
            s.enqueue(t, prio((t % 3) as u8), 2).unwrap();
        }
        for round in 0..50 {
            let moves = s.balance();
            assert!(moves.iter().all(|&(t, _, _)| t != 100), "balance moved the pinned thread");
            for cpu in [0, 1, 3] {
                let current = s.running(cpu).map(|t| (t, prio((t % 3) as u8)));
                assert_ne!(s.pick_next(cpu, current), Some(100), "round {round}: ran on cpu {cpu}");
            }
            assert!(s.cpu_of(100) == Some(2));
            s.check_invariants();
        }
        assert_eq!(s.pick_next(2, None), Some(100));
        assert_eq!(s.pick_next(2, Some((100, pinned(63, 2)))), Some(100));
        // Offline, its CPU gives it nothing and it waits; back online, it runs there again.
        assert!(s.set_online(2, false).iter().all(|&(t, _, _)| t != 100));
        assert_eq!(s.pick_next(2, Some((100, pinned(63, 2)))), None);
        assert_eq!(s.cpu_of(100), Some(2));
        assert!(s.is_queued(100));
        for cpu in [0, 1, 3] {
            let current = s.running(cpu).map(|t| (t, prio((t % 3) as u8)));
            assert_ne!(s.pick_next(cpu, current), Some(100));
        }
        s.set_online(2, true);
        assert_eq!(s.pick_next(2, None), Some(100));
        s.check_invariants();
    }

    #[test]
    fn idle_cpu_steals_from_the_busiest() {
        let mut s = Scheduler::new(3);
        s.enqueue(1u64, prio(1), 0).unwrap();
        s.enqueue(2, pinned(7, 0), 0).unwrap();
        s.enqueue(3, prio(5), 0).unwrap();
        s.enqueue(4, prio(9), 1).unwrap();
        // cpu 0 has the most queued; its highest that may run on cpu 2 is 3 (2 is pinned).
        assert_eq!(s.pick_next(2, None), Some(3));
        assert_eq!(s.cpu_of(3), Some(2));
        assert_eq!(s.queued_len(0), 2);
        // cpu 0 (two queued) is still the busiest; its highest allowed here is 1.
        assert_eq!(s.pick_next(2, None), Some(1));
        // cpu 0 holds only the pinned thread: the next steal comes from cpu 1.
        assert_eq!(s.pick_next(2, None), Some(4));
        assert_eq!(s.pick_next(2, None), None);
        assert!(s.is_queued(2));
        s.check_invariants();
    }

    #[test]
    fn balance_spreads_eight_threads_over_four_cpus() {
        let mut s = Scheduler::new(4);
        for t in 0..8u64 {
            assert_eq!(s.enqueue(t, prio(t as u8), 0).unwrap().cpu, 0);
        }
        let moves = s.balance();
        assert_eq!(moves.len(), 6);
        assert!(moves.iter().all(|&(t, from, to)| from == 0 && to != 0 && s.cpu_of(t) == Some(to)));
        assert_eq!((0..4).map(|c| s.queued_len(c)).collect::<Vec<_>>(), [2, 2, 2, 2]);
        assert!(s.balance().is_empty());
        s.check_invariants();
    }

    #[test]
    fn offline_cpus_receive_nothing() {
        let mut s = Scheduler::new(4);
        s.set_online(1, false);
        assert_eq!(s.enqueue(1u64, prio(3), 1).unwrap().cpu, 0, "hint offline: least loaded");
        assert_eq!(s.enqueue(2, pinned(3, 1), 0), Err(SchedError::EmptyAffinity));
        for t in 10..20u64 {
            s.enqueue(t, prio(3), 3).unwrap();
        }
        assert!(s.balance().iter().all(|&(_, _, to)| to != 1));
        assert_eq!(s.queued_len(1), 0);
        assert_eq!(s.pick_next(1, None), None, "an offline CPU steals nothing");

        // Offlining a CPU moves its queue away.
        let before = s.queued_len(3);
        let moves = s.set_online(3, false);
        assert_eq!(moves.len(), before);
        assert!(moves.iter().all(|&(_, from, to)| from == 3 && (to == 0 || to == 2)));
        assert_eq!(s.queued_len(3), 0);

        // A running thread on an offlined CPU moves at its next pick_next.
        let mut s = Scheduler::new(2);
        s.enqueue(1u64, prio(3), 1).unwrap();
        assert_eq!(s.pick_next(1, None), Some(1));
        s.set_online(1, false);
        assert!(s.tick(1, 1));
        assert_eq!(s.pick_next(1, Some((1, prio(3)))), None);
        assert_eq!(s.cpu_of(1), Some(0));

        // A thread whose CPUs are all offline waits, and moves when one comes back.
        let mut s = Scheduler::new(4);
        let two_three = SchedParams { priority: 1, affinity: CpuSet::EMPTY.with(2).with(3) };
        s.enqueue(7u64, two_three, 2).unwrap();
        assert!(s.set_online(3, false).is_empty());
        assert!(s.set_online(2, false).is_empty());
        assert_eq!(s.cpu_of(7), Some(2));
        assert_eq!(s.set_online(3, true), [(7, 2, 3)]);
        s.check_invariants();
    }

    #[test]
    fn current_whose_affinity_changed_moves_away() {
        let mut s = Scheduler::new(3);
        s.enqueue(1u64, prio(3), 0).unwrap();
        s.enqueue(2, prio(2), 0).unwrap();
        assert_eq!(s.pick_next(0, None), Some(1));
        assert_eq!(s.pick_next(0, Some((1, pinned(3, 2)))), Some(2));
        assert_eq!(s.cpu_of(1), Some(2));
        assert!(s.is_queued(1));
        s.check_invariants();
    }

    #[test]
    fn errors() {
        let mut s = Scheduler::new(2);
        let none = SchedParams { priority: 1, affinity: CpuSet::EMPTY };
        assert_eq!(s.enqueue(1u64, none, 0), Err(SchedError::EmptyAffinity));
        assert_eq!(s.enqueue(1, pinned(1, 5), 0), Err(SchedError::EmptyAffinity), "only absent cpus");
        assert_eq!(s.enqueue(1, prio(64), 0), Err(SchedError::BadPriority));
        assert_eq!(s.enqueue(1, prio(1), 2), Err(SchedError::BadCpu));
        assert_eq!(s.remove(1), Err(SchedError::NotQueued));
        s.enqueue(1, prio(1), 0).unwrap();
        assert_eq!(s.enqueue(1, prio(2), 1), Err(SchedError::AlreadyQueued));
        assert_eq!(s.pick_next(0, None), Some(1));
        assert_eq!(s.enqueue(1, prio(1), 0), Err(SchedError::AlreadyRunning));
        assert_eq!(s.remove(1), Err(SchedError::NotQueued));
        // Once its CPU has moved on, it can be enqueued again.
        assert_eq!(s.pick_next(0, None), None);
        assert_eq!(s.enqueue(1, prio(1), 0).map(|e| e.cpu), Ok(0));
        assert_eq!(s.remove(1), Ok(()));
        assert!(!s.is_queued(1) && s.cpu_of(1).is_none());
        s.check_invariants();
    }

    #[test]
    #[should_panic(expected = "never both running and queued")]
    fn current_that_is_queued_is_a_kernel_bug() {
        let mut s = Scheduler::new(1);
        s.enqueue(1u64, prio(1), 0).unwrap();
        s.pick_next(0, Some((1, prio(1))));
    }

    /// An id whose hash puts every id with the same `id % buckets` in the same home slot.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Colliding(u32);

    impl Hash for Colliding {
        fn hash<H: Hasher>(&self, h: &mut H) {
            h.write_u32(self.0 % 3);
        }
    }

    #[test]
    fn thread_table_survives_collisions_growth_and_removal() {
        let e = |cpu| Entry { cpu, priority: 0, affinity: CpuSet::EMPTY };
        let mut table = ThreadTable::new();
        let mut model = HashMap::new();
        let mut rng = Lcg(7);
        for step in 0..20_000 {
            let k = (rng.next() % 200) as u32;
            if rng.next().is_multiple_of(3) {
                assert_eq!(table.remove(Colliding(k)).map(|e| e.cpu), model.remove(&k), "step {step}");
            } else {
                let cpu = (step % 64) as u8;
                table.insert(Colliding(k), e(cpu));
                model.insert(k, cpu);
            }
            assert_eq!(table.len, model.len());
            if step % 97 == 0 {
                for k in 0..200 {
                    assert_eq!(table.get(Colliding(k)).map(|e| e.cpu), model.get(&k).copied());
                }
            }
        }
    }

    /// A deterministic linear congruential generator.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    /// What the test believes of one thread.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Model {
        Blocked,
        Queued(usize),
        Running(usize),
    }

    /// Random operations against a scheduler of `ncpus` CPUs, checking the module's invariants
    /// and the documented answers after each one.
    fn model_test<T: Copy + Eq + Hash + Debug>(id: fn(usize) -> T, seed: u64, ncpus: usize, nthreads: usize) {
        let mut rng = Lcg(seed);
        let mut s = Scheduler::with_timeslice(ncpus, 3);
        let mut state = vec![Model::Blocked; nthreads];
        let mut params = vec![prio(0); nthreads];
        let mut slice = vec![0u32; ncpus];
        let present = CpuSet::all(ncpus).bits();

        let random_affinity = |rng: &mut Lcg| match rng.below(10) {
            0..=3 => CpuSet::all(MAX_CPUS),
            4..=7 => CpuSet::from_bits(rng.next() & present),
            8 => CpuSet::single(rng.below(ncpus)),
            _ => CpuSet::from_bits(rng.next() << 32 | rng.next()),
        };
        // The highest priority the model has queued on `cpu`.
        let top_queued = |state: &[Model], params: &[SchedParams], cpu: usize| {
            (0..nthreads).filter(|&i| state[i] == Model::Queued(cpu)).map(|i| params[i].priority).max()
        };

        for step in 0..6_000 {
            let online = (0..ncpus).filter(|&c| s.is_online(c)).fold(0u64, |m, c| m | bit(c));
            match rng.below(100) {
                0..=29 => {
                    let i = rng.below(nthreads);
                    let p = SchedParams { priority: rng.below(66) as u8, affinity: random_affinity(&mut rng) };
                    let hint = rng.below(ncpus + 1);
                    let got = s.enqueue(id(i), p, hint);
                    let expected_err = if p.priority >= 64 {
                        Some(SchedError::BadPriority)
                    } else if hint >= ncpus {
                        Some(SchedError::BadCpu)
                    } else if matches!(state[i], Model::Queued(_)) {
                        Some(SchedError::AlreadyQueued)
                    } else if matches!(state[i], Model::Running(_)) {
                        Some(SchedError::AlreadyRunning)
                    } else if p.affinity.bits() & online == 0 {
                        Some(SchedError::EmptyAffinity)
                    } else {
                        None
                    };
                    match (got, expected_err) {
                        (Err(e), Some(x)) => assert_eq!(e, x, "step {step}"),
                        (Ok(e), None) => {
                            assert!(p.affinity.contains(e.cpu) && online & bit(e.cpu) != 0, "step {step}");
                            if p.affinity.contains(hint) && online & bit(hint) != 0 {
                                assert_eq!(e.cpu, hint, "step {step}: hint ignored");
                            }
                            let outranks = match s.running(e.cpu) {
                                None => true,
                                Some(r) => {
                                    let r = (0..nthreads).find(|&j| id(j) == r).unwrap();
                                    p.priority > params[r].priority
                                }
                            };
                            assert_eq!(e.preempt, outranks, "step {step}");
                            state[i] = Model::Queued(e.cpu);
                            params[i] = p;
                        }
                        other => panic!("step {step}: enqueue gave {other:?}"),
                    }
                }
                30..=39 => {
                    let i = rng.below(nthreads);
                    let queued = matches!(state[i], Model::Queued(_));
                    assert_eq!(s.remove(id(i)).is_ok(), queued, "step {step}");
                    if queued {
                        state[i] = Model::Blocked;
                    }
                }
                40..=69 => {
                    let cpu = rng.below(ncpus);
                    let prev = (0..nthreads).find(|&i| state[i] == Model::Running(cpu));
                    // The running thread goes on (70%) or blocked; sometimes its parameters
                    // changed; sometimes the kernel hands the CPU straight to a blocked thread.
                    let mut current = match prev {
                        Some(i) if rng.chance(70) => Some(i),
                        Some(i) => {
                            state[i] = Model::Blocked;
                            None
                        }
                        None => None,
                    };
                    if let Some(i) = current
                        && rng.chance(10)
                    {
                        params[i] = SchedParams { priority: rng.below(64) as u8, affinity: random_affinity(&mut rng) };
                        if params[i].affinity.bits() & present == 0 {
                            params[i].affinity = CpuSet::single(cpu);
                        }
                    }
                    if current.is_none()
                        && rng.chance(5)
                        && let Some(i) = (0..nthreads).find(|&i| state[i] == Model::Blocked)
                    {
                        params[i].affinity = CpuSet::all(MAX_CPUS);
                        current = Some(i);
                    }
                    let top_before = top_queued(&state, &params, cpu);
                    let got = s.pick_next(cpu, current.map(|i| (id(i), params[i])));
                    let got_i = got.map(|t| (0..nthreads).find(|&j| id(j) == t).unwrap());
                    let cpu_online = online & bit(cpu) != 0;

                    // What happened to `current`, per the documented rule.
                    let mut kept = false;
                    if let Some(i) = current {
                        let here = cpu_online && params[i].affinity.contains(cpu);
                        let used = if prev == Some(i) { slice[cpu] } else { 0 };
                        if here {
                            kept = used < 3 && top_before.is_none_or(|t| t <= params[i].priority);
                            if kept {
                                assert_eq!(got_i, Some(i), "step {step}: current should keep cpu {cpu}");
                                slice[cpu] = used;
                            } else {
                                state[i] = Model::Queued(cpu);
                            }
                        } else {
                            let to = s.cpu_of(id(i)).expect("current was requeued");
                            assert!(params[i].affinity.contains(to), "step {step}");
                            if params[i].affinity.bits() & online != 0 {
                                assert!(online & bit(to) != 0, "step {step}");
                            }
                            assert_ne!(got_i, Some(i), "step {step}");
                            state[i] = Model::Queued(to);
                        }
                    }
                    if kept {
                        if let Some(i) = current {
                            state[i] = Model::Running(cpu);
                        }
                    } else {
                        slice[cpu] = 0;
                        match got_i {
                            Some(j) => {
                                assert!(cpu_online, "step {step}: offline cpu {cpu} was given work");
                                assert!(params[j].affinity.contains(cpu), "step {step}");
                                let Model::Queued(from) = state[j] else { panic!("step {step}: {j} was not queued") };
                                let own_top = top_queued(&state, &params, cpu);
                                if from == cpu {
                                    assert_eq!(Some(params[j].priority), own_top, "step {step}");
                                } else {
                                    // Stolen: own queue empty; from the busiest CPU with a
                                    // thread allowed here; its highest such priority.
                                    assert_eq!(own_top, None, "step {step}");
                                    let st = &state;
                                    let queued_at =
                                        |c: usize| (0..nthreads).filter(move |&k| st[k] == Model::Queued(c));
                                    let len = |c: usize| queued_at(c).count();
                                    let best = (0..ncpus)
                                        .filter(|&c| queued_at(c).any(|k| params[k].affinity.contains(cpu)))
                                        .map(len)
                                        .max();
                                    assert_eq!(Some(len(from)), best, "step {step}: stole from a lighter cpu");
                                    let top = queued_at(from)
                                        .filter(|&k| params[k].affinity.contains(cpu))
                                        .map(|k| params[k].priority)
                                        .max();
                                    assert_eq!(Some(params[j].priority), top, "step {step}");
                                }
                                state[j] = Model::Running(cpu);
                            }
                            None => {
                                if cpu_online {
                                    let waiting = (0..nthreads).any(|k| {
                                        matches!(state[k], Model::Queued(_)) && params[k].affinity.contains(cpu)
                                    });
                                    assert!(!waiting, "step {step}: cpu {cpu} idles while it could steal");
                                }
                            }
                        }
                    }
                }
                70..=89 => {
                    let cpu = rng.below(ncpus);
                    if let Some(i) = (0..nthreads).find(|&i| state[i] == Model::Running(cpu)) {
                        let top = top_queued(&state, &params, cpu);
                        let got = s.tick(cpu, id(i));
                        if online & bit(cpu) == 0 {
                            assert!(got, "step {step}");
                        } else {
                            slice[cpu] += 1;
                            let p = params[i].priority;
                            let expected = top.is_some_and(|t| t > p || (t == p && slice[cpu] >= 3));
                            assert_eq!(got, expected, "step {step}");
                        }
                    }
                }
                90..=94 => {
                    for (t, from, to) in s.balance() {
                        let i = (0..nthreads).find(|&j| id(j) == t).unwrap();
                        assert_eq!(state[i], Model::Queued(from), "step {step}");
                        assert!(params[i].affinity.contains(to) && online & bit(to) != 0, "step {step}");
                        state[i] = Model::Queued(to);
                    }
                    let load = |c: usize| {
                        (0..nthreads).filter(|&k| state[k] == Model::Queued(c) || state[k] == Model::Running(c)).count()
                    };
                    for a in Ascending(online) {
                        for b in Ascending(online) {
                            if load(a) > load(b) + 1 {
                                let movable = (0..nthreads)
                                    .any(|k| state[k] == Model::Queued(a) && params[k].affinity.contains(b));
                                assert!(!movable, "step {step}: balance left {a} -> {b}");
                            }
                        }
                    }
                }
                _ => {
                    let cpu = rng.below(ncpus);
                    let online_now = !s.is_online(cpu);
                    for (t, from, to) in s.set_online(cpu, online_now) {
                        let i = (0..nthreads).find(|&j| id(j) == t).unwrap();
                        assert_eq!(state[i], Model::Queued(from), "step {step}");
                        assert!(params[i].affinity.contains(to) && s.is_online(to), "step {step}");
                        state[i] = Model::Queued(to);
                    }
                }
            }
            s.check_invariants();
            for (i, m) in state.iter().enumerate() {
                let (queued, cpu) = match *m {
                    Model::Blocked => (false, None),
                    Model::Queued(c) => (true, Some(c)),
                    Model::Running(c) => (false, Some(c)),
                };
                assert_eq!(s.is_queued(id(i)), queued, "step {step}: thread {i} {m:?}");
                assert_eq!(s.cpu_of(id(i)), cpu, "step {step}: thread {i} {m:?}");
                if let Model::Running(c) = m {
                    assert_eq!(s.running(*c), Some(id(i)), "step {step}");
                }
            }
            let queued: usize = (0..ncpus).map(|c| s.queued_len(c)).sum();
            assert_eq!(queued, state.iter().filter(|m| matches!(m, Model::Queued(_))).count());
        }
    }

    #[test]
    fn randomized_model_keeps_invariants() {
        for (seed, ncpus, nthreads) in [(1, 1, 5), (2, 2, 12), (3, 4, 40), (4, 7, 64), (5, 64, 100)] {
            model_test(|i| i as u64, seed, ncpus, nthreads);
        }
        model_test(|i| Colliding(i as u32), 6, 4, 50);
    }

    #[test]
    fn hand_off_runs_a_blocked_thread_and_frees_the_blocked_one_for_waking() {
        let mut s: Scheduler<u64> = Scheduler::new(2);
        let p = SchedParams { priority: 10, affinity: CpuSet::all(2) };
        s.enqueue(1, p, 0).unwrap();
        assert_eq!(s.pick_next(0, None), Some(1));
        // 1 calls a server (2) that was blocked: 2 runs on cpu 0 at once, 1 is blocked.
        s.hand_off(0, 2, p);
        assert_eq!(s.running(0), Some(2));
        assert!(!s.is_queued(1));
        // 2 replies and blocks: 1 can be woken straight away.
        s.stop_running(0);
        assert_eq!(s.running(0), None);
        s.enqueue(1, p, 0).unwrap();
        assert_eq!(s.pick_next(0, None), Some(1));
    }

    #[test]
    fn hand_offs_share_one_slice_so_a_ping_pong_pair_is_preempted() {
        let mut s: Scheduler<u64> = Scheduler::new(1);
        let p = SchedParams { priority: 10, affinity: CpuSet::all(1) };
        s.enqueue(1, p, 0).unwrap();
        s.enqueue(3, p, 0).unwrap(); // an equal-priority bystander
        assert_eq!(s.pick_next(0, None), Some(1));
        // 1 and 2 call each other back and forth; ticks keep coming.
        let mut preempted = false;
        for round in 0..10 {
            let (from, to) = if round % 2 == 0 { (1, 2) } else { (2, 1) };
            let _ = from;
            s.stop_running(0);
            s.hand_off(0, to, p);
            if s.tick(0, to) {
                preempted = true;
                break;
            }
        }
        assert!(preempted, "the pair must be preempted once their shared slice is used up");
    }
}
