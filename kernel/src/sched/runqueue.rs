//! Run queues: the arch-neutral scheduling policy, i.e. which runnable thread each CPU runs next.
//!
//! [`Scheduler`] owns one run queue per CPU: 64 FIFO lists, one per priority (0 lowest, 63
//! highest), and a bitmap of the non-empty ones, so the highest waiting priority is one
//! `leading_zeros` away. Threads of equal priority take turns in time slices counted in timer
//! ticks. Each thread has an affinity ([`CpuSet`]) and is queued only on a CPU in it; an idle CPU
//! steals from the busiest one, and [`Scheduler::balance`] evens out the loads.
//!
//! The scheduler keeps one record per thread in a table of its own, from [`Scheduler::add`] to
//! [`Scheduler::forget`]; the kernel keeps the [`SchedId`] it was given in its thread object and
//! names the thread by it. A record holds the thread's place (away or queued on a CPU), its
//! parameters and its links in its FIFO: the FIFOs are intrusive lists of records, so
//! queueing, taking the head and removing a thread from the middle are a few index operations, with
//! no hashing, no search and no allocation (only `add` allocates, when the table outgrows its
//! high-water mark).
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
//! - moves returned by [`Scheduler::balance`] and [`Scheduler::set_online`] are IPIs to send;
//! - a thread that is gone is [`Scheduler::forget`]ten, which takes it out of its queue or CPU.
//!
//! Invariants (checked after every step of the randomized test):
//! - a thread is queued at most once, on one CPU, in the FIFO of its priority, and that CPU is in
//!   its affinity; its record's place says so, and the FIFO's links are consistent both ways;
//! - bit `p` of a CPU's bitmap is set iff its priority-`p` FIFO is non-empty; `len` is their sum;
//! - a thread that runs on a CPU (the last one `pick_next` or `hand_off` made run there) runs on
//!   no other CPU and is not queued; only the CPU's run queue says it runs there;
//! - a thread is queued on an offline CPU only if no online CPU is in its affinity (it waits
//!   there until one comes online);
//! - a forgotten record is on the free list only, and no queue or CPU names it.

#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt::Debug;

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

/// A thread's record in a [`Scheduler`], from [`Scheduler::add`] until [`Scheduler::forget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedId(u32);

/// No record: the end of a list, or an idle CPU.
const NIL: u32 = u32::MAX;

/// Where a thread is, as far as its record says. What a CPU runs is in that CPU's run queue
/// only, so a hand-off between a client and a server writes no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Not queued: blocked, not yet enqueued, or running (see [`RunQueue::running`]).
    Away,
    /// In the run queue of this CPU.
    Queued(u8),
    /// Forgotten: on the free list.
    Free,
}

/// What the scheduler knows of a thread.
#[derive(Clone, Copy, Debug)]
struct Record<T> {
    thread: T,
    place: Place,
    /// As last enqueued (a running thread's are in its CPU's run queue).
    params: SchedParams,
    /// The neighbours in its FIFO while queued (`NIL` at the ends); `next` links the free list.
    prev: u32,
    next: u32,
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

/// One FIFO: the first and last record (`NIL` when empty).
#[derive(Clone, Copy)]
struct Fifo {
    head: u32,
    tail: u32,
}

/// One CPU's run queue and what the CPU runs.
struct RunQueue {
    /// One FIFO per priority.
    levels: [Fifo; PRIORITIES],
    /// Bit `p` is set iff `levels[p]` is non-empty.
    nonempty: u64,
    /// Threads queued in all levels.
    len: usize,
    /// The record of what runs here (`NIL` when idle).
    running: u32,
    /// The priority and affinity of `running`.
    running_params: SchedParams,
    /// Ticks charged to `running` in its current slice.
    slice_used: u32,
    /// The length of `running`'s slice in ticks (0: the scheduler's default): a thread of a
    /// quota with a CPU weight gets a slice that many hundredths of the default.
    slice_limit: u32,
}

impl RunQueue {
    fn new() -> Self {
        Self {
            levels: [Fifo { head: NIL, tail: NIL }; PRIORITIES],
            nonempty: 0,
            len: 0,
            running: NIL,
            running_params: SchedParams { priority: 0, affinity: CpuSet::EMPTY },
            slice_used: 0,
            slice_limit: 0,
        }
    }

