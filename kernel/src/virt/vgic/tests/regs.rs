//! Register emulation: every GICD and GICR register family reads back what it should, and bad
//! accesses are errors, not panics.

use super::*;

const SGI: u64 = GICR_SGI_BASE;

fn redist_read(g: &VGic, target: usize, offset: u64, size: u8) -> u64 {
    g.redist_read(0, target, offset, size).expect("a valid GICR read")
}

fn redist_write(g: &mut VGic, target: usize, offset: u64, size: u8, value: u64) -> Kicks {
    g.redist_write(0, target, offset, size, value).expect("a valid GICR write")
}

#[test]
fn gicd_ctlr_enables_read_back_and_are_is_fixed() {
    let mut g = vgic(2);
    assert_eq!(dist_read(&g, GICD_CTLR, 4), 1 << 4 | 1 << 6, "ARE and DS set, groups disabled");
    dist_write(&mut g, GICD_CTLR, 4, 0x3);
    assert_eq!(dist_read(&g, GICD_CTLR, 4), 0x53);
    dist_write(&mut g, GICD_CTLR, 4, 0x2 | 1 << 31);
    assert_eq!(dist_read(&g, GICD_CTLR, 4), 0x52, "RWP reads 0, ARE cannot be cleared");
    assert_eq!(g.dist_read(0, GICD_CTLR, 8), Err(VGicError::BadAccess));
}

#[test]
fn gicd_typer_describes_the_vm() {
    let g = vgic(2);
    let typer = dist_read(&g, 0x0004, 4);
    assert_eq!(typer & 0x1F, 2, "ITLinesNumber: (2 + 1) * 32 = 96 INTIDs");
    assert_eq!((typer >> 5) & 0x7, 1, "CPUNumber = vCPUs - 1");
    assert_eq!((typer >> 19) & 0x1F, 9, "IDbits: 10 bits");
    assert_eq!(typer & (1 << 10 | 1 << 16 | 1 << 17 | 1 << 24 | 1 << 26), 0, "no security, MBIS, LPIs, A3V, RSS");

    let big = VGic::new(8, MAX_NR_SPIS).expect("valid configuration");
    let typer = dist_read(&big, 0x0004, 4);
    assert_eq!(typer & 0x1F, 30);
    assert_eq!((typer >> 5) & 0x7, 7);
    assert_eq!(dist_read(&g, 0x000C, 4), 0, "TYPER2");
    assert_eq!(dist_read(&g, 0x0008, 4), 0x4B00_043B, "IIDR");
    assert_eq!(dist_read(&g, 0xFFE8, 4), 0x3B, "PIDR2: ArchRev 3");
}

#[test]
fn gicd_bit_registers_read_back() {
    let mut g = vgic(2);
    // IGROUPR1 (INTIDs 32..63): stored as written.
    dist_write(&mut g, 0x0084, 4, 0x0F0F_00FF);
    assert_eq!(dist_read(&g, 0x0084, 4), 0x0F0F_00FF);
    // ISENABLER / ICENABLER.
    dist_write(&mut g, 0x0104, 4, 0x8000_0003);
    assert_eq!(dist_read(&g, 0x0104, 4), 0x8000_0003);
    dist_write(&mut g, 0x0184, 4, 0x0000_0001);
    assert_eq!(dist_read(&g, 0x0184, 4), 0x8000_0002);
    // ISPENDR / ICPENDR.
    dist_write(&mut g, 0x0208, 4, 0x0000_0110);
    assert_eq!(dist_read(&g, 0x0208, 4), 0x110);
    dist_write(&mut g, 0x0288, 4, 0x0000_0010);
    assert_eq!(dist_read(&g, 0x0288, 4), 0x100);
    // ISACTIVER / ICACTIVER.
    dist_write(&mut g, 0x0304, 4, 0x5);
    assert_eq!(dist_read(&g, 0x0304, 4), 0x5);
    dist_write(&mut g, 0x0384, 4, 0x1);
    assert_eq!(dist_read(&g, 0x0384, 4), 0x4);
    // Word 0 (SGIs/PPIs) is RAZ/WI in the distributor; so are absent SPIs (INTID 96+).
    for base in [0x0080, 0x0100, 0x0200, 0x0300] {
        dist_write(&mut g, base, 4, u64::from(u32::MAX));
        assert_eq!(dist_read(&g, base, 4), 0);
        dist_write(&mut g, base + 12, 4, u64::from(u32::MAX));
        assert_eq!(dist_read(&g, base + 12, 4), 0);
    }
    assert_eq!(g.redist_read(0, 0, SGI + 0x100, 4), Ok(0xFFFF), "SGIs enabled at reset, PPIs not");
}

