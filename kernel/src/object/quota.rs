//! Quotas: the kernel half of cgroups. A quota limits the memory, processes and threads charged to
//! it and to every quota below it; user space (resmgr) builds the cgroup tree on top.
//!
//! What is charged where (docs/ARCHITECTURE.md, "Quotas"):
//! - every process is in one quota (`Process::quota`); its threads, its page tables and its
//!   kernel records are charged there, and move with it ([`QuotaTable::transfer`]);
//! - a memory object is charged to the quota it was created for (its creator's, or the process
//!   or quota `pmo_create` names): its frames, whoever touches them first, and its record. Its
//!   charges stay there when processes move (cgroup v2 does not move memory either).
//!
//! A charge walks from the quota to the root and must fit under every limit on the way; it is
//! added at every level or nowhere. Usage returns when the thing charged is freed. A quota is
//! removed when no capability names it, no process is in it, it has no children and nothing is
//! charged to it: a quota whose capabilities are gone lingers while memory charged to it lives
//! (Linux's dying cgroups), and its usage stays counted in its parents until then.
//!
//! A bill moves the charge for memory a service keeps for a client onto the client's quota
//! ("the client pays"): the service's quota still counts its frames (`usage`, checked against its
//! limits) but lends that much (`lent`), and the client's quota is charged it (checked against
//! the client's limits). What a quota reports as its memory is `usage - lent`; a quota above
//! both sees the charge once.
//!
//! Invariants: a quota's usage is the sum of what was charged directly to it and its children's
//! usage, and its `lent` the sum of its bills' and its children's; a parent outlives its children;
//! a bill's amount is charged to its payer and lent by its holder until the bill goes. This
//! module never allocates frames itself except in [`alloc_frames`], which charges before it
//! allocates.

use super::Id;
use crate::idmap::IdMap;
use crate::mm::frame::FRAMES;
use core::sync::atomic::{AtomicUsize, Ordering};
use keel_abi::quota::{DEFAULT_CPU_WEIGHT, MAX_DEPTH, MEMORY, NO_LIMIT, QuotaStat, RESOURCES};
use keel_abi::{Error, PAGE_SIZE};

const N: usize = RESOURCES as usize;

/// Every quota on the machine. Lock order: after `KERNEL`, before `FRAMES` (docs/ARCHITECTURE.md).
pub static QUOTAS: crate::hal::Mutex<QuotaTable> = crate::hal::Mutex::new(QuotaTable::new());

/// Quotas with a CPU limit, and quotas with a weight other than the default: while both are 0
/// the scheduler asks nothing of the quota table (the switch paths stay as they were).
pub static CPU_LIMITED: AtomicUsize = AtomicUsize::new(0);
pub static CPU_WEIGHTED: AtomicUsize = AtomicUsize::new(0);
/// `CPU_LIMITED + CPU_WEIGHTED`: the switch path's one check.
pub static CPU_POLICIES: AtomicUsize = AtomicUsize::new(0);