    /// Ticks in the running thread's slice.
    fn slice_ticks(&self, default: u32) -> u32 {
        if self.slice_limit == 0 { default } else { self.slice_limit }
    }

    /// The highest priority with a queued thread.
    fn top(&self) -> Option<u8> {
        if self.nonempty == 0 { None } else { Some(63 - self.nonempty.leading_zeros() as u8) }
    }

    /// Queued threads plus the running one: what balancing evens out.
    fn load(&self) -> usize {
        self.len + usize::from(self.running != NIL)
    }
}

/// The scheduling policy of all CPUs; see the module documentation.
pub struct Scheduler<T> {
    records: Vec<Record<T>>,
    /// The first forgotten record (`NIL`: none), linked through `next`.
    free: u32,
    queues: Vec<RunQueue>,
    /// CPUs `0..ncpus`.
    present: u64,
    /// CPUs that receive threads.
    online: u64,
    timeslice: u32,
}

impl<T: Copy + Eq + Debug> Scheduler<T> {
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
            records: Vec::new(),
            free: NIL,
            queues: (0..ncpus).map(|_| RunQueue::new()).collect(),
            present,
            online: present,
            timeslice: ticks.max(1),
        }
    }

    /// A record for `thread`, which is away (neither queued nor running) until enqueued.
    pub fn add(&mut self, thread: T) -> SchedId {
        let record = Record { thread, place: Place::Away, params: SchedParams { priority: 0, affinity: CpuSet::EMPTY }, prev: NIL, next: NIL };
        if self.free != NIL {
            let id = self.free;
            self.free = self.records[id as usize].next;
            self.records[id as usize] = record;
            return SchedId(id);
        }
        let id = u32::try_from(self.records.len()).expect("sched invariant: fewer than 2^32 threads");
        self.records.push(record);
        SchedId(id)
    }

    /// The thread is gone: takes it out of its queue, or off the CPU it runs on (as
    /// [`Self::stop_running`] does), and frees its record for a later [`Self::add`].
    pub fn forget(&mut self, id: SchedId) {
        match self.rec(id.0).place {
            Place::Queued(_) => self.unlink(id.0),
            Place::Away => {
                if let Some(cpu) = self.running_cpu(id.0) {
                    self.queues[cpu].running = NIL;
                }
            }
            Place::Free => panic!("sched invariant: a record is forgotten once, but {id:?} is free"),
        }
        let r = &mut self.records[id.0 as usize];
        r.place = Place::Free;
        r.next = self.free;
        self.free = id.0;
    }

    /// Makes a thread runnable: queues it on `hint` if its affinity allows it and `hint` is online,
    /// else on the least loaded online CPU in its affinity (queued plus running threads; the
    /// lowest index on a tie). Says which CPU, and whether that CPU should reschedule now.
    ///
    /// # Errors
    /// [`SchedError::BadPriority`], [`SchedError::BadCpu`] (`hint`), [`SchedError::AlreadyQueued`],
    /// [`SchedError::AlreadyRunning`], [`SchedError::EmptyAffinity`], checked in that order; a
    /// refused thread's state is unchanged.
    pub fn enqueue(&mut self, id: SchedId, params: SchedParams, hint: usize) -> Result<Enqueued, SchedError> {
        if usize::from(params.priority) >= PRIORITIES {
            return Err(SchedError::BadPriority);
        }
        if hint >= self.queues.len() {
            return Err(SchedError::BadCpu);
        }
        match self.rec(id.0).place {
            Place::Away => {}
            Place::Queued(_) => return Err(SchedError::AlreadyQueued),
            Place::Free => panic!("sched invariant: only a live thread is enqueued, but {id:?} was forgotten"),
        }
        if self.running_cpu(id.0).is_some() {
            return Err(SchedError::AlreadyRunning);
        }
        let cpu = self.place(params.affinity, Some(hint)).ok_or(SchedError::EmptyAffinity)?;
        self.records[id.0 as usize].params = params;
        self.link_tail(id.0, cpu);
        let q = &self.queues[cpu];
        let preempt = q.running == NIL || params.priority > q.running_params.priority;
        Ok(Enqueued { cpu, preempt })
    }

    /// Takes a queued thread out of its queue (it blocked or was killed while ready).
    ///
    /// # Errors
    /// [`SchedError::NotQueued`] if it is not queued (a running thread leaves its CPU through
    /// `pick_next`).
    pub fn remove(&mut self, id: SchedId) -> Result<(), SchedError> {
        match self.rec(id.0).place {
            Place::Queued(_) => {
                self.unlink(id.0);
                Ok(())
            }
            _ => Err(SchedError::NotQueued),
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
    #[inline(always)]
    pub fn pick_next(&mut self, cpu: usize, current: Option<(SchedId, SchedParams)>) -> Option<T> {
        self.expect_cpu(cpu, "pick_next");
        let prev = core::mem::replace(&mut self.queues[cpu].running, NIL);
        // The thread that ran here continues its slice if it is `current` (and keeps the CPU);
        // otherwise it blocked or exited, and a new slice begins.
        if prev == NIL || current.is_none_or(|(c, _)| c.0 != prev) {
            self.queues[cpu].slice_used = 0;
        }
        if let Some((id, params)) = current
            && self.keeps_cpu(cpu, id.0, params)
        {
            return Some(self.records[id.0 as usize].thread);
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
        self.queues[cpu].running = NIL;
    }

    /// A direct hand-off (IPC call or reply): `to`, neither queued nor running, runs on `cpu` now
    /// in place of what ran there, which stops running. The slice in progress carries on: the
    /// time is donated, not renewed.
    ///
    /// # Panics
    /// In debug builds (every host test), if `to` is queued, forgotten or running (the kernel
    /// hands off only to a thread it has just taken from a blocked state; this path is every IPC
    /// call and reply, so release builds trust it).
    pub fn hand_off(&mut self, cpu: usize, to: SchedId, params: SchedParams) {
        self.expect_cpu(cpu, "hand_off");
        debug_assert!(
            self.rec(to.0).place == Place::Away,
            "sched invariant: a hand-off target is blocked, but {to:?} is {:?}",
            self.rec(to.0).place
        );
        debug_assert!(
            self.queues.iter().enumerate().all(|(c, q)| c == cpu || q.running != to.0),
            "sched invariant: a hand-off target is blocked, but {to:?} runs on another cpu"
        );
        let q = &mut self.queues[cpu];
        q.running = to.0;
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
        let r = self.queues[cpu].running;
        if r == NIL || self.records[r as usize].thread != running || self.online & bit(cpu) == 0 {
            return true;
        }
        let q = &mut self.queues[cpu];
        let priority = q.running_params.priority;
        q.slice_used = q.slice_used.saturating_add(1);
        match q.top() {
            None => false,
            Some(top) => top > priority || (top == priority && q.slice_used >= q.slice_ticks(self.timeslice)),
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
        while let Some(m) = self.one_balancing_move() {
            moves.push(m);
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
                while let Some(r) = self.find_movable(from, cpu) {
                    moves.push(self.migrate(r, from, cpu));
                }
            }
        } else {
            self.online &= !bit(cpu);
            for priority in Descending(self.queues[cpu].nonempty) {
                let mut r = self.queues[cpu].levels[priority].head;
                while r != NIL {
                    let next = self.records[r as usize].next;
                    if let Some(to) = self.place(self.records[r as usize].params.affinity, None) {
                        moves.push(self.migrate(r, cpu, to));
                    }
                    r = next;
                }
            }
        }
        moves
    }

    /// Threads queued on `cpu` (0 for a CPU that does not exist).
    pub fn queued_len(&self, cpu: usize) -> usize {
        self.queues.get(cpu).map_or(0, |q| q.len)
    }

    /// Whether a thread of `priority` or above is queued on `cpu` (false for a CPU that does not
    /// exist): whether a yield there would give the CPU to another thread.
    pub fn queued_at_or_above(&self, cpu: usize, priority: u8) -> bool {
        self.queues.get(cpu).and_then(RunQueue::top).is_some_and(|top| top >= priority)
    }

    /// Whether the thread is queued.
    pub fn is_queued(&self, id: SchedId) -> bool {
        matches!(self.rec(id.0).place, Place::Queued(_))
    }

    /// The CPU the thread is queued on or runs on, if either.
    pub fn cpu_of(&self, id: SchedId) -> Option<usize> {
        match self.rec(id.0).place {
            Place::Queued(c) => Some(usize::from(c)),
            Place::Away => self.running_cpu(id.0),
            Place::Free => None,
        }
    }

    /// What `cpu` runs: the thread `pick_next` or `hand_off` last made run there (`None`: idle).
    pub fn running(&self, cpu: usize) -> Option<T> {
        let r = self.queues.get(cpu)?.running;
        (r != NIL).then(|| self.records[r as usize].thread)
    }

    /// Whether `cpu` exists and is online.
    pub fn is_online(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.online & bit(cpu) != 0
    }

    /// Sets the length of the slice of the thread that runs on `cpu` now (0: the default).
    pub fn set_slice(&mut self, cpu: usize, ticks: u32) {
        self.queues[cpu].slice_limit = ticks;
    }

    /// Ticks in a time slice.
    pub fn timeslice(&self) -> u32 {
        self.timeslice
    }

    fn expect_cpu(&self, cpu: usize, op: &str) {
        let n = self.queues.len();
        assert!(cpu < n, "sched: {op} on cpu {cpu}, but the scheduler serves {n} cpus");
    }

    /// The record `r`, which [`Self::add`] made.
    fn rec(&self, r: u32) -> &Record<T> {
        match self.records.get(r as usize) {
            Some(record) => record,
            None => panic!("sched invariant: every SchedId comes from add, but {r} is past the table"),
        }
    }

    /// The CPU record `r` runs on, if any: a scan of the CPUs' running slots.
    fn running_cpu(&self, r: u32) -> Option<usize> {
        self.queues.iter().position(|q| q.running == r)
    }

    /// Queues record `r` (away) at the tail of its priority's FIFO on `cpu`.
    #[inline]
    fn link_tail(&mut self, r: u32, cpu: usize) {
        let priority = usize::from(self.records[r as usize].params.priority);
        let fifo = &mut self.queues[cpu].levels[priority];
        let tail = core::mem::replace(&mut fifo.tail, r);
        if tail == NIL {
            fifo.head = r;
        }
        let q = &mut self.queues[cpu];
        q.nonempty |= bit(priority);
        q.len += 1;
        if tail != NIL {
            self.records[tail as usize].next = r;
        }
        let record = &mut self.records[r as usize];
        record.prev = tail;
        record.next = NIL;
        record.place = Place::Queued(cpu as u8);
    }

    /// Takes queued record `r` out of its FIFO; it is then away.
    fn unlink(&mut self, r: u32) {
        let Record { place, params, prev, next, .. } = self.records[r as usize];
        let Place::Queued(cpu) = place else {
            panic!("sched invariant: only a queued record is unlinked, but {r} is {place:?}")
        };
        let priority = usize::from(params.priority);
        if prev != NIL {
            self.records[prev as usize].next = next;
        }
        if next != NIL {
            self.records[next as usize].prev = prev;
        }
        let q = &mut self.queues[usize::from(cpu)];
        let fifo = &mut q.levels[priority];
        if prev == NIL {
            fifo.head = next;
        }
        if next == NIL {
            fifo.tail = prev;
        }
        if fifo.head == NIL {
            q.nonempty &= !bit(priority);
        }
        q.len -= 1;
        self.records[r as usize].place = Place::Away;
    }

    /// Takes the first record of `cpu`'s non-empty FIFO of `priority`: [`Self::unlink`] of the
    /// head, the common case, in fewer steps.
    #[inline]
    fn pop_head(&mut self, cpu: usize, priority: u8) -> u32 {
        let priority = usize::from(priority) % PRIORITIES;
        let r = self.queues[cpu].levels[priority].head;
        let record = &mut self.records[r as usize];
        let next = record.next;
        record.place = Place::Away;
        if next != NIL {
            self.records[next as usize].prev = NIL;
        }
        let q = &mut self.queues[cpu];
        q.levels[priority].head = next;
        if next == NIL {
            q.levels[priority].tail = NIL;
            q.nonempty &= !bit(priority);
        }
        q.len -= 1;
        r
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

    /// Decides whether current record `r` keeps `cpu` (true) or was queued (false).
    fn keeps_cpu(&mut self, cpu: usize, r: u32, params: SchedParams) -> bool {
        let thread = self.rec(r).thread;
        assert!(
            usize::from(params.priority) < PRIORITIES,
            "sched: current {thread:?} on cpu {cpu} has priority {}, not below {PRIORITIES}",
            params.priority
        );
        match self.records[r as usize].place {
            Place::Queued(other) => panic!(
                "sched invariant: a thread is never both running and queued; current {thread:?} on cpu {cpu} is queued on cpu {other}"
            ),
            Place::Away => {}
            Place::Free => panic!("sched invariant: current {thread:?} on cpu {cpu} was forgotten"),
        }
        if let Some(other) = self.running_cpu(r) {
            // The kernel moved it here from another CPU without a `pick_next` there.
            let other = &mut self.queues[other];
            other.running = NIL;
            other.slice_used = 0;
        }
        self.records[r as usize].params = params;
        if params.affinity.bits() & self.online & bit(cpu) == 0
            && let Some(to) = self.relocation_target(cpu, params.affinity)
        {
            self.link_tail(r, to);
            return false;
        }
        let q = &mut self.queues[cpu];
        let outranked = q.top().is_some_and(|top| top > params.priority);
        if q.slice_used < q.slice_ticks(self.timeslice) && !outranked {
            q.running = r;
            q.running_params = params;
            true
        } else {
            self.link_tail(r, cpu);
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
    #[inline(always)]
    fn pick_queued(&mut self, cpu: usize) -> Option<T> {
        // A new slice of the default length (the kernel sets a weighted one after loading).
        self.queues[cpu].slice_used = 0;
        self.queues[cpu].slice_limit = 0;
        if !self.is_online(cpu) {
            return None;
        }
        let r = match self.queues[cpu].top() {
            Some(priority) => self.pop_head(cpu, priority),
            None => {
                let r = self.steal(cpu)?;
                self.unlink(r);
                r
            }
        };
        let record = self.records[r as usize];
        let q = &mut self.queues[cpu];
        q.running = r;
        q.running_params = record.params;
        Some(record.thread)
    }

    /// The record to steal for `cpu`: from the CPU with the most queued threads that has one
    /// `cpu` may run, its highest-priority such thread.
    #[inline(always)]
    fn steal(&self, cpu: usize) -> Option<u32> {
        // Victims in order of queue length (longest first, the lowest index among equals),
        // chosen one at a time: an idle CPU comes here at every wake-up, and usually every
        // other queue is empty.
        let mut left: u64 = Ascending(self.present & !bit(cpu)).filter(|&c| self.queues[c].len > 0).fold(0, |m, c| m | bit(c));
        while left != 0 {
            let victim = Ascending(left).max_by_key(|&c| (self.queues[c].len, core::cmp::Reverse(c)))?;
            left &= !bit(victim);
            if let Some(r) = self.find_movable(victim, cpu) {
                return Some(r);
            }
        }
        None
    }

    /// The highest-priority thread queued on `from` (the oldest of that priority) that may run
    /// on `to`.
    fn find_movable(&self, from: usize, to: usize) -> Option<u32> {
        let q = &self.queues[from];
        Descending(q.nonempty).find_map(|priority| {
            let mut r = q.levels[priority].head;
            while r != NIL {
                let record = &self.records[r as usize];
                if record.params.affinity.contains(to) {
                    return Some(r);
                }
                r = record.next;
            }
            None
        })
    }

    /// Moves queued record `r` from `from` to the tail of its FIFO on `to`.
    fn migrate(&mut self, r: u32, from: usize, to: usize) -> (T, usize, usize) {
        self.unlink(r);
        self.link_tail(r, to);
        (self.records[r as usize].thread, from, to)
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
                if let Some(r) = self.find_movable(from, to) {
                    return Some(self.migrate(r, from, to));
                }
            }
        }
        None
    }
}

#[cfg(test)]
impl<T: Copy + Eq + Debug> Scheduler<T> {
    /// Panics unless every invariant of the module documentation holds.
    fn check_invariants(&self) {
        let mut queued = 0;
        for (cpu, q) in self.queues.iter().enumerate() {
            let mut len = 0;
            for (priority, fifo) in q.levels.iter().enumerate() {
                assert_eq!(q.nonempty & bit(priority) != 0, fifo.head != NIL, "cpu {cpu} bitmap bit {priority}");
                let (mut prev, mut r) = (NIL, fifo.head);
                while r != NIL {
                    let e = &self.records[r as usize];
                    assert_eq!(e.place, Place::Queued(cpu as u8), "{:?} in cpu {cpu}'s queue", e.thread);
                    assert_eq!(usize::from(e.params.priority), priority, "{:?} queued at {priority}", e.thread);
                    assert_eq!(e.prev, prev, "{:?}: back link", e.thread);
                    if self.present & e.params.affinity.bits() != 0 {
                        assert!(e.params.affinity.contains(cpu), "{:?} queued on cpu {cpu} outside its affinity", e.thread);
                    }
                    if !self.is_online(cpu) {
                        assert_eq!(e.params.affinity.bits() & self.online, 0, "{:?} waits on offline cpu {cpu}", e.thread);
                    }
                    len += 1;
                    (prev, r) = (r, e.next);
                }
                assert_eq!(fifo.tail, prev, "cpu {cpu} priority {priority}: tail");
            }
            assert_eq!(q.len, len, "cpu {cpu} len");
            queued += len;
            if q.running != NIL {
                assert_eq!(self.records[q.running as usize].place, Place::Away, "cpu {cpu}'s running record");
                assert_eq!(self.running_cpu(q.running), Some(cpu), "cpu {cpu}'s running thread runs on another too");
            }
        }
        let mut free = 0;
        let mut r = self.free;
        while r != NIL {
            assert_eq!(self.records[r as usize].place, Place::Free, "record {r} on the free list");
            free += 1;
            r = self.records[r as usize].next;
        }
        let places = |want: fn(Place) -> bool| self.records.iter().filter(|e| want(e.place)).count();
        assert_eq!(places(|p| matches!(p, Place::Queued(_))), queued, "every queued record is in a FIFO");
        assert_eq!(places(|p| p == Place::Free), free, "every free record is on the free list");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::hash::Hash;
    use std::collections::HashMap;

    /// The scheduler with threads named by value, each added at its first mention (the kernel
    /// adds a thread when it creates it and keeps its `SchedId`).
    struct Named<T> {
        s: Scheduler<T>,
        ids: HashMap<T, SchedId>,
    }

    impl<T: Copy + Eq + Hash + Debug> Named<T> {
        fn new(ncpus: usize) -> Self {
            Self { s: Scheduler::new(ncpus), ids: HashMap::new() }
        }
        fn with_timeslice(ncpus: usize, ticks: u32) -> Self {
            Self { s: Scheduler::with_timeslice(ncpus, ticks), ids: HashMap::new() }
        }
        fn id(&mut self, t: T) -> SchedId {
            match self.ids.get(&t) {
                Some(&id) => id,
                None => {
                    let id = self.s.add(t);
                    self.ids.insert(t, id);
                    id
                }
            }
        }
        fn forget(&mut self, t: T) {
            let id = self.ids.remove(&t).expect("forget of a thread never added");
            self.s.forget(id);
        }
        fn enqueue(&mut self, t: T, params: SchedParams, hint: usize) -> Result<Enqueued, SchedError> {
            let id = self.id(t);
            self.s.enqueue(id, params, hint)
        }
        fn remove(&mut self, t: T) -> Result<(), SchedError> {
            let id = self.id(t);
            self.s.remove(id)
        }
        fn pick_next(&mut self, cpu: usize, current: Option<(T, SchedParams)>) -> Option<T> {
            let current = current.map(|(t, p)| (self.id(t), p));
            self.s.pick_next(cpu, current)
        }
        fn hand_off(&mut self, cpu: usize, to: T, params: SchedParams) {
            let id = self.id(to);
            self.s.hand_off(cpu, id, params);
        }
        fn stop_running(&mut self, cpu: usize) {
            self.s.stop_running(cpu);
        }
        fn tick(&mut self, cpu: usize, running: T) -> bool {
            self.s.tick(cpu, running)
        }
        fn balance(&mut self) -> Vec<(T, usize, usize)> {
            self.s.balance()
        }
        fn set_online(&mut self, cpu: usize, online: bool) -> Vec<(T, usize, usize)> {
            self.s.set_online(cpu, online)
        }
        fn is_queued(&self, t: T) -> bool {
            self.ids.get(&t).is_some_and(|&id| self.s.is_queued(id))
        }
        fn cpu_of(&self, t: T) -> Option<usize> {
            self.ids.get(&t).and_then(|&id| self.s.cpu_of(id))
        }
        fn queued_len(&self, cpu: usize) -> usize {
            self.s.queued_len(cpu)
        }
        fn running(&self, cpu: usize) -> Option<T> {
            self.s.running(cpu)
        }
        fn is_online(&self, cpu: usize) -> bool {
            self.s.is_online(cpu)
        }
        fn timeslice(&self) -> u32 {
            self.s.timeslice()
        }
        fn check_invariants(&self) {
            self.s.check_invariants();
            for (&t, &id) in &self.ids {
                assert_eq!(self.s.records[id.0 as usize].thread, t, "{t:?}'s record");
            }
        }
    }

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
        let mut s = Named::new(1);
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
        let mut s = Named::new(1);
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
        let mut s = Named::with_timeslice(1, 3);
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
        let mut s = Named::with_timeslice(1, 2);
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
        let mut s = Named::new(2);
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
        let mut s = Named::new(4);
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
        let mut s = Named::new(3);
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
        let mut s = Named::new(4);
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
        let mut s = Named::new(4);
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
        let mut s = Named::new(2);
        s.enqueue(1u64, prio(3), 1).unwrap();
        assert_eq!(s.pick_next(1, None), Some(1));
        s.set_online(1, false);
        assert!(s.tick(1, 1));
        assert_eq!(s.pick_next(1, Some((1, prio(3)))), None);
        assert_eq!(s.cpu_of(1), Some(0));

        // A thread whose CPUs are all offline waits, and moves when one comes back.
        let mut s = Named::new(4);
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
        let mut s = Named::new(3);
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
        let mut s = Named::new(2);
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
        let mut s = Named::new(1);
        s.enqueue(1u64, prio(1), 0).unwrap();
        s.pick_next(0, Some((1, prio(1))));
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
        let mut s = Named::with_timeslice(ncpus, 3);
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
                30..=36 => {
                    let i = rng.below(nthreads);
                    let queued = matches!(state[i], Model::Queued(_));
                    assert_eq!(s.remove(id(i)).is_ok(), queued, "step {step}");
                    if queued {
                        state[i] = Model::Blocked;
                    }
                }
                37..=39 => {
                    // The thread is killed wherever it is; its name comes back as a new thread.
                    let i = rng.below(nthreads);
                    s.id(id(i));
                    s.forget(id(i));
                    state[i] = Model::Blocked;
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
    }

    #[test]
    fn queued_at_or_above_says_whether_a_yield_would_switch() {
        let mut s = Named::new(2);
        assert!(!s.s.queued_at_or_above(0, 0) && !s.s.queued_at_or_above(5, 0));
        s.enqueue(1u64, prio(4), 0).unwrap();
        assert!(s.s.queued_at_or_above(0, 4) && s.s.queued_at_or_above(0, 3));
        assert!(!s.s.queued_at_or_above(0, 5) && !s.s.queued_at_or_above(1, 0));
        // A yield by a priority-4 thread with only 1 (priority 4) queued would run 1 next.
        assert_eq!(s.pick_next(0, None), Some(1));
        assert!(!s.s.queued_at_or_above(0, 0));
    }

    #[test]
    fn forgotten_threads_leave_their_queue_and_cpu_and_their_records_are_reused() {
        let mut s = Named::new(2);
        s.enqueue(1u64, prio(4), 0).unwrap();
        s.enqueue(2, prio(4), 0).unwrap();
        s.enqueue(3, prio(4), 1).unwrap();
        assert_eq!(s.pick_next(1, None), Some(3));
        // 1 dies queued (in front of 2), 3 dies running.
        s.forget(1);
        s.forget(3);
        assert_eq!(s.running(1), None);
        assert_eq!(s.queued_len(0), 1);
        s.check_invariants();
        // New threads take the freed records: no growth.
        let records = s.s.records.len();
        s.enqueue(4, prio(4), 1).unwrap();
        s.enqueue(5, prio(4), 1).unwrap();
        assert_eq!(s.s.records.len(), records);
        assert_eq!(s.pick_next(0, None), Some(2));
        assert_eq!(s.pick_next(1, None), Some(4));
        assert_eq!(s.pick_next(1, None), Some(5));
        s.check_invariants();
    }

    #[test]
    #[should_panic(expected = "forgotten once")]
    fn forgetting_twice_is_a_kernel_bug() {
        let mut s: Scheduler<u64> = Scheduler::new(1);
        let id = s.add(1);
        s.forget(id);
        s.forget(id);
    }

    #[test]
    fn hand_off_runs_a_blocked_thread_and_frees_the_blocked_one_for_waking() {
        let mut s: Named<u64> = Named::new(2);
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
        let mut s: Named<u64> = Named::new(1);
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
