//! Delivery: lines, edges and SGIs become list-register entries in the right order, the guest's
//! acknowledges and deactivations come back through `sync`, and overflow loses nothing.

use alloc::vec;
use alloc::vec::Vec;

use super::*;

const UART: u32 = 33;

/// vCPU 0's list registers after a flush, as (INTID, state) pairs.
fn flushed(g: &mut VGic, vcpu: usize, lrs: &mut LrFile) -> Vec<(u32, LrState)> {
    g.flush(vcpu, lrs);
    lr_contents(lrs)
}

#[test]
fn level_spi_goes_into_a_list_register_with_eoi() {
    let mut g = vgic(2);
    enable_groups(&mut g);
    setup_spi(&mut g, UART, 0xA0, false);
    let kicks = g.set_spi_level(UART, true).expect("SPI 33 exists");
    assert_eq!(kicks, Kicks::from_bits(1), "routed to vCPU 0 at reset");
    let mut lrs = LrFile::new(4);
    g.flush(0, &mut lrs);
    assert!(lrs.in_use() && lrs.was_in_use() && !lrs.underflow);
    let lr = ListReg::decode(lrs.value(0));
    assert_eq!(
        lr,
        ListReg {
            vintid: UART,
            pintid: 0,
            eoi_maintenance: true,
            priority: 0xA0,
            group1: true,
            hw: false,
            state: LrState::Pending,
        }
    );
    let mut other = LrFile::new(4);
    assert!(flushed(&mut g, 1, &mut other).is_empty());
}

#[test]
fn disabled_or_group_disabled_interrupts_are_not_delivered() {
    let mut g = vgic(1);
    setup_spi(&mut g, 40, 0, true);
    assert_eq!(g.trigger_spi_edge(40), Ok(Kicks::NONE), "groups disabled: nothing to kick");
    let mut lrs = LrFile::new(4);
    assert!(flushed(&mut g, 0, &mut lrs).is_empty());
    assert!(!g.has_deliverable(0));
    let kicks = dist_write(&mut g, GICD_CTLR, 4, 0x2);
    assert!(kicks.contains(0), "enabling Group 1 kicks the vCPU with something pending");
    assert_eq!(flushed(&mut g, 0, &mut lrs), vec![(40, LrState::Pending)]);
    // Group 0 interrupts need EnableGrp0.
    dist_write(&mut g, 0x0084, 4, 0); // all of 32..63 to Group 0
    g.flush(0, &mut lrs);
    assert!(lr_contents(&lrs).is_empty(), "the pending copy is withdrawn");
    assert!(is_pending(&g, 0, 40), "but stays pending in the model");
    dist_write(&mut g, GICD_CTLR, 4, 0x3);
    let lrs_now = flushed(&mut g, 0, &mut lrs);
    assert_eq!(lrs_now, vec![(40, LrState::Pending)]);
    assert!(!ListReg::decode(lrs.value(0)).group1);
}

#[test]
fn irouter_selects_the_vcpu() {
    let mut g = vgic(4);
    enable_groups(&mut g);
    setup_spi(&mut g, 48, 0x80, false);
    let mut lrs: Vec<LrFile> = (0..4).map(|_| LrFile::new(4)).collect();
    let router = GICD_IROUTER + 8 * 48;
    dist_write(&mut g, router, 8, 2);
    assert_eq!(g.set_spi_level(48, true), Ok(Kicks::from_bits(1 << 2)));
    assert!(flushed(&mut g, 0, &mut lrs[0]).is_empty());
    assert_eq!(flushed(&mut g, 2, &mut lrs[2]), vec![(48, LrState::Pending)]);
    assert!(g.has_deliverable(2) && !g.has_deliverable(0));

    // Route to a vCPU that does not exist: kept, delivered nowhere. vCPU 2 is kicked to give
    // up its copy.
    let kicks = dist_write(&mut g, router, 8, 5);
    assert!(kicks.contains(2));
    assert_eq!(dist_read(&g, router, 8), 5);
    for (v, file) in lrs.iter_mut().enumerate() {
        assert!(flushed(&mut g, v, file).is_empty(), "vcpu {v}");
    }
    assert!(is_pending(&g, 0, 48));
    // Aff1 != 0 names no vCPU either.
    dist_write(&mut g, router, 8, 1 << 8 | 1);
    assert!(flushed(&mut g, 1, &mut lrs[1]).is_empty());
    // Back to vCPU 3, then 1-of-N (delivered to vCPU 0).
    assert_eq!(dist_write(&mut g, router, 8, 3), Kicks::from_bits(1 << 3));
    assert_eq!(flushed(&mut g, 3, &mut lrs[3]), vec![(48, LrState::Pending)]);
    dist_write(&mut g, router, 8, 1 << 31);
    g.flush(3, &mut lrs[3]);
    assert_eq!(flushed(&mut g, 0, &mut lrs[0]), vec![(48, LrState::Pending)]);
    check_invariants(&g, &lrs);
}

