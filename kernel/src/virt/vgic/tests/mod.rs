//! Host tests of the vGIC: register emulation, delivery through list registers, and a
//! randomized test that checks the module invariants after every step.
//!
//! A test plays both the arch layer (the [`LrFile`] stands in for the hardware list registers)
//! and the guest (which acknowledges and deactivates by editing list-register state).

mod delivery;
mod random;
mod regs;

use alloc::vec::Vec;

use super::lr::bits;
use super::*;

/// GICD offsets used by the tests.
const GICD_CTLR: u64 = 0x0000;
const GICD_ISENABLER: u64 = 0x0100;
const GICD_ISPENDR: u64 = 0x0200;
const GICD_ISACTIVER: u64 = 0x0300;
const GICD_IPRIORITYR: u64 = 0x0400;
const GICD_ICFGR: u64 = 0x0C00;
const GICD_IROUTER: u64 = 0x6000;

/// A 2-vCPU VM with the default 64 SPIs.
fn vgic(nr_vcpus: usize) -> VGic {
    VGic::new(nr_vcpus, DEFAULT_NR_SPIS).expect("a valid vGIC configuration")
}

fn dist_write(g: &mut VGic, offset: u64, size: u8, value: u64) -> Kicks {
    g.dist_write(0, offset, size, value).expect("a valid GICD write")
}

fn dist_read(g: &VGic, offset: u64, size: u8) -> u64 {
    g.dist_read(0, offset, size).expect("a valid GICD read")
}

/// Enables both groups in GICD_CTLR, as Linux does.
fn enable_groups(g: &mut VGic) {
    dist_write(g, GICD_CTLR, 4, 0x3);
}

/// Enables SPI `intid` with priority `priority`, edge-triggered or level-sensitive.
fn setup_spi(g: &mut VGic, intid: u32, priority: u8, edge: bool) {
    let word = u64::from(intid / 32) * 4;
    dist_write(g, GICD_ISENABLER + word, 4, 1 << (intid % 32));
    dist_write(g, GICD_IPRIORITYR + u64::from(intid), 1, u64::from(priority));
    let cfg = GICD_ICFGR + u64::from(intid / 16) * 4;
    let shift = 2 * (intid % 16) + 1;
    let old = dist_read(g, cfg, 4);
    let new = if edge { old | 1 << shift } else { old & !(1 << shift) };
    dist_write(g, cfg, 4, new);
}

/// Whether SPI/private `intid` reads as pending (through ISPENDR) from `vcpu`'s view.
fn is_pending(g: &VGic, vcpu: usize, intid: u32) -> bool {
    read_bit(g, vcpu, GICD_ISPENDR, 0x200, intid)
}

/// Whether `intid` reads as active (through ISACTIVER).
fn is_active(g: &VGic, vcpu: usize, intid: u32) -> bool {
    read_bit(g, vcpu, GICD_ISACTIVER, 0x300, intid)
}

fn read_bit(g: &VGic, vcpu: usize, gicd: u64, sgi_base: u64, intid: u32) -> bool {
    let value = if intid < 32 {
        g.redist_read(vcpu, vcpu, GICR_SGI_BASE + sgi_base, 4).expect("a valid GICR read")
    } else {
        g.dist_read(vcpu, gicd + u64::from(intid / 32) * 4, 4).expect("a valid GICD read")
    };
    value & (1 << (intid % 32)) != 0
}

/// The INTIDs in `lrs`' live list registers, with their state.
fn lr_contents(lrs: &LrFile) -> Vec<(u32, LrState)> {
    bits(lrs.live())
        .map(|n| {
            let lr = ListReg::decode(lrs.value(n));
            (lr.vintid, lr.state)
        })
        .collect()
}

/// The guest changes the state of the live list register holding `intid`.
fn guest_set_state(lrs: &mut LrFile, intid: u32, state: LrState) {
    let n = bits(lrs.live())
        .find(|&n| ListReg::decode(lrs.value(n)).vintid == intid)
        .expect("the interrupt is in a list register");
    let lr = ListReg { state, ..ListReg::decode(lrs.value(n)) };
    lrs.store_from_hardware(n, lr.encode());
}

/// The guest acknowledges `intid` (pending -> active).
fn guest_ack(lrs: &mut LrFile, intid: u32) {
    guest_set_state(lrs, intid, LrState::Active);
}

