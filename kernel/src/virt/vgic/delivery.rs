//! Delivery through the list registers: [`VGic::flush`] before a guest entry, [`VGic::sync`]
//! after an exit, and [`VGic::has_deliverable`] for a vCPU in WFI.
//!
//! `flush` makes a vCPU's list registers match the model: it refreshes the copies already there
//! (dropping those no longer deliverable or routed away), then fills free list registers with
//! the best waiting interrupts: active ones first (the guest must be able to deactivate them),
//! then pending ones by priority (lower value first), then by INTID. A pending-only copy of a
//! worse interrupt is evicted for a better one. If interrupts still wait, it sets
//! [`LrFile::underflow`]. Nothing is lost by eviction or overflow: the model keeps every
//! interrupt's pending and active state; a list register holds a copy.
//!
//! `sync` compares what each list register holds after the exit with what the hardware held at
//! entry, and applies only what the guest did (acknowledge: pending consumed, now active;
//! deactivate: active cleared), so changes the model made meanwhile (a device line, another
//! vCPU's ICPENDR) are kept. Level-sensitive interrupts are copied with the EOI bit set and
//! never as pending+active, so their deactivation exits to the kernel, and their line is
//! resampled then (still high = pending again).
//!
//! Both do almost nothing when nothing changed: `sync` returns at once with no live list
//! register and skips unchanged ones; `flush` returns at once unless `needs_flush` is set.
//!
//! Invariant: a list register copy is made only for an interrupt in no list register, into a
//! list register below the file's count.

use super::VGic;
use super::irq::{Irq, IrqRef, LrSlot};
use super::lr::{ListReg, LrFile, LrState, MAX_LIST_REGS, SyncReport, bits};

/// A deliverable interrupt waiting for a list register, and the value to put there.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Sort key, lower = more urgent: not-active, then priority, then INTID.
    rank: u32,
    irq: IrqRef,
    value: u64,
}

/// The rank of a list register value: active first, then priority, then INTID (< 1024).
fn rank_of(value: u64) -> u32 {
    let lr = ListReg::decode(value);
    u32::from(!lr.state.is_active()) << 20 | u32::from(lr.priority) << 10 | (lr.vintid & 0x3FF)
}

/// The best candidates seen so far, sorted by rank, at most `limit` of them.
struct Shortlist {
    items: [Option<Candidate>; MAX_LIST_REGS],
    len: usize,
    limit: usize,
    /// Candidates offered, kept or not.
    offered: usize,
}

impl Shortlist {
    fn new(limit: usize) -> Shortlist {
        Shortlist { items: [None; MAX_LIST_REGS], len: 0, limit: limit.min(MAX_LIST_REGS), offered: 0 }
    }

    fn offer(&mut self, candidate: Candidate) {
        self.offered += 1;
        let worse = |slot: &Option<Candidate>| slot.is_some_and(|c| c.rank > candidate.rank);
        let at = self.items[..self.len].iter().position(worse).unwrap_or(self.len);
        if at >= self.limit {
            return;
        }
        if self.len < self.limit {
            self.len += 1;
        }
        self.items[at..self.len].rotate_right(1);
        self.items[at] = Some(candidate);
    }

    fn iter(&self) -> impl Iterator<Item = Candidate> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
}

impl VGic {
    /// Before entering vCPU `vcpu`: brings its list registers up to date (see the module docs).
    /// The arch layer then writes the hardware list registers from `lrs` and sets
    /// ICH_HCR_EL2.UIE to `lrs.underflow`. An unknown `vcpu` is ignored.
    pub fn flush(&mut self, vcpu: usize, lrs: &mut LrFile) {
        lrs.begin_flush();
        if !self.vcpus.get(vcpu).is_some_and(|v| v.lrs.needs_flush) {
            return;
        }
        self.vcpus[vcpu].lrs.needs_flush = false;
        let count = lrs.count();
        self.refresh_resident(vcpu, count, lrs);

        self.prune_busy(vcpu);
        let mut shortlist = Shortlist::new(count);
        for r in self.irqs_for(vcpu) {
            let irq = self.irq(r);
            if irq.lr.is_none()
                && let Some(value) = self.lr_value(r, irq, vcpu)
            {
                shortlist.offer(Candidate { rank: rank_of(value), irq: r, value });
            }
        }

        let mut placed = 0;
        let mut evicted = 0;
        for candidate in shortlist.iter() {
            let Some((n, eviction)) = self.lr_for(vcpu, count, candidate.rank) else { break };
            if eviction {
                // The evicted interrupt stays pending in the model and waits for a free LR.
                self.release(vcpu, n);
                evicted += 1;
            }
            self.install(vcpu, n, candidate.irq, candidate.value, lrs);
            placed += 1;
        }
        lrs.underflow = shortlist.offered > placed || evicted > 0;
        lrs.set_live(self.vcpus[vcpu].lrs.live);
    }