#[test]
fn active_spi_rerouted_stays_until_deactivated_then_moves() {
    let mut g = vgic(2);
    enable_groups(&mut g);
    setup_spi(&mut g, 50, 0x80, false);
    let mut lrs = vec![LrFile::new(4), LrFile::new(4)];
    g.set_spi_level(50, true).expect("SPI exists");
    g.flush(0, &mut lrs[0]);
    guest_ack(&mut lrs[0], 50);
    g.sync(0, &mut lrs[0]);
    dist_write(&mut g, GICD_IROUTER + 8 * 50, 8, 1);
    assert_eq!(flushed(&mut g, 0, &mut lrs[0]), vec![(50, LrState::Active)], "vCPU 0 must deactivate it");
    assert!(flushed(&mut g, 1, &mut lrs[1]).is_empty(), "not twice in list registers");
    guest_eoi(&mut lrs[0], 50);
    let report = g.sync(0, &mut lrs[0]);
    assert!(report.deactivated(50));
    assert!(report.kicks().contains(1), "line still high: now for vCPU 1");
    assert_eq!(flushed(&mut g, 1, &mut lrs[1]), vec![(50, LrState::Pending)]);
    check_invariants(&g, &lrs);
}

#[test]
fn flush_orders_by_priority_then_intid() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    for (intid, priority) in [(40, 0x80), (41, 0x20), (42, 0x80), (43, 0xF0), (44, 0x20), (45, 0x10)] {
        setup_spi(&mut g, intid, priority, true);
        g.trigger_spi_edge(intid).expect("SPI exists");
    }
    let mut lrs = LrFile::new(4);
    g.flush(0, &mut lrs);
    let placed: Vec<u32> = lr_contents(&lrs).into_iter().map(|(intid, _)| intid).collect();
    assert_eq!(placed, vec![45, 41, 44, 40], "best first; 40 beats 42 on INTID; 43 waits");
    assert!(lrs.underflow);
}

#[test]
fn overflow_loses_nothing_and_duplicates_nothing() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    let intids: Vec<u32> = (48..58).collect();
    for &intid in &intids {
        setup_spi(&mut g, intid, 0x80, true);
        g.trigger_spi_edge(intid).expect("SPI exists");
    }
    let mut lrs = LrFile::new(4);
    let mut delivered = Vec::new();
    for round in 0..5 {
        g.flush(0, &mut lrs);
        check_invariants(&g, core::slice::from_ref(&lrs));
        let expect_underflow = intids.len() - delivered.len() > 4;
        assert_eq!(lrs.underflow, expect_underflow, "round {round}");
        delivered.extend(guest_handle_all(&mut lrs));
        let report = g.sync(0, &mut lrs);
        assert!(report.deactivated_level().is_empty(), "edge interrupts are not reported");
        assert!(!lrs.in_use(), "all handled");
    }
    delivered.sort_unstable();
    assert_eq!(delivered, intids);
    for &intid in &intids {
        assert!(!is_pending(&g, 0, intid) && !is_active(&g, 0, intid));
    }
}