fn count_policy(counter: &AtomicUsize, was: bool, is: bool) {
    match (was, is) {
        (false, true) => {
            counter.fetch_add(1, Ordering::Relaxed);
            CPU_POLICIES.fetch_add(1, Ordering::Relaxed);
        }
        (true, false) => {
            counter.fetch_sub(1, Ordering::Relaxed);
            CPU_POLICIES.fetch_sub(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// A quota's CPU time and bandwidth limit, in counter ticks.
#[derive(Clone, Copy, Debug)]
pub struct CpuBudget {
    /// Run time allowed per period; [`NO_LIMIT`] for none.
    pub quota: u64,
    pub period: u64,
    pub weight: u64,
    /// Run time charged here and below, ever.
    pub usage: u64,
    /// The current period began at this counter value; this much of it is used.
    pub period_start: u64,
    pub period_used: u64,
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled: u64,
    /// When the budget ran out in the current period (None: it has not).
    pub throttled_at: Option<u64>,
}

impl CpuBudget {
    const fn new() -> Self {
        Self {
            quota: NO_LIMIT,
            period: 0,
            weight: DEFAULT_CPU_WEIGHT,
            usage: 0,
            period_start: 0,
            period_used: 0,
            nr_periods: 0,
            nr_throttled: 0,
            throttled: 0,
            throttled_at: None,
        }
    }

    /// Brings the period up to `now`: a new period starts with nothing used.
    fn roll(&mut self, now: u64) {
        if self.quota == NO_LIMIT || self.period == 0 || now < self.period_start + self.period {
            return;
        }
        let periods = (now - self.period_start) / self.period;
        self.nr_periods += periods;
        self.period_start += periods * self.period;
        self.period_used = 0;
        if let Some(at) = self.throttled_at.take() {
            self.throttled += self.period_start.saturating_sub(at);
        }
    }

    /// The end of the current period if its budget is used up.
    fn exhausted_until(&self) -> Option<u64> {
        (self.quota != NO_LIMIT && self.period_used >= self.quota).then_some(self.period_start + self.period)
    }
}

/// One quota.
#[derive(Debug)]
pub struct Quota {
    parent: Option<Id>,
    depth: u32,
    usage: [u64; N],
    limit: [u64; N],
    peak: [u64; N],
    refused: [u64; N],
    oom_kills: u64,
    /// Memory of `usage` charged on to clients' quotas by bills (this quota's and below).
    lent: u64,
    cpu: CpuBudget,
    /// Capabilities naming it (and the kernel's own hold on a root).
    refs: u32,
    /// Processes in it (running or not yet removed) and memory objects billed to it: whatever
    /// may charge it later keeps it.
    members: u32,
    children: u32,
}

/// Memory a service (the holder) keeps for a client (the payer), charged to the payer.
#[derive(Debug)]
pub struct Bill {
    payer: Id,
    holder: Id,
    /// Bytes charged to the payer and lent by the holder now.
    amount: u64,
    /// Capabilities naming it.
    refs: u32,
}

/// All quotas and bills, by id. Ids come from the table's own counter (never reused).
pub struct QuotaTable {
    quotas: IdMap<Quota>,
    bills: IdMap<Bill>,
    next_id: Id,
}

impl QuotaTable {
    pub const fn new() -> Self {
        Self { quotas: IdMap::new(), bills: IdMap::new(), next_id: 1 }
    }

    fn insert(&mut self, parent: Option<Id>, depth: u32) -> Id {
        let id = self.next_id;
        self.next_id += 1;
        let q = Quota {
            parent,
            depth,
            usage: [0; N],
            limit: [NO_LIMIT; N],
            peak: [0; N],
            refused: [0; N],
            oom_kills: 0,
            lent: 0,
            cpu: CpuBudget::new(),
            refs: 0,
            members: 0,
            children: 0,
        };
        self.quotas.insert(id, q);
        id
    }

    /// A root quota with no limits, held by the kernel (never removed).
    pub fn create_root(&mut self) -> Id {
        let id = self.insert(None, 0);
        if let Some(q) = self.quotas.get_mut(&id) {
            q.refs = 1;
        }
        id
    }

    /// A child of `parent`, with no limits of its own. `Limit` below [`MAX_DEPTH`].
    pub fn create_child(&mut self, parent: Id) -> Result<Id, Error> {
        let p = self.quotas.get_mut(&parent).ok_or(Error::PeerDied)?;
        if p.depth >= MAX_DEPTH {
            return Err(Error::Limit);
        }
        p.children += 1;
        let depth = p.depth + 1;
        Ok(self.insert(Some(parent), depth))
    }

    pub fn exists(&self, id: Id) -> bool {
        self.quotas.contains_key(&id)
    }

    /// Whether `id` is `ancestor` or lies below it.
    pub fn is_within(&self, id: Id, ancestor: Id) -> bool {
        let mut at = Some(id);
        while let Some(q) = at {
            if q == ancestor {
                return true;
            }
            at = self.quotas.get(&q).and_then(|q| q.parent);
        }
        false
    }

    /// Sets a limit. A limit below the current usage is allowed (cgroup v2's rule): it refuses
    /// every further charge until usage falls under it.
    pub fn set_limit(&mut self, id: Id, resource: u64, limit: u64) -> Result<(), Error> {
        let q = self.quotas.get_mut(&id).ok_or(Error::PeerDied)?;
        *q.limit.get_mut(resource as usize).ok_or(Error::Invalid)? = limit;
        Ok(())
    }

    pub fn stat(&self, id: Id, resource: u64) -> Result<QuotaStat, Error> {
        let q = self.quotas.get(&id).ok_or(Error::PeerDied)?;
        let r = resource as usize;
        if r >= N {
            return Err(Error::Invalid);
        }
        let mut room = NO_LIMIT;
        let mut at = Some(id);
        while let Some(l) = at.and_then(|a| self.quotas.get(&a)) {
            if l.limit[r] != NO_LIMIT {
                room = room.min(l.limit[r].saturating_sub(l.usage[r]));
            }
            at = l.parent;
        }
        Ok(QuotaStat {
            usage: if resource == MEMORY { q.usage[r].saturating_sub(q.lent) } else { q.usage[r] },
            limit: q.limit[r],
            peak: q.peak[r].max(q.usage[r]),
            refused: q.refused[r],
            oom_kills: if resource == MEMORY { q.oom_kills } else { 0 },
            room,
            id,
        })
    }

    /// Charges `amount` of `resource` to `id` and each of its ancestors, or to none of them:
    /// refused (and counted as refused by the quota whose limit stopped it) when any would go over
    /// its limit. The error is `NoMemory` for memory and `Limit` for counts.
    #[inline]
    pub fn charge(&mut self, id: Id, resource: u64, amount: u64) -> Result<(), Error> {
        let r = resource as usize;
        // One walk that adds as it goes (a page fault charges here: one lookup per level), and on
        // a refusal a second that takes back what the first added. Peaks need no work here: usage
        // only grows between two uncharges, so `uncharge` and `stat` see every maximum.
        let mut at = Some(id);
        while let Some(qid) = at {
            let Some(q) = self.quotas.get_mut(&qid) else {
                panic!("quota {qid} charged but gone: a parent must outlive its children and charges")
            };
            match q.usage[r].checked_add(amount) {
                Some(total) if total <= q.limit[r] => {
                    q.usage[r] = total;
                    at = q.parent;
                }
                _ => {
                    q.refused[r] += 1;
                    let mut back = Some(id);
                    while let Some(b) = back.filter(|&b| b != qid) {
                        let Some(q) = self.quotas.get_mut(&b) else { break };
                        q.usage[r] -= amount;
                        back = q.parent;
                    }
                    return Err(if resource == MEMORY { Error::NoMemory } else { Error::Limit });
                }
            }
        }
        Ok(())
    }

    /// Calls `f` on `id` and on each of its ancestors, nearest first; on nothing if `id` is gone
    /// (CPU time may still be billed to a quota removed a moment ago).
    fn each_level(&mut self, id: Id, mut f: impl FnMut(&mut Quota)) {
        if !self.quotas.contains_key(&id) {
            return;
        }
        let mut at = Some(id);
        while let Some(qid) = at {
            let Some(q) = self.quotas.get_mut(&qid) else {
                panic!("quota {qid} reached from a child but gone: a parent outlives its children")
            };
            f(q);
            at = q.parent;
        }
    }

    /// Charges without checking limits: what a process brings when it moves into a quota (cgroup v2
    /// lets a move take a group over `pids.max`; limits stop new work, not moves).
    fn add(&mut self, id: Id, r: usize, amount: u64) {
        self.each_level(id, |q| q.usage[r] += amount);
    }

    /// Returns `amount` of `resource` charged to `id` earlier.
    pub fn uncharge(&mut self, id: Id, resource: u64, amount: u64) {
        let r = resource as usize;
        let mut idle = false;
        let mut at = Some(id);
        while let Some(qid) = at {
            let Some(q) = self.quotas.get_mut(&qid) else {
                panic!("quota {qid} uncharged but gone: a quota lives while anything is charged to it")
            };
            let Some(left) = q.usage[r].checked_sub(amount) else {
                panic!("quota {qid}: {amount} of resource {r} returned, {} charged", q.usage[r])
            };
            q.peak[r] = q.peak[r].max(q.usage[r]);
            q.usage[r] = left;
            if qid == id {
                idle = q.refs == 0 && q.members == 0 && q.children == 0 && q.usage.iter().all(|&u| u == 0);
            }
            at = q.parent;
        }
        if idle {
            self.maybe_remove(id);
        }
    }

    /// Moves `amount` of `resource` from `from` to `to` (never refused).
    pub fn transfer(&mut self, from: Id, to: Id, resource: u64, amount: u64) {
        if from == to || amount == 0 {
            return;
        }
        self.add(to, resource as usize, amount);
        self.uncharge(from, resource, amount);
    }

    /// Sets `id`'s CPU limit: `quota` ticks of run time per `period` ticks (`NO_LIMIT`: none).
    /// A new period starts at `now`.
    pub fn set_cpu_max(&mut self, id: Id, quota: u64, period: u64, now: u64) -> Result<(), Error> {
        let q = self.quotas.get_mut(&id).ok_or(Error::PeerDied)?;
        let (was, is) = (q.cpu.quota != NO_LIMIT, quota != NO_LIMIT);
        q.cpu.roll(now);
        if let Some(at) = q.cpu.throttled_at.take() {
            q.cpu.throttled += now.saturating_sub(at);
        }
        q.cpu.quota = quota;
        q.cpu.period = period;
        q.cpu.period_start = now;
        q.cpu.period_used = 0;
        count_policy(&CPU_LIMITED, was, is);
        Ok(())
    }

    /// Sets `id`'s CPU weight (its threads' time slices are this many hundredths of the default).
    pub fn set_cpu_weight(&mut self, id: Id, weight: u64) -> Result<(), Error> {
        let q = self.quotas.get_mut(&id).ok_or(Error::PeerDied)?;
        let (was, is) = (q.cpu.weight != DEFAULT_CPU_WEIGHT, weight != DEFAULT_CPU_WEIGHT);
        q.cpu.weight = weight;
        count_policy(&CPU_WEIGHTED, was, is);
        Ok(())
    }

    /// `id`'s CPU account, periods brought up to `now`.
    pub fn cpu_stat(&mut self, id: Id, now: u64) -> Result<CpuBudget, Error> {
        let q = self.quotas.get_mut(&id).ok_or(Error::PeerDied)?;
        q.cpu.roll(now);
        let mut cpu = q.cpu;
        if let Some(at) = cpu.throttled_at {
            cpu.throttled += now.saturating_sub(at);
        }
        Ok(cpu)
    }

    /// `id`'s CPU weight (the default for a quota that is gone).
    pub fn cpu_weight(&self, id: Id) -> u64 {
        self.quotas.get(&id).map_or(DEFAULT_CPU_WEIGHT, |q| q.cpu.weight)
    }

    /// Charges `ticks` of run time ending at `now` to `id` and its ancestors. Returns the end
    /// of the current period of the first level whose budget is now used up (its threads must
    /// wait for it), if any.
    pub fn charge_cpu(&mut self, id: Id, ticks: u64, now: u64) -> Option<u64> {
        let mut until = None;
        self.each_level(id, |q| {
            q.cpu.usage += ticks;
            if q.cpu.quota != NO_LIMIT {
                q.cpu.roll(now);
                q.cpu.period_used += ticks;
                if let Some(end) = q.cpu.exhausted_until() {
                    if q.cpu.throttled_at.is_none() {
                        q.cpu.nr_throttled += 1;
                        q.cpu.throttled_at = Some(now);
                    }
                    until = Some(until.map_or(end, |u: u64| u.max(end)));
                }
            }
        });
        until
    }

    /// Until when `id`'s threads must wait (a level's budget is used up for its period), if so.
    pub fn cpu_throttled_until(&mut self, id: Id, now: u64) -> Option<u64> {
        let mut until = None;
        self.each_level(id, |q| {
            q.cpu.roll(now);
            if let Some(end) = q.cpu.exhausted_until() {
                until = Some(until.map_or(end, |u: u64| u.max(end)));
            }
        });
        until
    }

    /// The run time `id`'s threads may still use in this period (the least over its levels),
    /// or None when no level limits it.
    pub fn cpu_remaining(&mut self, id: Id, now: u64) -> Option<u64> {
        let mut left: Option<u64> = None;
        self.each_level(id, |q| {
            if q.cpu.quota != NO_LIMIT {
                q.cpu.roll(now);
                let here = q.cpu.quota.saturating_sub(q.cpu.period_used);
                left = Some(left.map_or(here, |l| l.min(here)));
            }
        });
        left
    }

    /// A process killed in `id` because its demand fault could not be given memory: counted there
    /// and in every ancestor (cgroup v2's hierarchical `memory.events`).
    pub fn record_oom_kill(&mut self, id: Id) {
        self.each_level(id, |q| q.oom_kills += 1);
    }

    /// A capability to `id` is made.
    pub fn inc_ref(&mut self, id: Id) {
        self.hold(id, |q| &mut q.refs);
    }

    /// A capability to `id` goes.
    pub fn dec_ref(&mut self, id: Id) {
        self.release(id, |q| &mut q.refs);
    }

    /// Removes `id` if nothing holds it (a quota made for a capability that could not be
    /// installed).
    pub fn forget_if_unused(&mut self, id: Id) {
        self.maybe_remove(id);
    }

    /// A process or memory object joins `id`.
    pub fn join(&mut self, id: Id) {
        self.hold(id, |q| &mut q.members);
    }

    /// A process's record or a memory object leaves `id`.
    pub fn leave(&mut self, id: Id) {
        self.release(id, |q| &mut q.members);
    }

    /// Counts one more holder of `id` in `count` (its references or its members).
    fn hold(&mut self, id: Id, count: fn(&mut Quota) -> &mut u32) {
        if let Some(q) = self.quotas.get_mut(&id) {
            *count(q) += 1;
        }
    }

    /// Counts one holder of `id` fewer in `count`; removes the quota if that was the last hold.
    fn release(&mut self, id: Id, count: fn(&mut Quota) -> &mut u32) {
        if let Some(q) = self.quotas.get_mut(&id) {
            let c = count(q);
            *c = c.checked_sub(1).expect("quota invariant: a hold is released once (reference or member count underflow)");
        }
        self.maybe_remove(id);
    }

    /// Charges a new process or thread: one of `count` (PROCESSES or THREADS) and `record`
    /// bytes of memory, both or neither.
    pub fn charge_object(&mut self, id: Id, count: u64, record: u64) -> Result<(), Error> {
        self.charge(id, count, 1)?;
        self.charge(id, MEMORY, record).inspect_err(|_| self.uncharge(id, count, 1))
    }

    /// Removes `id` (and then perhaps its parent) once nothing holds it.
    fn maybe_remove(&mut self, id: Id) {
        let mut at = Some(id);
        while let Some(qid) = at {
            let Some(q) = self.quotas.get(&qid) else { return };
            if q.refs != 0 || q.members != 0 || q.children != 0 || q.usage.iter().any(|&u| u != 0) {
                return;
            }
            at = q.parent;
            count_policy(&CPU_LIMITED, q.cpu.quota != NO_LIMIT, false);
            count_policy(&CPU_WEIGHTED, q.cpu.weight != DEFAULT_CPU_WEIGHT, false);
            self.quotas.remove(&qid);
            if let Some(p) = at.and_then(|p| self.quotas.get_mut(&p)) {
                p.children -= 1;
            }
        }
    }

    /// A bill on which the holder (the caller's quota) charges `payer` for memory it keeps for
    /// it, starting at 0. The bill holds both quotas.
    pub fn bill_create(&mut self, payer: Id, holder: Id) -> Result<Id, Error> {
        if !self.quotas.contains_key(&payer) || !self.quotas.contains_key(&holder) {
            return Err(Error::PeerDied);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.bills.insert(id, Bill { payer, holder, amount: 0, refs: 0 });
        self.join(payer);
        self.join(holder);
        Ok(id)
    }

    /// Charges `bytes` more to the bill's payer (its limits apply: `NoMemory`); the holder lends
    /// them. The bill's amount now. The holder's own limits still count its frames (`usage`);
    /// what it reports is `usage - lent`, at least 0 (its memory may be charged elsewhere: a
    /// service moved to another quota leaves its older memory objects where they were).
    pub fn bill_charge(&mut self, bill: Id, bytes: u64) -> Result<u64, Error> {
        let b = self.bills.get(&bill).ok_or(Error::PeerDied)?;
        let (payer, holder, amount) = (b.payer, b.holder, b.amount);
        let total = amount.checked_add(bytes).ok_or(Error::Invalid)?;
        let lent = self.quotas.get(&holder).ok_or(Error::PeerDied)?.lent;
        if lent.checked_add(bytes).is_none() {
            return Err(Error::Invalid);
        }
        if payer != holder {
            self.charge(payer, MEMORY, bytes)?;
            self.each_level(holder, |q| q.lent += bytes);
        }
        if let Some(b) = self.bills.get_mut(&bill) {
            b.amount = total;
        }
        Ok(total)
    }

    /// Gives `bytes` of the bill back: the payer is charged less and the holder lends less.
    /// `Invalid` for more than the bill's amount. The bill's amount now.
    pub fn bill_refund(&mut self, bill: Id, bytes: u64) -> Result<u64, Error> {
        let b = self.bills.get_mut(&bill).ok_or(Error::PeerDied)?;
        let left = b.amount.checked_sub(bytes).ok_or(Error::Invalid)?;
        b.amount = left;
        let (payer, holder) = (b.payer, b.holder);
        if payer != holder {
            self.each_level(holder, |q| q.lent -= bytes);
            self.uncharge(payer, MEMORY, bytes);
        }
        Ok(left)
    }

    pub fn bill_inc_ref(&mut self, bill: Id) {
        if let Some(b) = self.bills.get_mut(&bill) {
            b.refs += 1;
        }
    }

    /// A capability to the bill goes; with the last, what is still on it goes back to the
    /// holder and the bill lets go of both quotas.
    pub fn bill_dec_ref(&mut self, bill: Id) {
        let Some(b) = self.bills.get_mut(&bill) else { return };
        b.refs = b.refs.saturating_sub(1);
        if b.refs == 0 {
            self.bill_remove(bill);
        }
    }

    /// Removes a bill no capability names (one made for a capability that could not be
    /// installed, or whose last capability went).
    pub fn bill_remove(&mut self, bill: Id) {
        let Some(amount) = self.bills.get(&bill).filter(|b| b.refs == 0).map(|b| b.amount) else { return };
        let _ = self.bill_refund(bill, amount);
        if let Some(b) = self.bills.remove(&bill) {
            self.leave(b.payer);
            self.leave(b.holder);
        }
    }

    /// Bills alive.
    pub fn bills(&self) -> usize {
        self.bills.len()
    }

    /// Quotas alive (the census counts them).
    pub fn len(&self) -> usize {
        self.quotas.len()
    }
}

/// Allocates `count` frames (rounded up to a power of two, as the frame allocator does) charged
/// to `quota`: `NoMemory` when the quota or the machine has no room, with nothing charged.
#[inline]
pub fn alloc_frames(quota: Id, count: usize) -> Result<u64, Error> {
    let bytes = frames_bytes(count);
    let mut quotas = QUOTAS.lock();
    quotas.charge(quota, MEMORY, bytes)?;
    match FRAMES.lock().alloc(count) {
        Some(pa) => Ok(pa),
        None => {
            quotas.uncharge(quota, MEMORY, bytes);
            Err(Error::NoMemory)
        }
    }
}

/// Frees frames [`alloc_frames`] gave for the same `quota` and `count`.
pub fn free_frames(quota: Id, pa: u64, count: usize) {
    let mut quotas = QUOTAS.lock();
    FRAMES.lock().free(pa, count);
    quotas.uncharge(quota, MEMORY, frames_bytes(count));
}

/// Frees single frames [`alloc_frames`] gave for `quota`, in one go.
pub fn free_pages(quota: Id, pages: impl Iterator<Item = u64>) {
    let mut quotas = QUOTAS.lock();
    let mut frames = FRAMES.lock();
    let mut n = 0;
    for pa in pages {
        frames.free(pa, 1);
        n += 1;
    }
    drop(frames);
    if n != 0 {
        quotas.uncharge(quota, MEMORY, n * PAGE_SIZE);
    }
}

/// The bytes `count` frames are charged as.
pub fn frames_bytes(count: usize) -> u64 {
    count.next_power_of_two() as u64 * PAGE_SIZE
}


#[cfg(test)]
mod tests {
    use super::*;
    use keel_abi::quota::{PROCESSES, THREADS};

    fn usage(t: &QuotaTable, id: Id, r: u64) -> u64 {
        t.stat(id, r).unwrap().usage
    }

    #[test]
    fn a_charge_counts_at_every_level_and_returns() {
        let mut t = QuotaTable::new();
        let root = t.create_root();
        let a = t.create_child(root).unwrap();
        let b = t.create_child(a).unwrap();
        t.inc_ref(a);
        t.inc_ref(b);
        t.charge(b, MEMORY, 4096).unwrap();
        t.charge(a, MEMORY, 100).unwrap();
        assert_eq!((usage(&t, root, MEMORY), usage(&t, a, MEMORY), usage(&t, b, MEMORY)), (4196, 4196, 4096));
        t.uncharge(b, MEMORY, 4096);
        assert_eq!((usage(&t, root, MEMORY), usage(&t, a, MEMORY), usage(&t, b, MEMORY)), (100, 100, 0));
        assert_eq!(t.stat(a, MEMORY).unwrap().peak, 4196);
    }

    #[test]
    fn a_parent_limit_binds_its_children_and_a_refusal_changes_nothing() {
        let mut t = QuotaTable::new();
        let root = t.create_root();
        let a = t.create_child(root).unwrap();
        let b = t.create_child(a).unwrap();
        t.set_limit(a, PROCESSES, 2).unwrap();
        t.set_limit(b, PROCESSES, 10).unwrap();
        t.charge(b, PROCESSES, 1).unwrap();
        t.charge(b, PROCESSES, 1).unwrap();
        assert_eq!(t.charge(b, PROCESSES, 1), Err(Error::Limit));
        assert_eq!(t.charge(a, PROCESSES, 1), Err(Error::Limit));
        assert_eq!((usage(&t, root, PROCESSES), usage(&t, a, PROCESSES), usage(&t, b, PROCESSES)), (2, 2, 2));
        // The refusal is counted where the limit was, not where the charge started.
        assert_eq!((t.stat(a, PROCESSES).unwrap().refused, t.stat(b, PROCESSES).unwrap().refused), (2, 0));
        assert_eq!(t.stat(b, PROCESSES).unwrap().peak, 2, "a refused charge leaves no peak behind");
        t.set_limit(b, MEMORY, 8192).unwrap();
        assert_eq!(t.charge(b, MEMORY, 8193), Err(Error::NoMemory));
        assert_eq!(t.charge(b, MEMORY, u64::MAX), Err(Error::NoMemory), "an overflowing charge is refused");
        assert_eq!(usage(&t, root, MEMORY), 0);
    }

    #[test]
    fn a_limit_below_usage_refuses_new_charges_only() {
        let mut t = QuotaTable::new();
        let root = t.create_root();
        let a = t.create_child(root).unwrap();
        t.charge(a, THREADS, 5).unwrap();
        t.set_limit(a, THREADS, 3).unwrap();
        assert_eq!(usage(&t, a, THREADS), 5);
        assert_eq!(t.charge(a, THREADS, 1), Err(Error::Limit));
        t.uncharge(a, THREADS, 3);
        t.charge(a, THREADS, 1).unwrap();
        assert_eq!(t.set_limit(a, RESOURCES, 1), Err(Error::Invalid));
        assert_eq!(t.stat(a, RESOURCES), Err(Error::Invalid));
    }

    #[test]
    fn a_move_is_never_refused_and_keeps_totals() {
        let mut t = QuotaTable::new();
        let root = t.create_root();
        let a = t.create_child(root).unwrap();
        let b = t.create_child(root).unwrap();
        t.inc_ref(a);
        t.inc_ref(b);
        t.set_limit(b, THREADS, 1).unwrap();
        t.charge(a, THREADS, 3).unwrap();
        t.transfer(a, b, THREADS, 3);
        assert_eq!((usage(&t, root, THREADS), usage(&t, a, THREADS), usage(&t, b, THREADS)), (3, 0, 3));
    }

    #[test]
    fn the_tree_has_a_depth_limit() {
        let mut t = QuotaTable::new();
        let mut at = t.create_root();
        for _ in 0..MAX_DEPTH {
            at = t.create_child(at).unwrap();
        }
        assert_eq!(t.create_child(at), Err(Error::Limit));
        assert_eq!(t.create_child(999_999), Err(Error::PeerDied));
    }

    #[test]
    fn a_quota_lingers_while_charged_and_then_goes_with_its_idle_parents() {
        let mut t = QuotaTable::new();
        let root = t.create_root();
        let a = t.create_child(root).unwrap();
        t.inc_ref(a);
        let b = t.create_child(a).unwrap();
        t.inc_ref(b);
        t.join(b);
        t.charge(b, MEMORY, 4096).unwrap();
        t.dec_ref(a);
        t.dec_ref(b);
        t.leave(b);
        assert!(t.exists(b) && t.exists(a), "b's memory keeps b, and b keeps a");
        assert!(t.is_within(b, root) && t.is_within(b, a) && !t.is_within(a, b));
        t.uncharge(b, MEMORY, 4096);
        assert!(!t.exists(b) && !t.exists(a), "both go once nothing holds them");
        assert!(t.exists(root), "the root is never removed");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn cpu_bandwidth_is_counted_per_period_at_every_level() {
        let mut t = QuotaTable::new();
        let root = t.create_root();
        let a = t.create_child(root).unwrap();
        let b = t.create_child(a).unwrap();
        t.inc_ref(a);
        t.inc_ref(b);
        // a: 20 per 100 ticks, from tick 1000.
        t.set_cpu_max(a, 20, 100, 1000).unwrap();
        assert_eq!(t.cpu_remaining(b, 1000), Some(20));
        assert_eq!(t.cpu_remaining(root, 1000), None, "the root is not limited");
        assert_eq!(t.charge_cpu(b, 15, 1015), None);
        assert_eq!(t.cpu_remaining(b, 1015), Some(5));
        // The budget runs out at 1020: wait for the period's end at 1100.
        assert_eq!(t.charge_cpu(b, 5, 1020), Some(1100));
        assert_eq!(t.cpu_throttled_until(b, 1050), Some(1100));
        assert_eq!(t.cpu_throttled_until(root, 1050), None);
        // A new period: the budget is back.
        assert_eq!(t.cpu_throttled_until(b, 1100), None);
        assert_eq!(t.cpu_remaining(b, 1100), Some(20));
        let s = t.cpu_stat(a, 1100).unwrap();
        assert_eq!((s.usage, s.nr_periods, s.nr_throttled, s.throttled), (20, 1, 1, 80));
        assert_eq!(t.cpu_stat(root, 1100).unwrap().usage, 20, "usage counts up the tree");
        // A quota that is gone takes no charge (a CPU may bill it a moment after).
        assert_eq!(t.charge_cpu(987_654, 5, 1100), None);
        assert_eq!(t.cpu_remaining(987_654, 1100), None);
        // Lifting the limit ends it.
        t.set_cpu_max(a, NO_LIMIT, 100, 1200).unwrap();
        assert_eq!(t.charge_cpu(b, 500, 1700), None);
    }

    #[test]
    fn cpu_weights_are_kept_per_quota() {
        let mut t = QuotaTable::new();
        let root = t.create_root();
        let a = t.create_child(root).unwrap();
        t.inc_ref(a);
        assert_eq!(t.cpu_weight(a), DEFAULT_CPU_WEIGHT);
        t.set_cpu_weight(a, 300).unwrap();
        assert_eq!(t.cpu_weight(a), 300);
        assert_eq!(t.cpu_weight(12345), DEFAULT_CPU_WEIGHT);
    }

    #[test]
    fn oom_kills_count_up_the_tree() {
        let mut t = QuotaTable::new();
        let root = t.create_root();
        let a = t.create_child(root).unwrap();
        let b = t.create_child(a).unwrap();
        t.record_oom_kill(b);
        assert_eq!((t.stat(root, MEMORY).unwrap().oom_kills, t.stat(b, MEMORY).unwrap().oom_kills), (1, 1));
        assert_eq!(t.stat(b, THREADS).unwrap().oom_kills, 0);
    }
}
