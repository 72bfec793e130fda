//! DTB discovery against QEMU 10's own blobs (fixtures/qemu-virt-*.dtb, see fixtures/regen.sh),
//! hand-written hostile trees (fixtures/*.dts), and a few thousand corrupted blobs that must be
//! rejected without a panic.

use keel_platform::dtb::{
    DtbError, MAX_DEPTH, Machine, PsciConduit, Region, Timer, dtb_total_size,
};

const VIRT: &[u8] = include_bytes!("fixtures/qemu-virt-smp4.dtb");
const VIRT_INITRD: &[u8] = include_bytes!("fixtures/qemu-virt-smp4-initrd.dtb");
const VIRT_BLK: &[u8] = include_bytes!("fixtures/qemu-virt-smp4-virtio-blk.dtb");
const VIRT_NO_EL2: &[u8] = include_bytes!("fixtures/qemu-virt-novirt.dtb");
const VIRT_GICV2: &[u8] = include_bytes!("fixtures/qemu-virt-gicv2.dtb");
const MINIMAL: &[u8] = include_bytes!("fixtures/minimal.dtb");

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn parse(blob: &[u8]) -> Machine<'_> {
    match Machine::from_dtb(blob) {
        Ok(machine) => machine,
        Err(e) => panic!("fixture rejected: {e}"),
    }
}

/// Everything MACHINE.md lists for the reference `-machine virt,virtualization=on,...` command.
fn assert_reference_machine(m: &Machine<'_>) {
    assert_eq!(m.model, "linux,dummy-virt");
    assert_eq!(
        m.memory.as_slice(),
        &[Region {
            base: 0x4000_0000,
            size: 2 * GIB
        }]
    );
    assert!(m.reserved.is_empty());
    let mpidrs: Vec<u64> = m.cpus.iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, [0, 1, 2, 3]);

    assert_eq!(
        m.gic.dist,
        Region {
            base: 0x0800_0000,
            size: 0x1_0000
        }
    );
    assert_eq!(
        m.gic.redists.as_slice(),
        &[Region {
            base: 0x080A_0000,
            size: 0xF6_0000
        }]
    );
    assert_eq!(m.gic.maintenance_intid, Some(25));
    assert_eq!(
        m.timer,
        Timer {
            sec_phys: 29,
            phys: 30,
            virt: 27,
            hyp_phys: 26,
            hyp_virt: Some(28)
        }
    );

    assert_eq!(
        (m.uart.base, m.uart.size, m.uart.intid),
        (0x0900_0000, 0x1000, 33)
    );
    assert_eq!(m.psci, Some(PsciConduit::Smc));
    let smmu = m.smmu.expect("reference machine has an SMMUv3");
    assert_eq!(
        smmu.region,
        Region {
            base: 0x0905_0000,
            size: 0x2_0000
        }
    );
    // QEMU writes nothing about stages into the DTB (checked: the blob is byte-identical
    // without -global arm-smmuv3.stage=2), so the parser cannot report stage-2 support.
    assert!(!smmu.stage2);
    assert_eq!(
        m.pcie_ecam,
        Some(Region {
            base: 0x40_1000_0000,
            size: 256 * MIB
        })
    );

    assert_eq!(m.virtio_mmio.len(), 32);
    for (n, transport) in m.virtio_mmio.iter().enumerate() {
        assert_eq!(
            transport.region,
            Region {
                base: 0x0A00_0000 + 0x200 * n as u64,
                size: 0x200
            }
        );
        assert_eq!(transport.intid, 48 + n as u32);
    }
}

#[test]
fn qemu_virt_reference_machine() {
    let m = parse(VIRT);
    assert_reference_machine(&m);
    assert_eq!(m.bootargs, "");
    assert_eq!(m.initrd, None);
    assert_eq!(m.dtb_size, 1 << 20); // QEMU does not pack its blob
}

#[test]
fn qemu_virt_with_append_and_initrd_reports_both() {
    let m = parse(VIRT_INITRD);
    assert_reference_machine(&m);
    assert_eq!(m.bootargs, "loglevel=debug");
    // QEMU places the 4 KiB initrd at 0x4800_0000.
    assert_eq!(
        m.initrd,
        Some(Region {
            base: 0x4800_0000,
            size: 0x1000
        })
    );
}