#[test]
fn partial_consumption_then_refill() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    for intid in 32..42 {
        setup_spi(&mut g, intid, 0x80, true);
        g.trigger_spi_edge(intid).expect("SPI exists");
    }
    let mut lrs = LrFile::new(4);
    let mut seen = Vec::new();
    while seen.len() < 10 {
        g.flush(0, &mut lrs);
        // The guest handles only the first pending one each time, acknowledges another.
        let contents = lr_contents(&lrs);
        let pending: Vec<u32> = contents.iter().filter(|(_, s)| *s == LrState::Pending).map(|(i, _)| *i).collect();
        let active: Vec<u32> = contents.iter().filter(|(_, s)| *s == LrState::Active).map(|(i, _)| *i).collect();
        for intid in active {
            guest_eoi(&mut lrs, intid);
        }
        if let Some(&first) = pending.first() {
            guest_ack(&mut lrs, first);
            guest_eoi(&mut lrs, first);
            seen.push(first);
        }
        if let Some(&second) = pending.get(1) {
            guest_ack(&mut lrs, second);
            seen.push(second);
        }
        g.sync(0, &mut lrs);
        check_invariants(&g, core::slice::from_ref(&lrs));
    }
    g.flush(0, &mut lrs);
    for (intid, state) in lr_contents(&lrs) {
        assert_eq!(state, LrState::Active, "only the last acknowledged one remains: {intid}");
        guest_eoi(&mut lrs, intid);
    }
    g.sync(0, &mut lrs);
    seen.sort_unstable();
    assert_eq!(seen, (32..42).collect::<Vec<_>>());
    g.flush(0, &mut lrs);
    assert!(!lrs.in_use() && !lrs.underflow);
}

#[test]
fn level_interrupt_repends_after_deactivation_while_line_high() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    setup_spi(&mut g, UART, 0x80, false);
    g.set_spi_level(UART, true).expect("SPI exists");
    let mut lrs = LrFile::new(4);
    g.flush(0, &mut lrs);
    guest_ack(&mut lrs, UART);
    let report = g.sync(0, &mut lrs);
    assert!(!report.deactivated(UART));
    assert!(is_active(&g, 0, UART) && is_pending(&g, 0, UART), "active, and pending while the line is high");
    assert_eq!(flushed(&mut g, 0, &mut lrs), vec![(UART, LrState::Active)], "never pending+active for level");
    assert!(!lrs.underflow);

    guest_eoi(&mut lrs, UART);
    let report = g.sync(0, &mut lrs);
    assert_eq!(report.deactivated_level(), &[UART]);
    assert_eq!(flushed(&mut g, 0, &mut lrs), vec![(UART, LrState::Pending)], "line still high");

    // The device lowers its line while the copy is pending: the vCPU is kicked and the copy
    // withdrawn at the next flush.
    let kicks = g.set_spi_level(UART, false).expect("SPI exists");
    assert!(kicks.contains(0));
    g.sync(0, &mut lrs);
    assert!(flushed(&mut g, 0, &mut lrs).is_empty());
    assert!(!is_pending(&g, 0, UART));
}

#[test]
fn level_interrupt_handled_and_lowered_is_not_repended() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    setup_spi(&mut g, UART, 0x80, false);
    g.set_spi_level(UART, true).expect("SPI exists");
    let mut lrs = LrFile::new(4);
    g.flush(0, &mut lrs);
    guest_ack(&mut lrs, UART);
    g.sync(0, &mut lrs);
    // The guest's handler clears the device (an exit to the VMM lowers the line).
    g.set_spi_level(UART, false).expect("SPI exists");
    g.flush(0, &mut lrs);
    guest_eoi(&mut lrs, UART);
    assert!(g.sync(0, &mut lrs).deactivated(UART));
    assert!(flushed(&mut g, 0, &mut lrs).is_empty());
    assert!(!is_pending(&g, 0, UART) && !is_active(&g, 0, UART));
}

#[test]
fn edge_interrupt_is_not_repended() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    setup_spi(&mut g, 60, 0x80, true);
    g.set_spi_level(60, true).expect("SPI exists");
    let mut lrs = LrFile::new(4);
    let lr = ListReg::decode(flushed_value(&mut g, &mut lrs));
    assert!(!lr.eoi_maintenance, "no maintenance interrupt needed for edge");
    guest_ack(&mut lrs, 60);
    guest_eoi(&mut lrs, 60);
    let report = g.sync(0, &mut lrs);
    assert!(report.deactivated_level().is_empty());
    assert!(flushed(&mut g, 0, &mut lrs).is_empty(), "the line is still high but no new edge came");
    assert!(!g.has_deliverable(0));
}