    /// After vCPU `vcpu` exited and the arch layer stored the live list registers into `lrs`:
    /// applies the guest's acknowledges and deactivations to the model and frees the list
    /// registers it is done with. An unknown `vcpu` gets an empty report.
    pub fn sync(&mut self, vcpu: usize, lrs: &mut LrFile) -> SyncReport {
        let mut report = SyncReport::default();
        let Some(state) = self.vcpus.get(vcpu) else { return report };
        let live = state.lrs.live;
        if live == 0 {
            return report;
        }
        for n in bits(live) {
            let book = &self.vcpus[vcpu].lrs;
            let was = LrState::of(book.written[n]);
            let now = LrState::of(lrs.value(n));
            if was == now {
                continue;
            }
            let r = self.resident(vcpu, n);
            self.vcpus[vcpu].lrs.needs_flush = true;
            let acknowledged = was.is_pending() && !now.is_pending();
            // Active before (or made active by the acknowledge) and not active now; from
            // pending+active to active means one deactivation and one acknowledge.
            let deactivated = (was.is_active() || acknowledged) && !now.is_active()
                || was == LrState::PendingActive && now == LrState::Active;
            let irq = self.irq_mut(r);
            if acknowledged {
                irq.acknowledge();
            }
            if acknowledged || was.is_active() != now.is_active() {
                irq.active = now.is_active();
            }
            let irq = *irq;
            if deactivated && irq.is_level() {
                report.note_deactivated(r.intid());
            }
            if now == LrState::Invalid {
                // Already invalid in the hardware: nothing to write back.
                self.release(vcpu, n);
                // An SPI routed elsewhere meanwhile can now go to its target.
                if let Some(target) = self.target(r).filter(|&t| t != vcpu)
                    && self.lr_value(r, self.irq(r), target).is_some()
                {
                    self.vcpus[target].lrs.needs_flush = true;
                    report.note_kick(target);
                }
            } else {
                let written = &mut self.vcpus[vcpu].lrs.written[n];
                *written = lrs.value(n);
                let holds_pending = now.is_pending();
                if let Some(slot) = &mut self.irq_mut(r).lr {
                    slot.holds_pending = holds_pending;
                }
                if !holds_pending {
                    self.irq_mut(r).repend = false;
                }
            }
        }
        lrs.set_live(self.vcpus[vcpu].lrs.live);
        report
    }