#[test]
fn gicd_priorities_byte_and_word() {
    let mut g = vgic(1);
    dist_write(&mut g, 0x0420, 4, 0x1122_33FF);
    assert_eq!(dist_read(&g, 0x0420, 4), 0x1020_30F8, "only the top five bits are implemented");
    assert_eq!(dist_read(&g, 0x0423, 1), 0x10);
    dist_write(&mut g, 0x0421, 1, 0xA0);
    assert_eq!(dist_read(&g, 0x0420, 4), 0x1020_A0F8);
    assert_eq!(g.dist_read(0, 0x0420, 2), Err(VGicError::BadAccess));
    assert_eq!(g.dist_read(0, 0x0420, 8), Err(VGicError::BadAccess));
    dist_write(&mut g, 0x0400, 4, u64::from(u32::MAX));
    assert_eq!(dist_read(&g, 0x0400, 4), 0, "private priorities are in the redistributor");
    assert_eq!(dist_read(&g, 0x0460, 4), 0, "INTID 96 does not exist");
}

#[test]
fn gicd_icfgr_only_odd_bits_for_spis() {
    let mut g = vgic(1);
    dist_write(&mut g, 0x0C08, 4, u64::from(u32::MAX));
    assert_eq!(dist_read(&g, 0x0C08, 4), 0xAAAA_AAAA);
    dist_write(&mut g, 0x0C0C, 4, 0x0000_0008);
    assert_eq!(dist_read(&g, 0x0C0C, 4), 0x8, "INTID 49 edge");
    dist_write(&mut g, 0x0C00, 4, u64::from(u32::MAX));
    assert_eq!(dist_read(&g, 0x0C00, 4), 0, "ICFGR0 is RAZ/WI in GICD");
    assert_eq!(dist_read(&g, 0x0C04, 4), 0);
}

#[test]
fn gicd_igrpmodr_and_legacy_registers_are_raz_wi() {
    let mut g = vgic(1);
    for offset in [0x0D04, 0x0E08, 0x0F00, 0x0820, 0x0010, 0x0040] {
        dist_write(&mut g, offset, 4, u64::from(u32::MAX));
        assert_eq!(dist_read(&g, offset, 4), 0, "offset {offset:#x}");
    }
}

#[test]
fn gicd_irouter_whole_and_halves() {
    let mut g = vgic(4);
    let r33 = GICD_IROUTER + 8 * 33;
    dist_write(&mut g, r33, 8, 0xFFFF_FFFF_FFFF_FFFF);
    assert_eq!(dist_read(&g, r33, 8), 0x0000_00FF_80FF_FFFF, "RES0 bits clear");
    dist_write(&mut g, r33, 4, 0x2);
    assert_eq!(dist_read(&g, r33, 8), 0x0000_00FF_0000_0002);
    dist_write(&mut g, r33 + 4, 4, 0);
    assert_eq!(dist_read(&g, r33, 8), 0x2);
    assert_eq!(dist_read(&g, r33, 4), 0x2);
    assert_eq!(dist_read(&g, r33 + 4, 4), 0);
    assert_eq!(g.spis[1].target, Some(2));
    // Routers of SGIs/PPIs and absent SPIs are RAZ/WI; 2-byte access is bad.
    dist_write(&mut g, GICD_IROUTER + 8 * 5, 8, 1);
    assert_eq!(dist_read(&g, GICD_IROUTER + 8 * 5, 8), 0);
    assert_eq!(dist_read(&g, GICD_IROUTER + 8 * 96, 8), 0);
    assert_eq!(g.dist_read(0, r33, 2), Err(VGicError::BadAccess));
}

