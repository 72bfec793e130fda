//! A randomized guest: 100k random register accesses (good and bad offsets and sizes), line
//! changes, SGIs, and flush / guest / sync rounds on three vCPUs with different list-register
//! counts. Nothing may panic, and the module invariants must hold after every step.

use alloc::vec::Vec;

use super::*;

/// xorshift64: deterministic, no external crates.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Mostly 4-byte accesses, some of every other size, some invalid.
fn random_size(rng: &mut XorShift) -> u8 {
    rng.pick(&[4, 4, 4, 4, 4, 4, 1, 8, 8, 2, 3, 0, 16])
}

/// A GICD offset: usually inside a register family, sometimes anywhere (or beyond the frame).
fn random_gicd_offset(rng: &mut XorShift) -> u64 {
    match rng.below(12) {
        0 => rng.pick(&[0x0, 0x4, 0x8, 0xC, 0x10, 0xFFE8, 0xFFD0]),
        1..=6 => rng.pick(&[0x080, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380]) + rng.below(5) * 4,
        7 => 0x400 + rng.below(0x70),
        8 => 0xC00 + rng.below(8) * 4,
        9 => 0x6000 + 8 * (28 + rng.below(72)) + rng.pick(&[0, 4]),
        10 => rng.below(0x1_0000),
        _ => rng.next(),
    }
}

/// A GICR offset: RD_base registers, SGI_base registers, or anywhere.
fn random_gicr_offset(rng: &mut XorShift) -> u64 {
    match rng.below(10) {
        0 => rng.pick(&[0x0, 0x4, 0x8, 0xC, 0x14, 0x70, 0xFFE8]),
        1..=5 => GICR_SGI_BASE + rng.pick(&[0x080, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380, 0x0C00, 0x0C04, 0x0D00]),
        6 => GICR_SGI_BASE + 0x400 + rng.below(0x20),
        7 => rng.below(GICR_STRIDE),
        8 => GICR_STRIDE + rng.below(0x100),
        _ => rng.next(),
    }
}

/// The guest, while running, does something legal (or, rarely, the hardware returns an odd
/// state) to one of its list registers.
fn guest_step(rng: &mut XorShift, lrs: &mut LrFile) {
    let live: Vec<usize> = bits(lrs.live()).collect();
    if live.is_empty() {
        return;
    }
    let n = rng.pick(&live);
    let lr = ListReg::decode(lrs.value(n));
    let state = match (lr.state, rng.below(10)) {
        (_, 0) => rng.pick(&[LrState::Invalid, LrState::Pending, LrState::Active, LrState::PendingActive]),
        (LrState::Pending, 1..=3) => LrState::Invalid, // acknowledged and deactivated
        (LrState::Pending, _) => LrState::Active,
        (LrState::Active, _) => LrState::Invalid,
        (LrState::PendingActive, _) => LrState::Pending,
        (LrState::Invalid, _) => LrState::Invalid,
    };
    lrs.store_from_hardware(n, ListReg { state, ..lr }.encode());
}

#[test]
fn random_accesses_never_panic_and_keep_invariants() {
    const VCPUS: usize = 3;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut g = VGic::new(VCPUS, DEFAULT_NR_SPIS).expect("valid configuration");
    let mut lrs = [LrFile::new(4), LrFile::new(1), LrFile::new(16)];
    let mut running = [false; VCPUS];
    let mut errors = 0u32;
    let mut deliveries = 0u32;

    for step in 0..100_000 {
        let vcpu = rng.below(VCPUS as u64) as usize;
        match rng.below(100) {
            0..=29 => {
                let (offset, size) = (random_gicd_offset(&mut rng), random_size(&mut rng));
                let from = rng.below(VCPUS as u64 + 1) as usize;
                let result = if rng.below(2) == 0 {
                    g.dist_read(from, offset, size).map(|_| Kicks::NONE)
                } else {
                    g.dist_write(from, offset, size, rng.next())
                };
                errors += u32::from(result.is_err());
            }
            30..=49 => {
                let (offset, size) = (random_gicr_offset(&mut rng), random_size(&mut rng));
                let target = rng.below(VCPUS as u64 + 1) as usize;
                let result = if rng.below(2) == 0 {
                    g.redist_read(vcpu, target, offset, size).map(|_| Kicks::NONE)
                } else {
                    g.redist_write(vcpu, target, offset, size, rng.next())
                };
                errors += u32::from(result.is_err());
            }
            50..=57 => errors += u32::from(g.set_spi_level(rng.below(110) as u32, rng.below(2) == 0).is_err()),
            58..=61 => errors += u32::from(g.trigger_spi_edge(rng.below(110) as u32).is_err()),
            62..=65 => {
                let target = rng.below(VCPUS as u64 + 1) as usize;
                errors += u32::from(g.set_ppi_level(target, rng.below(40) as u32, rng.below(2) == 0).is_err());
            }
            66..=69 => {
                let sgi1r = rng.next() & (0xF << 24 | 0xF | 1 << 40 | rng.pick(&[0, 1 << 16, 1 << 44]));
                let kicks = g.send_sgi(vcpu, sgi1r);
                assert_eq!(kicks.bits() >> VCPUS, 0, "kicked a vCPU that does not exist");
            }
            70..=79 if !running[vcpu] => {
                g.flush(vcpu, &mut lrs[vcpu]);
                check_nothing_waiting(&g, vcpu, &lrs[vcpu]);
                deliveries += lrs[vcpu].live().count_ones();
                running[vcpu] = true;
            }
            80..=89 if running[vcpu] => guest_step(&mut rng, &mut lrs[vcpu]),
            _ if running[vcpu] => {
                g.sync(vcpu, &mut lrs[vcpu]);
                running[vcpu] = false;
            }
            _ => {}
        }
        check_invariants(&g, &lrs);
        let _ = step;
    }
    // The run exercised both failure and delivery paths.
    assert!(errors > 1000, "only {errors} rejected accesses");
    assert!(deliveries > 1000, "only {deliveries} list-register entries delivered");

    // Drain: with every line low, a guest that handles everything it is given ends up with
    // nothing deliverable anywhere; nothing is stuck in the model or lost.
    for intid in SPI_BASE..SPI_BASE + DEFAULT_NR_SPIS {
        g.set_spi_level(intid, false).expect("SPI exists");
    }
    for vcpu in 0..VCPUS {
        for intid in PPI_BASE..SPI_BASE {
            g.set_ppi_level(vcpu, intid, false).expect("PPI exists");
        }
        if running[vcpu] {
            g.sync(vcpu, &mut lrs[vcpu]);
        }
    }
    for _round in 0..200 {
        for vcpu in 0..VCPUS {
            g.flush(vcpu, &mut lrs[vcpu]);
            for (intid, state) in lr_contents(&lrs[vcpu]) {
                if state.is_pending() && !state.is_active() {
                    guest_ack(&mut lrs[vcpu], intid);
                }
                guest_eoi(&mut lrs[vcpu], intid);
            }
            g.sync(vcpu, &mut lrs[vcpu]);
            check_invariants(&g, &lrs);
        }
    }
    for (vcpu, file) in lrs.iter_mut().enumerate() {
        g.flush(vcpu, file);
        assert!(!file.in_use() && !file.underflow, "vcpu {vcpu} never drained");
        assert!(!g.has_deliverable(vcpu), "vcpu {vcpu}: a deliverable interrupt was never delivered");
    }
}