#[test]
fn qemu_virt_with_virtio_blk_lists_the_same_transports() {
    let with_disk = parse(VIRT_BLK);
    assert_reference_machine(&with_disk);
    assert_eq!(with_disk.virtio_mmio, parse(VIRT).virtio_mmio);
}

#[test]
fn qemu_virt_without_el2_has_no_maintenance_interrupt_and_uses_hvc() {
    let m = parse(VIRT_NO_EL2);
    assert_eq!(m.gic.maintenance_intid, None);
    assert_eq!(m.gic.dist.base, 0x0800_0000);
    assert_eq!(m.psci, Some(PsciConduit::Hvc));
    assert_eq!(m.smmu, None);
    assert_eq!(m.cpus.len(), 4);
}

#[test]
fn gicv2_machine_is_unsupported() {
    assert!(matches!(
        Machine::from_dtb(VIRT_GICV2),
        Err(DtbError::Unsupported(_))
    ));
}

#[test]
fn minimal_tree_uses_memreserve_reserved_memory_ranges_and_stdout_alias() {
    let m = parse(MINIMAL);
    assert_eq!(m.model, "keel,minimal");
    assert_eq!(m.bootargs, "console=ttyAMA1");
    assert_eq!(
        m.memory.as_slice(),
        &[Region {
            base: 0x4000_0000,
            size: 256 * MIB
        }]
    );
    // /memreserve/ first, then /reserved-memory children with a reg (the dynamic pool has none).
    assert_eq!(
        m.reserved.as_slice(),
        &[
            Region {
                base: 0x4800_0000,
                size: 0x1000
            },
            Region {
                base: 0x4f00_0000,
                size: MIB
            }
        ]
    );
    // Two-cell CPU reg; the CPU with status = "fail" is left out.
    let mpidrs: Vec<u64> = m.cpus.iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, [0x0, 0x100]);
    assert_eq!(
        m.gic.redists.as_slice(),
        &[
            Region {
                base: 0x080a_0000,
                size: 0x2_0000
            },
            Region {
                base: 0x0810_0000,
                size: 0x2_0000
            }
        ]
    );
    assert_eq!(m.gic.maintenance_intid, None);
    assert_eq!(m.timer.hyp_virt, None);
    assert_eq!(m.timer.phys, 30);
    assert_eq!(m.psci, Some(PsciConduit::Hvc));
    // stdout-path "serial1:115200n8" -> /soc/uart@1000, translated through /soc's ranges.
    assert_eq!(
        (m.uart.base, m.uart.size, m.uart.intid),
        (0x1c00_1000, 0x1000, 37)
    );
    // Sorted by base; the disabled transport is skipped.
    let virtio: Vec<(u64, u32)> = m
        .virtio_mmio
        .iter()
        .map(|v| (v.region.base, v.intid))
        .collect();
    assert_eq!(virtio, [(0x0a00_0000, 48), (0x1c00_2000, 49)]);
    assert_eq!((m.initrd, m.smmu, m.pcie_ecam), (None, None, None));
    assert_eq!(m.dtb_size, MINIMAL.len());
}

#[test]
fn missing_memory_is_missing() {
    let blob = include_bytes!("fixtures/no-memory.dtb");
    assert!(matches!(Machine::from_dtb(blob), Err(DtbError::Missing(_))));
}

#[test]
fn missing_gicv3_is_missing() {
    let blob = include_bytes!("fixtures/no-gicv3.dtb");
    let err = Machine::from_dtb(blob).unwrap_err();
    assert_eq!(err, DtbError::Missing("GICv3 (arm,gic-v3) node"));
    assert_eq!(
        err.to_string(),
        "device tree has no GICv3 (arm,gic-v3) node"
    );
}

#[test]
fn seventeen_memory_regions_are_too_many() {
    let blob = include_bytes!("fixtures/too-many-memory.dtb");
    assert_eq!(
        Machine::from_dtb(blob).unwrap_err(),
        DtbError::TooMany("memory regions")
    );
}