/// The guest deactivates `intid` (active -> invalid; pending+active -> pending).
fn guest_eoi(lrs: &mut LrFile, intid: u32) {
    let n = bits(lrs.live())
        .find(|&n| ListReg::decode(lrs.value(n)).vintid == intid)
        .expect("the interrupt is in a list register");
    let state = match LrState::of(lrs.value(n)) {
        LrState::PendingActive => LrState::Pending,
        _ => LrState::Invalid,
    };
    guest_set_state(lrs, intid, state);
}

/// The guest takes every pending interrupt in its list registers, handles and deactivates it;
/// returns their INTIDs.
fn guest_handle_all(lrs: &mut LrFile) -> Vec<u32> {
    let pending: Vec<u32> =
        lr_contents(lrs).into_iter().filter(|(_, s)| *s == LrState::Pending).map(|(intid, _)| intid).collect();
    for &intid in &pending {
        guest_ack(lrs, intid);
        guest_eoi(lrs, intid);
    }
    pending
}

/// Checks the module invariants; `lrs[v]` is vCPU `v`'s file.
fn check_invariants(g: &VGic, lrs: &[LrFile]) {
    for (v, cpu) in g.vcpus.iter().enumerate() {
        let count = lrs[v].count();
        assert_eq!(u32::from(cpu.lrs.live) >> count, 0, "vcpu {v}: a live list register beyond the hardware count");
        for n in bits(cpu.lrs.live) {
            let intid = cpu.lrs.intid[n];
            let r = g.irq_ref(v, intid).expect("a live list register names an existing interrupt");
            let slot = g.irq(r).lr.expect("an interrupt in a list register knows it");
            assert_eq!((slot.vcpu, slot.index), (v, n), "vcpu {v} LR {n}: INTID {intid} points elsewhere");
            assert_eq!(slot.holds_pending, LrState::of(cpu.lrs.written[n]).is_pending());
            assert_eq!(ListReg::decode(cpu.lrs.written[n]).vintid, intid);
        }
    }
    let private = (0..g.vcpus.len()).flat_map(|v| (0..32).map(move |intid| IrqRef::Private { vcpu: v, intid }));
    let shared = (SPI_BASE..g.nr_irqs()).map(|intid| IrqRef::Spi { intid });
    for r in private.chain(shared) {
        let irq = g.irq(r);
        if irq.repend {
            assert!(irq.latch && irq.lr.is_some_and(|s| s.holds_pending), "{r:?}: repend without an LR copy");
        }
        if let Some(slot) = irq.lr {
            let book = &g.vcpus[slot.vcpu].lrs;
            assert!(book.live & (1 << slot.index) != 0, "{r:?} claims a free list register");
            assert_eq!(book.intid[slot.index], r.intid(), "{r:?} claims another interrupt's list register");
            if let IrqRef::Private { vcpu, .. } = r {
                assert_eq!(vcpu, slot.vcpu, "a private interrupt in another vCPU's list registers");
            }
        }
        assert_eq!(irq.priority & !PRIORITY_MASK, 0);
    }
}

/// After a `flush` of `vcpu` without underflow, every interrupt with something to show there
/// is in one of its list registers.
fn check_nothing_waiting(g: &VGic, vcpu: usize, lrs: &LrFile) {
    if lrs.underflow {
        return;
    }
    for r in g.irqs_for(vcpu) {
        let irq = g.irq(r);
        if irq.lr.is_none() {
            assert!(g.lr_value(r, irq, vcpu).is_none(), "vcpu {vcpu}: {r:?} waits but underflow is clear");
        }
    }
}

#[test]
fn new_rejects_bad_configurations() {
    assert_eq!(VGic::new(0, 64).err(), Some(VGicError::BadConfig));
    assert_eq!(VGic::new(MAX_VCPUS + 1, 64).err(), Some(VGicError::BadConfig));
    assert_eq!(VGic::new(1, 33).err(), Some(VGicError::BadConfig));
    assert_eq!(VGic::new(1, MAX_NR_SPIS + 32).err(), Some(VGicError::BadConfig));
    assert!(VGic::new(MAX_VCPUS, MAX_NR_SPIS).is_ok());
    assert!(VGic::new(1, 0).is_ok());
}

#[test]
fn layout_constants() {
    assert_eq!(GICD_BASE + GICD_SIZE, 0x0801_0000);
    assert_eq!(gicr_size(4), 0x8_0000);
    assert_eq!(GICR_BASE + 3 * GICR_STRIDE, 0x0810_0000);
}