#[test]
fn gicd_bad_accesses_are_errors_and_reserved_space_is_raz_wi() {
    let mut g = vgic(1);
    assert_eq!(g.dist_read(0, 0x0004, 8), Err(VGicError::BadAccess), "64-bit TYPER");
    assert_eq!(g.dist_read(0, 0x0100, 2), Err(VGicError::BadAccess), "16-bit ISENABLER");
    assert_eq!(g.dist_read(0, 0x0102, 4), Err(VGicError::BadAccess), "misaligned");
    assert_eq!(g.dist_read(0, 0x0100, 3), Err(VGicError::BadAccess), "3 bytes");
    assert_eq!(g.dist_read(0, GICD_SIZE, 4), Err(VGicError::OutOfRange));
    assert_eq!(g.dist_write(0, u64::MAX - 3, 4, 0), Err(VGicError::OutOfRange));
    assert_eq!(g.dist_read(1, 0, 4), Err(VGicError::OutOfRange), "no vCPU 1");
    assert_eq!(g.dist_read(0, 0x5000, 2), Ok(0), "reserved");
    assert_eq!(g.dist_write(0, 0x5000, 8, 7), Ok(Kicks::NONE));
}

#[test]
fn gicr_typer_per_vcpu() {
    let g = vgic(3);
    for target in 0..3 {
        let typer = redist_read(&g, target, 0x0008, 8);
        assert_eq!(typer >> 32, target as u64, "Affinity_Value = Aff0");
        assert_eq!((typer >> 8) & 0xFFFF, target as u64, "Processor_Number");
        assert_eq!(typer & (1 << 4) != 0, target == 2, "Last only on the last vCPU");
        assert_eq!(typer & (1 << 0 | 1 << 1 | 1 << 5), 0, "no PLPIS, VLPIS, DirectLPI");
        assert_eq!(redist_read(&g, target, 0x0008, 4), typer & 0xFFFF_FFFF);
        assert_eq!(redist_read(&g, target, 0x000C, 4), typer >> 32);
    }
    assert_eq!(g.redist_read(0, 3, 0x0008, 8), Err(VGicError::OutOfRange));
    assert_eq!(g.redist_read(0, 0, 0x000C, 8), Err(VGicError::BadAccess));
}

#[test]
fn gicr_waker_children_follow_processor_sleep() {
    let mut g = vgic(2);
    assert_eq!(redist_read(&g, 1, 0x0014, 4), 0x6, "asleep at reset");
    redist_write(&mut g, 1, 0x0014, 4, 0);
    assert_eq!(redist_read(&g, 1, 0x0014, 4), 0);
    assert_eq!(redist_read(&g, 0, 0x0014, 4), 0x6, "vCPU 0's redistributor still asleep");
    redist_write(&mut g, 1, 0x0014, 4, 0x2);
    assert_eq!(redist_read(&g, 1, 0x0014, 4), 0x6);
}

#[test]
fn gicr_identification() {
    let mut g = vgic(1);
    assert_eq!(redist_read(&g, 0, 0x0000, 4), 0, "CTLR: no LPIs, RWP 0");
    redist_write(&mut g, 0, 0x0000, 4, 1);
    assert_eq!(redist_read(&g, 0, 0x0000, 4), 0, "EnableLPIs is RAZ/WI");
    assert_eq!(redist_read(&g, 0, 0x0004, 4), 0x4B00_043B);
    assert_eq!(redist_read(&g, 0, 0xFFE8, 4), 0x3B);
    assert_eq!(redist_read(&g, 0, 0x0070, 8), 0, "PROPBASER RAZ");
}