#[test]
fn zero_sized_memory_ranges_are_skipped() {
    let m = parse(include_bytes!("fixtures/zero-size-memory.dtb"));
    assert_eq!(
        m.memory.as_slice(),
        &[Region {
            base: 0x4000_0000,
            size: 256 * MIB
        }]
    );
}

#[test]
fn initrd_ending_before_it_starts_is_malformed() {
    let blob = include_bytes!("fixtures/initrd-backwards.dtb");
    assert!(matches!(
        Machine::from_dtb(blob),
        Err(DtbError::Malformed(_))
    ));
}

#[test]
fn initrd_with_32_bit_cells_is_read() {
    let m = parse(include_bytes!("fixtures/initrd-32bit.dtb"));
    assert_eq!(
        m.initrd,
        Some(Region {
            base: 0x4800_0000,
            size: 2 * MIB
        })
    );
}

#[test]
fn nesting_past_the_limit_is_malformed() {
    assert_eq!(MAX_DEPTH, 16);
    let blob = include_bytes!("fixtures/too-deep.dtb");
    assert_eq!(
        Machine::from_dtb(blob).unwrap_err(),
        DtbError::Malformed("nodes nested too deeply")
    );
}

#[test]
fn total_size_comes_from_the_header_alone() {
    assert_eq!(dtb_total_size(&VIRT[..40]), Ok(1 << 20));
    assert_eq!(dtb_total_size(&MINIMAL[..40]), Ok(MINIMAL.len()));
    assert_eq!(dtb_total_size(&VIRT[..39]), Err(DtbError::Truncated));
    let mut bad_magic = VIRT[..40].to_vec();
    bad_magic[0] = 0xd1;
    assert_eq!(dtb_total_size(&bad_magic), Err(DtbError::BadMagic));
    let mut old = VIRT[..40].to_vec();
    old[20..24].copy_from_slice(&16u32.to_be_bytes());
    assert_eq!(dtb_total_size(&old), Err(DtbError::BadVersion));
    let mut future = VIRT[..40].to_vec();
    future[24..28].copy_from_slice(&18u32.to_be_bytes());
    assert_eq!(dtb_total_size(&future), Err(DtbError::BadVersion));
}

#[test]
fn blob_shorter_than_totalsize_is_truncated() {
    assert_eq!(
        Machine::from_dtb(&VIRT[..VIRT.len() - 1]).unwrap_err(),
        DtbError::Truncated
    );
    assert_eq!(
        Machine::from_dtb(&MINIMAL[..100]).unwrap_err(),
        DtbError::Truncated
    );
    assert_eq!(Machine::from_dtb(&[]).unwrap_err(), DtbError::Truncated);
}

#[test]
fn bytes_after_totalsize_are_ignored() {
    let mut padded = MINIMAL.to_vec();
    padded.extend_from_slice(&[0xff; 64]);
    assert_eq!(parse(&padded).dtb_size, MINIMAL.len());
}