    /// Some interrupt could be signalled to vCPU `vcpu`: pending, enabled, its group enabled,
    /// not active, routed to it. For waking a vCPU from WFI; ignores the guest's priority mask
    /// and running priority, so it may say yes when the guest would not take the interrupt
    /// yet (WFI may wake spuriously). False for an unknown `vcpu`.
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        self.has_deliverable_under_mask(vcpu, 0xFF)
    }

    /// Like [`VGic::has_deliverable`], counting only interrupts of higher priority (lower
    /// value) than `priority_mask` (the guest's ICC_PMR_EL1, ICH_VMCR_EL2.VPMR bits \[31:24\]).
    pub fn has_deliverable_under_mask(&self, vcpu: usize, priority_mask: u8) -> bool {
        vcpu < self.vcpus.len()
            && self.irqs_for(vcpu).any(|r| {
                let irq = self.irq(r);
                self.signalable(irq) && irq.priority < priority_mask
            })
    }

    /// The list register value interrupt `r` should have on vCPU `vcpu`, or `None` if it has
    /// nothing to show there. Pending is shown only if the interrupt is deliverable to `vcpu`
    /// (enabled, group enabled, routed there) and, for a level-sensitive interrupt, not active
    /// (its line is resampled at deactivation); active is always shown so that the guest can
    /// deactivate it.
    pub(super) fn lr_value(&self, r: IrqRef, irq: &Irq, vcpu: usize) -> Option<u64> {
        let routed_here = self.target(r) == Some(vcpu);
        let deliverable = routed_here && irq.is_pending() && irq.enabled && self.group_enabled(irq.group1);
        let pending = deliverable && !(irq.is_level() && irq.active);
        let state = LrState::new(pending, irq.active);
        if state == LrState::Invalid {
            return None;
        }
        let lr = ListReg {
            vintid: r.intid(),
            pintid: 0,
            eoi_maintenance: irq.is_level(),
            priority: irq.priority,
            group1: irq.group1,
            hw: false,
            state,
        };
        Some(lr.encode())
    }

    /// Rewrites or frees each live list register of `vcpu` to match the model.
    fn refresh_resident(&mut self, vcpu: usize, count: usize, lrs: &mut LrFile) {
        for n in bits(self.vcpus[vcpu].lrs.live) {
            let r = self.resident(vcpu, n);
            let wanted = if n < count { self.lr_value(r, self.irq(r), vcpu) } else { None };
            match wanted {
                None => {
                    self.release(vcpu, n);
                    lrs.put(n, 0);
                }
                Some(value) if value != self.vcpus[vcpu].lrs.written[n] => self.install(vcpu, n, r, value, lrs),
                Some(value) => {
                    if LrState::of(value).is_pending() {
                        // The copy still pending in the hardware covers any new edge.
                        self.irq_mut(r).repend = false;
                    }
                }
            }
        }
    }

    /// A list register of `vcpu` for a candidate of rank `rank`: a free one, else (flagged as
    /// an eviction) the worst-ranked pending-only copy ranked below the candidate.
    fn lr_for(&self, vcpu: usize, count: usize, rank: u32) -> Option<(usize, bool)> {
        let book = &self.vcpus[vcpu].lrs;
        if let Some(n) = (0..count).find(|&n| book.live & (1 << n) == 0) {
            return Some((n, false));
        }
        bits(book.live)
            .filter(|&n| LrState::of(book.written[n]) == LrState::Pending)
            .map(|n| (rank_of(book.written[n]), n))
            .filter(|&(resident_rank, _)| resident_rank > rank)
            .max()
            .map(|(_, n)| (n, true))
    }

    /// The interrupt live list register `n` of `vcpu` holds.
    fn resident(&self, vcpu: usize, n: usize) -> IrqRef {
        let intid = self.vcpus[vcpu].lrs.intid[n];
        self.irq_ref(vcpu, intid).expect("vgic invariant: a live list register holds an interrupt of this VM")
    }

    /// Puts `value` (a copy of interrupt `r`) in list register `n` of `vcpu`.
    fn install(&mut self, vcpu: usize, n: usize, r: IrqRef, value: u64, lrs: &mut LrFile) {
        let book = &mut self.vcpus[vcpu].lrs;
        book.intid[n] = r.intid();
        book.written[n] = value;
        book.live |= 1 << n;
        lrs.put(n, value);
        let holds_pending = LrState::of(value).is_pending();
        let irq = self.irq_mut(r);
        irq.lr = Some(LrSlot { vcpu, index: n, holds_pending });
        // A pending copy carries the latch, including any edge noted since the last copy; a
        // copy without pending has nothing for an acknowledge to consume. Either way no edge
        // needs protecting from it.
        irq.repend = false;
    }

    /// Forgets what list register `n` of `vcpu` holds (a no-op if it is not live); the
    /// interrupt keeps its state in the model. The caller clears or overwrites the hardware
    /// list register unless it is already invalid there.
    fn release(&mut self, vcpu: usize, n: usize) {
        if self.vcpus[vcpu].lrs.live & (1 << n) == 0 {
            return;
        }
        let r = self.resident(vcpu, n);
        let book = &mut self.vcpus[vcpu].lrs;
        book.live &= !(1 << n);
        book.written[n] = 0;
        let irq = self.irq_mut(r);
        irq.lr = None;
        irq.repend = false;
    }
}