fn flushed_value(g: &mut VGic, lrs: &mut LrFile) -> u64 {
    g.flush(0, lrs);
    lrs.value(0)
}

#[test]
fn pending_and_active_are_visible_while_in_list_registers() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    setup_spi(&mut g, 70, 0x80, true);
    g.trigger_spi_edge(70).expect("SPI exists");
    let mut lrs = LrFile::new(4);
    g.flush(0, &mut lrs);
    assert!(is_pending(&g, 0, 70) && !is_active(&g, 0, 70), "pending in an LR reads pending");
    guest_ack(&mut lrs, 70);
    g.sync(0, &mut lrs);
    assert!(!is_pending(&g, 0, 70) && is_active(&g, 0, 70), "after sync: acknowledged = active");
    g.flush(0, &mut lrs);
    assert!(is_active(&g, 0, 70), "still active while its copy is in an LR");
    guest_eoi(&mut lrs, 70);
    g.sync(0, &mut lrs);
    assert!(!is_active(&g, 0, 70));
}

#[test]
fn edge_while_active_becomes_pending_active() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    setup_spi(&mut g, 70, 0x80, true);
    g.trigger_spi_edge(70).expect("SPI exists");
    let mut lrs = LrFile::new(4);
    g.flush(0, &mut lrs);
    guest_ack(&mut lrs, 70);
    g.sync(0, &mut lrs);
    g.flush(0, &mut lrs);
    let kicks = g.trigger_spi_edge(70).expect("SPI exists");
    assert!(kicks.contains(0), "the vCPU holding it is kicked");
    g.sync(0, &mut lrs);
    assert_eq!(flushed(&mut g, 0, &mut lrs), vec![(70, LrState::PendingActive)]);
    guest_eoi(&mut lrs, 70);
    g.sync(0, &mut lrs);
    assert_eq!(flushed(&mut g, 0, &mut lrs), vec![(70, LrState::Pending)]);
    assert_eq!(guest_handle_all(&mut lrs), vec![70]);
    g.sync(0, &mut lrs);
    assert!(flushed(&mut g, 0, &mut lrs).is_empty());
}

#[test]
fn edge_arriving_while_guest_runs_survives_its_acknowledge() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    setup_spi(&mut g, 70, 0x80, true);
    g.trigger_spi_edge(70).expect("SPI exists");
    let mut lrs = LrFile::new(4);
    g.flush(0, &mut lrs);
    // While the guest runs with the copy pending, a second edge arrives (from another CPU),
    // and the guest takes the first copy and finishes with it before it exits.
    let kicks = g.trigger_spi_edge(70).expect("SPI exists");
    assert!(kicks.contains(0));
    guest_ack(&mut lrs, 70);
    guest_eoi(&mut lrs, 70);
    g.sync(0, &mut lrs);
    assert!(is_pending(&g, 0, 70), "the second edge is not lost");
    assert_eq!(flushed(&mut g, 0, &mut lrs), vec![(70, LrState::Pending)]);
    guest_handle_all(&mut lrs);
    g.sync(0, &mut lrs);
    assert!(flushed(&mut g, 0, &mut lrs).is_empty(), "two edges, two deliveries, not three");
}

#[test]
fn icpendr_while_in_list_register_withdraws_the_copy() {
    let mut g = vgic(2);
    enable_groups(&mut g);
    setup_spi(&mut g, 70, 0x80, true);
    g.trigger_spi_edge(70).expect("SPI exists");
    let mut lrs = LrFile::new(4);
    g.flush(0, &mut lrs);
    // vCPU 1 clears it while vCPU 0 runs; vCPU 0 did not take it.
    let kicks = g.dist_write(1, 0x0288, 4, 1 << (70 - 64)).expect("valid write");
    assert!(kicks.contains(0));
    g.sync(0, &mut lrs);
    assert!(flushed(&mut g, 0, &mut lrs).is_empty());
    assert!(!lrs.in_use() && lrs.was_in_use(), "the LR must be cleared in hardware");
    assert_eq!(lrs.value(0) >> 62, 0);
}