#[test]
fn gicr_sgi_base_registers_read_back() {
    let mut g = vgic(2);
    redist_write(&mut g, 1, SGI + 0x0080, 4, 0x1234_5678);
    assert_eq!(redist_read(&g, 1, SGI + 0x0080, 4), 0x1234_5678, "IGROUPR0");
    redist_write(&mut g, 1, SGI + 0x0100, 4, 0x0800_0000);
    assert_eq!(redist_read(&g, 1, SGI + 0x0100, 4), 0x0800_FFFF, "ISENABLER0: PPI 27 plus the SGIs");
    redist_write(&mut g, 1, SGI + 0x0180, 4, 0x0000_0001);
    assert_eq!(redist_read(&g, 1, SGI + 0x0180, 4), 0x0800_FFFE, "ICENABLER0");
    redist_write(&mut g, 1, SGI + 0x0200, 4, 0x0001_0002);
    assert_eq!(redist_read(&g, 1, SGI + 0x0200, 4), 0x0001_0002, "ISPENDR0");
    redist_write(&mut g, 1, SGI + 0x0280, 4, 0x0000_0002);
    assert_eq!(redist_read(&g, 1, SGI + 0x0280, 4), 0x0001_0000, "ICPENDR0");
    redist_write(&mut g, 1, SGI + 0x0300, 4, 0x0000_0300);
    assert_eq!(redist_read(&g, 1, SGI + 0x0300, 4), 0x300, "ISACTIVER0");
    redist_write(&mut g, 1, SGI + 0x0380, 4, 0x0000_0100);
    assert_eq!(redist_read(&g, 1, SGI + 0x0380, 4), 0x200, "ICACTIVER0");
    redist_write(&mut g, 1, SGI + 0x041C, 4, 0xA0B0_C0D0);
    assert_eq!(redist_read(&g, 1, SGI + 0x041C, 4), 0xA0B0_C0D0, "IPRIORITYR7");
    assert_eq!(redist_read(&g, 1, SGI + 0x041F, 1), 0xA0);
    redist_write(&mut g, 1, SGI + 0x0400, 1, 0x48);
    assert_eq!(redist_read(&g, 1, SGI + 0x0400, 4), 0x48);
    redist_write(&mut g, 1, SGI + 0x0C00, 4, 0);
    assert_eq!(redist_read(&g, 1, SGI + 0x0C00, 4), 0xAAAA_AAAA, "ICFGR0: SGIs are edge, read-only");
    assert_eq!(redist_read(&g, 1, SGI + 0x0C04, 4), 0, "ICFGR1: PPIs level at reset");
    redist_write(&mut g, 1, SGI + 0x0C04, 4, 0xFFFF_FFFF);
    assert_eq!(redist_read(&g, 1, SGI + 0x0C04, 4), 0xAAAA_AAAA);
    redist_write(&mut g, 1, SGI + 0x0D00, 4, 0xFFFF_FFFF);
    assert_eq!(redist_read(&g, 1, SGI + 0x0D00, 4), 0, "IGRPMODR0 RAZ/WI with DS = 1");
    assert_eq!(g.redist_read(0, 1, SGI + 0x0100, 8), Err(VGicError::BadAccess));
    assert_eq!(g.redist_read(0, 1, SGI + 0x0401, 2), Err(VGicError::BadAccess));
    assert_eq!(g.redist_read(0, 1, GICR_STRIDE, 4), Err(VGicError::OutOfRange));
    assert_eq!(g.redist_read(0, 1, SGI + 0x0104, 4), Ok(0), "no extended PPIs");
}

#[test]
fn private_state_is_per_vcpu() {
    let mut g = vgic(3);
    redist_write(&mut g, 1, SGI + 0x0100, 4, 1 << 27);
    redist_write(&mut g, 1, SGI + 0x0200, 4, 1 << 3);
    redist_write(&mut g, 1, SGI + 0x0418, 4, 0x8000_0000);
    for other in [0, 2] {
        assert_eq!(redist_read(&g, other, SGI + 0x0100, 4), 0xFFFF);
        assert_eq!(redist_read(&g, other, SGI + 0x0200, 4), 0);
        assert_eq!(redist_read(&g, other, SGI + 0x0418, 4), 0);
    }
    assert_eq!(redist_read(&g, 1, SGI + 0x0100, 4), 0x0800_FFFF);
    // Accessing vCPU 1's frame from vCPU 2 acts on vCPU 1.
    g.redist_write(2, 1, SGI + 0x0180, 4, 1 << 27).expect("valid write");
    assert_eq!(redist_read(&g, 1, SGI + 0x0100, 4), 0xFFFF);
    assert_eq!(g.redist_read(3, 0, 0, 4), Err(VGicError::OutOfRange), "no vCPU 3 to access from");
}