#[test]
fn error_messages_are_one_line() {
    let errors = [
        DtbError::BadMagic,
        DtbError::BadVersion,
        DtbError::Truncated,
        DtbError::Malformed("x"),
        DtbError::Missing("x"),
        DtbError::TooMany("x"),
        DtbError::Unsupported("x"),
    ];
    for e in errors {
        let text = e.to_string();
        assert!(
            !text.is_empty() && !text.contains('\n'),
            "{e:?} -> {text:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Corrupted blobs: every one must come back as Ok or Err, never a panic (or a hang).

fn be32(blob: &[u8], at: usize) -> usize {
    u32::from_be_bytes(blob[at..at + 4].try_into().unwrap()) as usize
}

/// The reference blob cut down to its used bytes, with totalsize rewritten to match, so that
/// mutations land in the structure and strings blocks rather than QEMU's zero padding.
fn packed_reference() -> Vec<u8> {
    let used = (be32(VIRT, 8) + be32(VIRT, 36)).max(be32(VIRT, 12) + be32(VIRT, 32));
    let mut blob = VIRT[..used].to_vec();
    blob[4..8].copy_from_slice(&(used as u32).to_be_bytes());
    blob
}

/// Deterministic pseudo-random numbers (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs `from_dtb` on every mutant and fails with the first one that panicked.
fn assert_no_panics(mutants: impl Iterator<Item = (String, Vec<u8>)>) -> (usize, usize) {
    let (mut ok, mut err) = (0, 0);
    let mut panicked = Vec::new();
    for (what, blob) in mutants {
        match std::panic::catch_unwind(|| Machine::from_dtb(&blob).map(|m| m.dtb_size)) {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => panicked.push(what),
        }
    }
    assert!(
        panicked.is_empty(),
        "from_dtb panicked on {} mutants, first: {:?}",
        panicked.len(),
        panicked.first()
    );
    (ok, err)
}

#[test]
fn packed_reference_still_parses() {
    let packed = packed_reference();
    let m = parse(&packed);
    assert_reference_machine(&m);
    assert_eq!(m.dtb_size, packed.len());
}

#[test]
fn truncated_blobs_are_rejected() {
    let packed = packed_reference();
    // Plain truncation: the header still claims the full size.
    for len in 0..packed.len() {
        assert!(
            Machine::from_dtb(&packed[..len]).is_err(),
            "accepted a blob cut to {len} bytes"
        );
    }
    // Truncation with totalsize patched to the cut: the block bounds must catch it.
    let mutants = (40..packed.len()).map(|len| {
        let mut blob = packed[..len].to_vec();
        blob[4..8].copy_from_slice(&(len as u32).to_be_bytes());
        (format!("cut to {len} with totalsize patched"), blob)
    });
    let (_, err) = assert_no_panics(mutants);
    assert!(err > 0);
}

#[test]
fn corrupted_bytes_never_panic() {
    let packed = packed_reference();
    let mut rng = Lcg(0x6b65_656c); // "keel"
    let mutants = (0..4000).map(|i| {
        let mut blob = packed.clone();
        let flips = 1 + rng.below(4);
        let mut what = format!("mutant {i}:");
        for _ in 0..flips {
            let at = rng.below(blob.len());
            let mask = (rng.next() as u8) | 1;
            blob[at] ^= mask;
            what += &format!(" [{at:#x}]^={mask:#04x}");
        }
        (what, blob)
    });
    let (ok, err) = assert_no_panics(mutants);
    eprintln!("byte flips: {ok} accepted, {err} rejected");
    // Flips inside property values (rng-seed, names, ...) are still valid trees.
    assert!(ok > 0 && err > 0 && ok + err == 4000);
}

#[test]
fn hostile_words_never_panic() {
    // Overwrite aligned words (header fields, tokens, lengths, name offsets, cells) with the
    // values most likely to break offset arithmetic.
    const WORDS: [u32; 10] = [
        0,
        1,
        2,
        3,
        4,
        5,
        0x7fff_ffff,
        0xffff_ffff,
        0xffff_fffc,
        0x10,
    ];
    let packed = packed_reference();
    let mut rng = Lcg(0xd00d_feed);
    let mutants = (0..4000).map(|i| {
        let mut blob = packed.clone();
        let at = rng.below(blob.len() / 4) * 4;
        let word = WORDS[rng.below(WORDS.len())];
        blob[at..at + 4].copy_from_slice(&word.to_be_bytes());
        (format!("mutant {i}: word at {at:#x} = {word:#x}"), blob)
    });
    let (ok, err) = assert_no_panics(mutants);
    eprintln!("hostile words: {ok} accepted, {err} rejected");
    assert!(ok > 0 && err > 0);
}

#[test]
fn every_header_word_set_to_every_hostile_value_never_panics() {
    const WORDS: [u32; 8] = [
        0,
        4,
        40,
        0x1000,
        0x7fff_ffff,
        0xffff_fff0,
        0xffff_ffff,
        0x8000_0000,
    ];
    let packed = packed_reference();
    let mutants = (1..10).flat_map(|field| {
        let packed = &packed;
        WORDS.iter().map(move |&word| {
            let mut blob = packed.clone();
            blob[field * 4..field * 4 + 4].copy_from_slice(&word.to_be_bytes());
            (format!("header word {field} = {word:#x}"), blob)
        })
    });
    assert_no_panics(mutants);
}