#[test]
fn active_interrupt_outside_lrs_is_put_back_as_active() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    setup_spi(&mut g, 34, 0x80, true);
    dist_write(&mut g, GICD_ISACTIVER + 4, 4, 1 << 2);
    let mut lrs = LrFile::new(1);
    // Even a disabled interrupt's active state goes to the guest, ahead of pending ones.
    dist_write(&mut g, 0x0184, 4, 1 << 2);
    setup_spi(&mut g, 35, 0x00, true);
    g.trigger_spi_edge(35).expect("SPI exists");
    assert_eq!(flushed(&mut g, 0, &mut lrs), vec![(34, LrState::Active)]);
    assert!(lrs.underflow);
    guest_eoi(&mut lrs, 34);
    g.sync(0, &mut lrs);
    assert_eq!(flushed(&mut g, 0, &mut lrs), vec![(35, LrState::Pending)]);
    assert!(!lrs.underflow);
}

#[test]
fn better_interrupt_evicts_a_pending_copy() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    let mut lrs = LrFile::new(2);
    for intid in [40, 41] {
        setup_spi(&mut g, intid, 0xC0, true);
        g.trigger_spi_edge(intid).expect("SPI exists");
    }
    g.flush(0, &mut lrs);
    guest_ack(&mut lrs, 40);
    g.sync(0, &mut lrs);
    setup_spi(&mut g, 42, 0x10, true);
    g.trigger_spi_edge(42).expect("SPI exists");
    let contents = flushed(&mut g, 0, &mut lrs);
    assert_eq!(contents, vec![(40, LrState::Active), (42, LrState::Pending)], "41 evicted, 40 kept (active)");
    assert!(lrs.underflow, "41 still waits");
    assert!(is_pending(&g, 0, 41));
    check_invariants(&g, core::slice::from_ref(&lrs));
    guest_eoi(&mut lrs, 40);
    guest_handle_all(&mut lrs);
    g.sync(0, &mut lrs);
    assert_eq!(flushed(&mut g, 0, &mut lrs), vec![(41, LrState::Pending)]);
}

#[test]
fn sgi_decode() {
    let sgi = |intid: u64| intid << 24;
    let decode = |from, sgi1r| SgiRequest::decode(from, 4, sgi1r);
    let r = decode(0, sgi(3) | 0b1010);
    assert_eq!((r.intid, r.targets.bits()), (3, 0b1010));
    let r = decode(0, sgi(1) | 0xFFFF);
    assert_eq!(r.targets.bits(), 0b1111, "bits for vCPUs that do not exist are ignored");
    let r = decode(2, sgi(15) | 1 << 40 | 0xF);
    assert_eq!((r.intid, r.targets.bits()), (15, 0b1011), "IRM: everyone but the sender");
    assert!(decode(0, sgi(1) | 1 << 16 | 1).targets.is_empty(), "Aff1 = 1");
    assert!(decode(0, sgi(1) | 1 << 32 | 1).targets.is_empty(), "Aff2 = 1");
    assert!(decode(0, sgi(1) | 1 << 48 | 1).targets.is_empty(), "Aff3 = 1");
    assert!(decode(0, sgi(1) | 1 << 44 | 1).targets.is_empty(), "RS = 1: Aff0 16..31");
    assert_eq!(SgiRequest::decode(0, 1, 1 << 40).targets, Kicks::NONE, "IRM with one vCPU");
}

#[test]
fn sgi_reaches_only_its_targets() {
    let mut g = vgic(3);
    enable_groups(&mut g);
    let mut lrs: Vec<LrFile> = (0..3).map(|_| LrFile::new(4)).collect();
    let kicks = g.send_sgi(0, 5 << 24 | 0b110);
    assert_eq!(kicks, Kicks::from_bits(0b110));
    assert!(flushed(&mut g, 0, &mut lrs[0]).is_empty());
    for v in [1, 2] {
        assert_eq!(flushed(&mut g, v, &mut lrs[v]), vec![(5, LrState::Pending)]);
        assert!(!ListReg::decode(lrs[v].value(0)).eoi_maintenance);
    }
    assert_eq!(g.send_sgi(1, 5 << 24 | 1 << 16 | 1), Kicks::NONE);
    check_invariants(&g, &lrs);
}

#[test]
fn virtual_timer_ppi_deactivation_is_reported() {
    let mut g = vgic(2);
    enable_groups(&mut g);
    g.redist_write(1, 1, GICR_SGI_BASE + 0x100, 4, 1 << VIRTUAL_TIMER_PPI).expect("valid write");
    let kicks = g.set_ppi_level(1, VIRTUAL_TIMER_PPI, true).expect("PPI exists");
    assert_eq!(kicks, Kicks::from_bits(0b10));
    let mut lrs = LrFile::new(4);
    assert_eq!(flushed(&mut g, 1, &mut lrs), vec![(VIRTUAL_TIMER_PPI, LrState::Pending)]);
    guest_ack(&mut lrs, VIRTUAL_TIMER_PPI);
    guest_eoi(&mut lrs, VIRTUAL_TIMER_PPI);
    let report = g.sync(1, &mut lrs);
    assert!(report.deactivated(VIRTUAL_TIMER_PPI));
    // The kernel lowers the line and unmasks the timer.
    g.set_ppi_level(1, VIRTUAL_TIMER_PPI, false).expect("PPI exists");
    assert!(flushed(&mut g, 1, &mut lrs).is_empty());
    assert!(!g.has_deliverable(0), "vCPU 0's PPI 27 is untouched");
}

#[test]
fn has_deliverable_respects_the_priority_mask() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    setup_spi(&mut g, 40, 0x80, true);
    assert!(!g.has_deliverable(0));
    g.trigger_spi_edge(40).expect("SPI exists");
    assert!(g.has_deliverable(0));
    assert!(g.has_deliverable_under_mask(0, 0x88));
    assert!(!g.has_deliverable_under_mask(0, 0x80), "priority must be strictly higher than the mask");
    assert!(!g.has_deliverable(7), "no vCPU 7");
}

#[test]
fn injection_rejects_absent_interrupts() {
    let mut g = vgic(2);
    assert_eq!(g.set_spi_level(27, true), Err(VGicError::OutOfRange));
    assert_eq!(g.set_spi_level(96, true), Err(VGicError::OutOfRange));
    assert_eq!(g.trigger_spi_edge(1020), Err(VGicError::OutOfRange));
    assert_eq!(g.set_ppi_level(0, 5, true), Err(VGicError::OutOfRange), "an SGI is not a line");
    assert_eq!(g.set_ppi_level(0, 32, true), Err(VGicError::OutOfRange));
    assert_eq!(g.set_ppi_level(2, 27, true), Err(VGicError::OutOfRange));
    let mut lrs = LrFile::new(4);
    g.flush(9, &mut lrs);
    assert_eq!(g.sync(9, &mut lrs), SyncReport::default());
}

#[test]
fn flush_and_sync_do_nothing_when_nothing_changed() {
    let mut g = vgic(1);
    enable_groups(&mut g);
    let mut lrs = LrFile::new(4);
    g.flush(0, &mut lrs);
    assert!(!g.vcpus[0].lrs.needs_flush);
    assert_eq!(g.sync(0, &mut lrs), SyncReport::default());
    g.flush(0, &mut lrs);
    assert!(!lrs.in_use() && !lrs.was_in_use());

    // With an interrupt held active across a hypercall round trip: no list register rewritten.
    setup_spi(&mut g, 40, 0x80, true);
    g.trigger_spi_edge(40).expect("SPI exists");
    g.flush(0, &mut lrs);
    guest_ack(&mut lrs, 40);
    g.sync(0, &mut lrs);
    g.flush(0, &mut lrs);
    assert!(lrs.in_use());
    lrs.take_dirty();
    g.sync(0, &mut lrs);
    assert!(!g.vcpus[0].lrs.needs_flush, "unchanged list registers need no flush");
    g.flush(0, &mut lrs);
    assert!(!lrs.was_in_use(), "nothing to write but the unchanged values");
}
